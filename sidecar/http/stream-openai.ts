// OpenAI chat.completion.chunk and text_completion streams (vLLM, TGI, llama.cpp, Ollama).
import type { Json } from './exchange.js';
import { encodeSse, type SseEvent } from './sse.js';
import {
  Channel,
  data,
  MAX_HELD_CALL_CHARS,
  parseEventJson,
  StreamBoundError,
  StreamGuard,
  type StreamEnv,
} from './stream-guard.js';

interface HeldCall {
  index: number;
  id?: string;
  name: string;
  args: string;
  argsObject?: Record<string, unknown>;
  /** the deprecated `delta.function_call` form */
  legacy?: boolean;
  /** SSE text of the fragments as they came (raw when the event held nothing else) */
  out: string[];
  /** characters held for this call (bounded by MAX_HELD_CALL_CHARS) */
  size: number;
}

interface ChoiceState {
  held: Map<number, HeldCall>;
  current?: number;
  finished: boolean;
  /** a chunk with this choice's finish_reason went (or is queued to go) to the client */
  finishSent?: boolean;
  /** the last #finishChoice wrote text tails into the finishing chunk */
  tailsMerged?: boolean;
  /** text fields seen in this choice's deltas (content, reasoning_content, refusal, ...) */
  fields: Set<string>;
}

/** delta fields that are not model text */
const CHAT_NON_TEXT = new Set(['role', 'tool_calls', 'function_call']);

/**
 * Chat and completions streams are passed on as the upstream's own events, byte for byte, as long as
 * nothing is changed: an event waits until the scanner has released all of its text, then goes out
 * raw. The first time something does change (a redaction, a block, a tool call to hold), the guard
 * sends the released text the client does not have yet, the waiting events without their text, and
 * from then on re-encodes events with exactly the released text (the "rewrite" path).
 */
interface Waiting {
  raw: string;
  data?: string;
  /** the event may go once each channel has released this many characters */
  needs: [Channel, number][];
}

export class OpenAiStreamGuard extends StreamGuard {
  readonly #chat: boolean;
  #envelope: Record<string, Json> = {};
  readonly #choices = new Map<number, ChoiceState>();
  #done = false;
  /** raw pass-through while nothing changed */
  #exact = true;
  readonly #waiting: Waiting[] = [];
  /** text of each channel the client has been sent */
  readonly #sent = new Map<Channel, number>();
  /** set by #rewrite for the event it just handled */
  #touched = new Set<Channel>();
  #reshaped = false;
  #dropped = false;

  constructor(env: StreamEnv, kind: 'chat' | 'completions') {
    super(env);
    this.#chat = kind === 'chat';
  }

