// /v1/responses streams: typed events with sequence numbers, function calls held per output item.
import { NOT_TEXT, type Json } from './exchange.js';
import { encodeSse, type SseEvent } from './sse.js';
import { MAX_HELD_CALL_CHARS, parseEventJson, StreamBoundError, StreamGuard } from './stream-guard.js';

interface HeldItem {
  outputIndex: number;
  events: Json[];
  name: string;
  args: string;
  callId?: string;
  size: number;
}

/** events that carry no model text (the response object they echo has an empty output) */
const RESPONSES_METADATA = new Set([
  'response.created',
  'response.in_progress',
  'response.queued',
  'response.content_part.added',
  'response.output_item.added',
]);

/** which delta channel holds the text of a part or summary of an output item */
function partChannel(part: Json, summary: boolean): { type: string; field: string } {
  if (summary) return { type: 'response.reasoning_summary_text.delta', field: 'text' };
  if (part?.type === 'refusal') return { type: 'response.refusal.delta', field: 'refusal' };
  if (part?.type === 'reasoning_text') return { type: 'response.reasoning_text.delta', field: 'text' };
  return { type: 'response.output_text.delta', field: 'text' };
}

export class ResponsesStreamGuard extends StreamGuard {
  /** function_call items being held, by output_index */
  readonly #held = new Map<number, HeldItem>();
  #seq = 0;
  #responseId: string | undefined;
  #done = false;

  event(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw;
    if (ev.data.trim() === '[DONE]') return this.#flush() + (this.blocked ? '' : ev.raw);
    let e: Json;
    try {
      e = parseEventJson(ev.data);
    } catch (err) {
      if (err instanceof StreamBoundError) throw err;
      return '';
    }
    if (!e || typeof e !== 'object' || typeof e.type !== 'string') return '';
    if (e.response?.id) this.#responseId = e.response.id;
    const oi = typeof e.output_index === 'number' ? e.output_index : undefined;

    // function calls: held from their first event to output_item.done, then judged whole
    const startsCall =
      (e.type === 'response.output_item.added' && e.item?.type === 'function_call') ||
      e.type.startsWith('response.function_call_arguments.');
    if (oi !== undefined && startsCall && !this.#held.has(oi)) {
      this.#held.set(oi, { outputIndex: oi, events: [], name: '', args: '', size: 0 });
    }
    const held = oi !== undefined ? this.#held.get(oi) : undefined;
    if (held) {
      held.events.push(e);
      held.size += ev.data.length;
      if (held.size > MAX_HELD_CALL_CHARS) throw new StreamBoundError();
      const item = e.item;
      if (item && typeof item === 'object') {
        if (typeof item.name === 'string' && item.name) held.name = item.name;
        if (typeof item.call_id === 'string') held.callId = item.call_id;
        if (typeof item.arguments === 'string' && item.arguments) held.args = item.arguments;
      }
      if (e.type === 'response.function_call_arguments.delta' && typeof e.delta === 'string')
        held.args += e.delta;
      if (e.type === 'response.function_call_arguments.done' && typeof e.arguments === 'string')
        held.args = e.arguments;
      return e.type === 'response.output_item.done' ? this.#release(held) : '';
    }

    const idx = e.summary_index ?? e.content_index ?? 0;
    if (e.type.endsWith('.delta') && typeof e.delta === 'string') {
      // output_text, refusal, reasoning and any other streamed text: through the stream scanner
      const s = this.channel(`${e.type}/${oi}/${idx}`, `output[${oi}].content[${idx}]`).write(e.delta);
      if (s.blocked) return this.#blockTail();
      if (s.release === '') return '';
      const changed = s.release !== e.delta;
      if (changed) {
        e.delta = s.release;
        if (Array.isArray(e.logprobs)) e.logprobs = [];
      }
      return this.#emit(e, ev.raw, changed);
    }
    if (e.type.endsWith('.done') && this.channels.has(`${e.type.slice(0, -5)}.delta/${oi}/${idx}`)) {
      // the tail goes out as a last delta; the .done event repeats only what was released
      const dtype = `${e.type.slice(0, -5)}.delta`;
      const ch = this.channels.get(`${dtype}/${oi}/${idx}`)!;
      let out = '';
      const s = ch.end();
      if (s.blocked) return this.#blockTail();
      if (s.release) {
        const ids = pick(e, ['item_id', 'output_index', 'content_index', 'summary_index']);
        out += this.#emit({ type: dtype, ...ids, delta: s.release }, undefined, true);
      }
      let changed = false;
      for (const [k, v] of Object.entries(e)) {
        if (typeof v !== 'string' || NOT_TEXT.has(k) || k.endsWith('_id') || v === ch.released) continue;
        e[k] = ch.released;
        changed = true;
      }
      if (changed && Array.isArray(e.logprobs)) e.logprobs = [];
      return out + this.#emit(e, ev.raw, changed);
    }
    switch (e.type) {
      case 'response.content_part.done': {
        const changed = this.#patchPart(e.part, oi, idx, false);
        return this.blocked ? this.#blockTail() : this.#emit(e, ev.raw, changed);
      }
      case 'response.output_item.done': {
        const changed = this.#patchItem(e.item, oi, `output[${oi}]`);
        return this.blocked ? this.#blockTail() : this.#emit(e, ev.raw, changed);
      }
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed': {
        let out = this.#flush();
        if (this.blocked) return out;
        let changed = false;
        if (Array.isArray(e.response?.output))
          e.response.output.forEach(
            (item: Json, i: number) => (changed = this.#patchItem(item, i, `output[${i}]`) || changed),
          );
        if (this.blocked) return out + this.#blockTail();
        if (typeof e.response?.output_text === 'string') {
          const all = [...this.channels.entries()]
            .filter(([k]) => k.startsWith('response.output_text.delta/'))
            .map(([, c]) => c.released)
            .join('');
          if (all !== e.response.output_text) {
            e.response.output_text = all;
            changed = true;
          }
        }
        out += this.#emit(e, ev.raw, changed);
        this.#done = true;
        return out;
      }
      default: {
        if (RESPONSES_METADATA.has(e.type)) return this.#emit(e, ev.raw, false);
        // an event type we do not know: judged whole before it is passed on
        const changed = this.judgeWhole(e, e.type);
        return this.blocked ? this.#blockTail() : this.#emit(e, ev.raw, changed);
      }
    }
  }