  event(ev: SseEvent): string {
    if (!this.#exact) return this.#rewrite(ev);
    return this.#exactly(() => this.#rewrite(ev), ev);
  }

  end(): string {
    if (!this.#exact) return this.#rewriteEnd();
    return this.#exactly(() => this.#rewriteEnd(), undefined);
  }

  /** run the rewrite path for its state and verdict; keep its output only if something changed */
  #exactly(run: () => string, ev: SseEvent | undefined): string {
    const before = new Map<Channel, number>();
    for (const ch of this.channels.values()) before.set(ch, ch.releasedLen);
    this.#touched = new Set();
    this.#reshaped = false;
    this.#dropped = false;
    const out = run();
    const diverged = this.blocked || this.#reshaped || [...this.channels.values()].some((ch) => !ch.exact);
    if (!diverged) {
      if (ev && !this.#dropped) {
        const needs: [Channel, number][] = [...this.#touched].map((ch) => [ch, ch.origLen]);
        this.#waiting.push({ raw: ev.raw, ...(ev.data !== undefined ? { data: ev.data } : {}), needs });
      }
      return this.#drain();
    }
    this.#exact = false;
    // what the scanner had released before this event, the client has not seen yet
    let gap = '';
    for (const [ch, len] of before) {
      const sent = this.#sent.get(ch) ?? 0;
      if (len > sent && ch.tag)
        gap += this.#textChunk(ch.tag.index, ch.tag.field, ch.released.slice(sent, len));
    }
    for (const w of this.#waiting.splice(0)) gap += this.#stripText(w);
    return gap + out;
  }

  /** send waiting events whose text has been released in full, in order */
  #drain(): string {
    let out = '';
    while (this.#waiting.length) {
      const w = this.#waiting[0];
      if (!w.needs.every(([ch, n]) => ch.releasedLen >= n)) break;
      this.#waiting.shift();
      for (const [ch, n] of w.needs) this.#sent.set(ch, Math.max(this.#sent.get(ch) ?? 0, n));
      out += w.raw;
    }
    return out;
  }

  /** a waiting event without its text (which went out as released text), or nothing if that was all */
  #stripText(w: Waiting): string {
    if (w.data === undefined || w.data.trim() === '[DONE]') return w.raw;
    let chunk: Json;
    try {
      chunk = JSON.parse(w.data);
    } catch {
      return '';
    }
    if (!chunk || !Array.isArray(chunk.choices)) return w.raw;
    const kept = chunk.choices.filter((ch: Json) => {
      const holder = this.#chat ? ch?.delta : ch;
      if (!holder || typeof holder !== 'object') return true;
      let had = false;
      for (const f of this.#textFields(holder)) {
        if (holder[f] !== '') had = true;
        if (this.#chat) delete holder[f];
        else holder[f] = '';
      }
      if (had && ch.logprobs) ch.logprobs = null;
      return ch.finish_reason != null || !isEmptyDelta(holder, this.#chat);
    });
    if (!kept.length && chunk.usage == null) return '';
    chunk.choices = kept;
    return data(chunk);
  }

  #rewrite(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw; // comments and keep-alives carry no model text
    if (ev.data.trim() === '[DONE]') {
      const tail = this.#flushAll();
      this.#done = true;
      return this.blocked ? tail : tail + ev.raw;
    }
    let chunk: Json;
    try {
      chunk = parseEventJson(ev.data);
    } catch (err) {
      if (err instanceof StreamBoundError) throw err;
      this.#dropped = true;
      return ''; // not JSON: we cannot tell what it holds, so it is not forwarded
    }
    if (!chunk || typeof chunk !== 'object' || !Array.isArray(chunk.choices)) return ev.raw; // usage, errors
    for (const k of ['id', 'object', 'created', 'model'] as const)
      if (chunk[k] !== undefined) this.#envelope[k] = chunk[k];
    let out = '';
    let changed = false;
    const kept: Json[] = [];
    for (const ch of chunk.choices) {
      if (!ch || typeof ch !== 'object') continue;
      const index = typeof ch.index === 'number' ? ch.index : 0;
      const st = this.#state(index);
      const holder = this.#chat ? ch.delta : ch;
      let choiceChanged = false;
      if (holder && typeof holder === 'object') {
        // tool-call fragments: hold, and close text channels first so text before the call is released
        // the deprecated single function_call streams like tool call 0
        const legacy = this.#chat && holder.function_call && typeof holder.function_call === 'object';
        const frags: Json[] | undefined = legacy
          ? [{ index: 0, function: holder.function_call, legacy: true }]
          : this.#chat && Array.isArray(holder.tool_calls) && holder.tool_calls.length
            ? holder.tool_calls
            : undefined;
        if (frags) {
          this.#reshaped = true;
          out += this.#closeText(index, st);
          if (this.blocked) return out + this.#blockTail();
          // the event's own bytes can stand for a fragment only when it holds nothing else
          const only =
            chunk.choices.length === 1 &&
            frags.length === 1 &&
            onlyToolCalls(holder) &&
            ch.finish_reason == null &&
            !ch.logprobs;
          for (const frag of frags) {
            out += this.#holdFragment(index, st, frag, only ? ev.raw : undefined);
            if (this.blocked) return out + this.#blockTail();
          }
          delete holder.tool_calls;
          delete holder.function_call;
          choiceChanged = true;
        }
        for (const f of this.#textFields(holder)) {
          const t = holder[f];
          if (typeof t !== 'string' || t === '') continue;
          st.fields.add(f);
          const c = this.channel(`${index}/${f}`, this.#path(index, f));
          c.tag ??= { index, field: f };
          this.#touched.add(c);
          const s = c.write(t);
          if (s.blocked) return out + this.#blockTail();
          if (s.release !== t) {
            holder[f] = s.release;
            choiceChanged = true;
          }
        }
        // structured fields (an audio transcript, annotations) are not streamed text: judged whole
        if (this.#chat)
          for (const [k, v] of Object.entries(holder)) {
            if (CHAT_NON_TEXT.has(k) || v === null || typeof v !== 'object') continue;
            const redacted = this.judgeWhole(v, `choices[${index}].message.${k}`);
            if (this.blocked) return out + this.#blockTail();
            if (redacted) {
              choiceChanged = true;
              this.#reshaped = true;
            }
          }
      }
      if (ch.finish_reason != null && !st.finished) {
        // the text tails end this chunk's text (they follow what it released); held calls go first
        out += this.#finishChoice(index, st, holder && typeof holder === 'object' ? holder : undefined);
        if (this.blocked) return out + this.#blockTail();
        if (st.tailsMerged) choiceChanged = true;
      }
      if (choiceChanged) {
        changed = true;
        // token logprobs would spell out text that was held back or redacted
        if (ch.logprobs) ch.logprobs = null;
        if (ch.finish_reason == null && isEmptyDelta(holder, this.#chat)) continue;
      }
      if (ch.finish_reason != null) st.finishSent = true;
      kept.push(ch);
    }
    if (!changed) return out + ev.raw;
    if (!kept.length && chunk.usage == null) return out;
    chunk.choices = kept;
    return out + data(chunk);
  }

  #rewriteEnd(): string {
    if (this.blocked || this.#done) return '';
    // no [DONE]: flush anyway, so nothing that passed the scan is lost
    return this.#flushAll();
  }

  #state(index: number): ChoiceState {
    let st = this.#choices.get(index);
    if (!st) this.#choices.set(index, (st = { held: new Map(), finished: false, fields: new Set() }));
    return st;
  }

  /** every string field of a chat delta is model text except the role: unknown ones are scanned too */
  #textFields(holder: Json): string[] {
    if (!this.#chat) return ['text'];
    return Object.keys(holder).filter((k) => !CHAT_NON_TEXT.has(k) && typeof holder[k] === 'string');
  }

  #path(index: number, field: string): string {
    return this.#chat ? `choices[${index}].message.${field}` : `choices[${index}].text`;
  }

  /** end the text channels of a choice, sending their tails as their own chunks */
  #closeText(index: number, st: ChoiceState): string {
    let out = '';
    for (const f of st.fields) {
      const ch = this.channels.get(`${index}/${f}`);
      if (!ch || ch.ended) continue;
      const s = ch.end();
      if (s.blocked) return out;
      if (s.release) out += this.#textChunk(index, f, s.release);
    }
    return out;
  }

  #textChunk(index: number, field: string, text: string): string {
    const choice = this.#chat
      ? { index, delta: { [field]: text }, logprobs: null, finish_reason: null }
      : { index, text, logprobs: null, finish_reason: null };
    return data({ ...this.#envelope, choices: [choice] });
  }

  #holdFragment(index: number, st: ChoiceState, frag: Json, raw: string | undefined): string {
    let out = '';
    const ti = typeof frag?.index === 'number' ? frag.index : 0;
    // a new index means the previous call is complete
    if (st.current !== undefined && st.current !== ti) out += this.#judgeHeld(index, st, st.current);
    if (this.blocked) return out;
    st.current = ti;
    let call = st.held.get(ti);
    if (!call) st.held.set(ti, (call = { index: ti, name: '', args: '', out: [], size: 0 }));
    const fn = frag?.function ?? {};
    if (frag?.legacy) call.legacy = true;
    if (typeof frag?.id === 'string') call.id = frag.id;
    if (typeof fn.name === 'string') call.name += fn.name;
    if (typeof fn.arguments === 'string') call.args += fn.arguments;
    else if (fn.arguments && typeof fn.arguments === 'object') call.argsObject = fn.arguments;
    let sse: string;
    if (raw !== undefined) sse = raw;
    else {
      const delta = frag?.legacy ? { function_call: fn } : { tool_calls: [frag] };
      sse = data({ ...this.#envelope, choices: [{ index, delta, logprobs: null, finish_reason: null }] });
    }
    call.out.push(sse);
    call.size += sse.length + (typeof fn.arguments === 'string' ? fn.arguments.length : 0);
    if (call.size > MAX_HELD_CALL_CHARS) throw new StreamBoundError();
    return out;
  }

  #judgeHeld(index: number, st: ChoiceState, ti: number): string {
    const call = st.held.get(ti);
    if (!call) return '';
    st.held.delete(ti);
    const v = this.judgeCall({
      path: `choices[${index}].message.tool_calls[${ti}].function`,
      name: call.name,
      ...(call.id ? { id: call.id } : {}),
      arguments: call.argsObject ?? call.args,
    });
    if (v.blocked) return '';
    if (v.arguments === undefined) return call.out.join('');
    // redacted arguments: one fragment carrying the whole call
    const fn = { name: call.name, arguments: v.arguments };
    const frag = { index: ti, ...(call.id ? { id: call.id } : {}), type: 'function', function: fn };
    const delta = call.legacy ? { function_call: fn } : { tool_calls: [frag] };
    return data({ ...this.#envelope, choices: [{ index, delta, logprobs: null, finish_reason: null }] });
  }

  #finishChoice(index: number, st: ChoiceState, holder?: Json): string {
    if (st.finished) return '';
    st.finished = true;
    let out = '';
    if (holder) {
      st.tailsMerged = false;
      for (const f of st.fields) {
        const ch = this.channels.get(`${index}/${f}`);
        if (!ch || ch.ended) continue;
        const s = ch.end();
        if (s.blocked) return out;
        if (s.release) {
          holder[f] = (typeof holder[f] === 'string' ? holder[f] : '') + s.release;
          st.tailsMerged = true;
        }
      }
    } else out += this.#closeText(index, st);
    if (this.blocked) return out;
    for (const ti of [...st.held.keys()]) {
      out += this.#judgeHeld(index, st, ti);
      if (this.blocked) return out;
    }
    st.current = undefined;
    return out;
  }

  #flushAll(): string {
    let out = '';
    for (const index of new Set([
      ...this.#choices.keys(),
      ...[...this.channels.keys()].map((k) => Number(k.split('/')[0])),
    ])) {
      out += this.#finishChoice(index, this.#state(index));
      if (this.blocked) return out + this.#blockTail();
    }
    return out;
  }

  #blockTail(): string {
    this.#done = true;
    // every choice the client has not seen end yet ends now
    const indexes = [...this.#choices.entries()].filter(([, s]) => !s.finishSent).map(([i]) => i);
    const choices = (indexes.length ? indexes : [0]).map((index) =>
      this.#chat
        ? { index, delta: {}, logprobs: null, finish_reason: 'content_filter' }
        : { index, text: '', logprobs: null, finish_reason: 'content_filter' },
    );
    return (
      data({ ...this.#envelope, choices }) +
      encodeSse(JSON.stringify({ error: this.errorPayload() }), 'error') +
      encodeSse('[DONE]')
    );
  }
}

function onlyToolCalls(delta: Json): boolean {
  for (const [k, v] of Object.entries(delta)) {
    if (k === 'tool_calls' || k === 'function_call') continue;
    if (k === 'role') continue;
    if (v === null || v === '' || v === undefined) continue;
    return false;
  }
  return true;
}

function isEmptyDelta(holder: Json, chat: boolean): boolean {
  if (!chat) return holder.text === '';
  for (const [k, v] of Object.entries(holder ?? {})) {
    if (v === null || v === undefined || v === '') continue;
    if (k === 'tool_calls' && Array.isArray(v) && !v.length) continue;
    return false;
  }
  return true;
}