  end(): string {
    if (this.blocked || this.#done) return '';
    return this.#flush();
  }

  /** the released text replaces what the upstream repeats in .done events */
  #patchPart(part: Json, oi: number | undefined, idx: number, summary: boolean): boolean {
    const { type, field } = partChannel(part, summary);
    if (!part || typeof part[field] !== 'string' || this.blocked) return false;
    let ch = this.channels.get(`${type}/${oi}/${idx}`);
    if (!ch) {
      // text the upstream never streamed as deltas is scanned whole before it is repeated
      ch = this.channel(`${type}/${oi}/${idx}`, `output[${oi}].content[${idx}].${field}`);
      if (ch.write(part[field]).blocked || ch.end().blocked) return false;
    }
    if (part[field] === ch.released) return false;
    part[field] = ch.released;
    return true;
  }

  #patchItem(item: Json, oi: number | undefined, path: string): boolean {
    if (!item || typeof item !== 'object') return false;
    if (item.type === 'function_call') return false; // judged when it was released
    if (item.type !== 'message' && item.type !== 'reasoning') return this.judgeWhole(item, path);
    let changed = false;
    if (Array.isArray(item.content))
      item.content.forEach(
        (part: Json, i: number) => (changed = this.#patchPart(part, oi, i, false) || changed),
      );
    if (Array.isArray(item.summary))
      item.summary.forEach(
        (part: Json, i: number) => (changed = this.#patchPart(part, oi, i, true) || changed),
      );
    return changed;
  }

  #release(h: HeldItem): string {
    this.#held.delete(h.outputIndex);
    const v = this.judgeCall({
      path: `output[${h.outputIndex}]`,
      name: h.name,
      ...(h.callId ? { id: h.callId } : {}),
      arguments: h.args,
    });
    if (v.blocked) return this.#blockTail();
    let out = '';
    for (const e of h.events) {
      if (v.arguments !== undefined) {
        // redacted arguments: the deltas go, the .done events carry the redacted whole
        if (e.type === 'response.function_call_arguments.delta') continue;
        if (e.type === 'response.function_call_arguments.done') e.arguments = v.arguments;
        if (e.type === 'response.output_item.done' && e.item) e.item.arguments = v.arguments;
      }
      out += this.#emit(e, undefined, true);
    }
    return out;
  }

  #flush(): string {
    let out = '';
    for (const h of [...this.#held.values()]) {
      out += this.#release(h);
      if (this.blocked) return out;
    }
    for (const [k, ch] of this.channels) {
      if (ch.ended) continue;
      const s = ch.end();
      if (s.blocked) return out + this.#blockTail();
      const [type, oi, idx] = k.split('/');
      if (s.release)
        out += this.#emit(
          { type, output_index: Number(oi), content_index: Number(idx), delta: s.release },
          undefined,
          true,
        );
    }
    return out;
  }

  /** send an event; sequence numbers stay contiguous when events were held, dropped or added */
  #emit(e: Json, raw: string | undefined, changed: boolean): string {
    const seq = this.#seq++;
    if (!changed && raw !== undefined && e.sequence_number === seq) return raw;
    if ('sequence_number' in e || raw === undefined) e.sequence_number = seq;
    return encodeSse(JSON.stringify(e), e.type);
  }

  #blockTail(): string {
    this.#done = true;
    const err = this.errorPayload();
    const incomplete = {
      type: 'response.incomplete',
      sequence_number: this.#seq++,
      response: {
        ...(this.#responseId ? { id: this.#responseId } : {}),
        object: 'response',
        status: 'incomplete',
        incomplete_details: { reason: 'content_filter' },
        output: [],
      },
    };
    const error = {
      type: 'error',
      sequence_number: this.#seq++,
      code: err.code,
      message: err.message,
      param: null,
      error: err,
    };
    return (
      encodeSse(JSON.stringify(incomplete), incomplete.type) +
      encodeSse(JSON.stringify(error), 'error') +
      encodeSse('[DONE]')
    );
  }
}

function pick(o: Json, keys: string[]): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const k of keys) if (o[k] !== undefined) r[k] = o[k];
  return r;
}
