// Guards for streamed responses: OpenAI chat/completions chunks, /v1/responses typed events and
// Triton generate_stream. Each takes decoded SSE events and returns the SSE text the client may
// have now.
//
// Obligations (SPEC §5, docs/http.md):
// - text goes through the engine's stream scanner, one per (choice, field), and only what the
//   scanner releases is sent: text that could still be the start of a match is held back;
// - tool-call deltas are reassembled per (choice, index) and nothing of a call is sent before the
//   whole call was judged;
// - a block ends the stream: a last chunk with finish_reason "content_filter", an `error` event and
//   `data: [DONE]`; withheld text is never sent;
// - an event nothing changed is forwarded byte-for-byte (its raw SSE text).
import {
  createStreamScanner,
  scanResponse,
  type CompiledPolicy,
  type Decision,
  type Finding,
  type StreamScanner,
  type ToolCall,
} from '../../policy/index.js';
import { errorMessage } from '../errors.js';
import type { Json } from './exchange.js';
import { encodeSse, type SseEvent } from './sse.js';

export interface StreamEnv {
  policy: CompiledPolicy;
  operation: string;
  model?: string;
  systemPrompt?: string;
  traceId: string;
}

interface Step {
  release: string;
  blocked: boolean;
}

/** One scanned text stream (a choice's content, a response part's output_text, ...). */
class Channel {
  readonly #scanner: StreamScanner;
  readonly #onFindings: (f: Finding[]) => void;
  /** everything released so far (the text the client has, for `.done` events that repeat it) */
  released = '';
  ended = false;

  constructor(env: StreamEnv, path: string, onFindings: (f: Finding[]) => void) {
    this.#scanner = createStreamScanner(env.policy, {
      direction: 'output',
      path,
      ...(env.systemPrompt !== undefined ? { systemPrompt: env.systemPrompt } : {}),
    });
    this.#onFindings = onFindings;
  }

  write(text: string): Step {
    const s = this.#scanner.write(text);
    if (s.findings.length) this.#onFindings(s.findings);
    if (!s.blocked) this.released += s.release;
    return { release: s.blocked ? '' : s.release, blocked: s.blocked };
  }

  end(): Step {
    if (this.ended) return { release: '', blocked: false };
    this.ended = true;
    const s = this.#scanner.end();
    if (s.findings.length) this.#onFindings(s.findings);
    if (!s.blocked) this.released += s.release;
    return { release: s.blocked ? '' : s.release, blocked: s.blocked };
  }
}

export abstract class StreamGuard {
  readonly findings: Finding[] = [];
  /** the finding that ended the stream */
  blockedBy: Finding | undefined;
  protected readonly env: StreamEnv;
  protected readonly channels = new Map<string, Channel>();

  constructor(env: StreamEnv) {
    this.env = env;
  }

  /** one upstream event in, SSE text out ('' = nothing to send yet) */
  abstract event(ev: SseEvent): string;
  /** the upstream finished: flush what is held (after the final scan) */
  abstract end(): string;

  get blocked(): boolean {
    return this.blockedBy !== undefined;
  }

  /** the overall decision so far, for telemetry */
  decision(): Decision {
    if (this.blockedBy) return 'block';
    if (this.findings.some((f) => f.action === 'redact')) return 'redact';
    if (this.findings.some((f) => f.action === 'monitor' || f.action === 'block')) return 'monitor';
    return 'allow';
  }

  protected channel(key: string, path: string): Channel {
    let ch = this.channels.get(key);
    if (!ch || ch.ended) {
      ch = new Channel(this.env, path, (f) => this.#record(f));
      this.channels.set(key, ch);
    }
    return ch;
  }

  #record(f: Finding[]): void {
    this.findings.push(...f);
    if (!this.blockedBy) this.blockedBy = f.find((x) => x.action === 'block');
  }

  /** a reassembled tool call: the same verdict a non-streamed response would get */
  protected judgeCall(call: ToolCall): { blocked: boolean; arguments?: string } {
    const v = scanResponse(
      this.env.policy,
      {
        operation: this.env.operation,
        ...(this.env.model ? { model: this.env.model } : {}),
        segments: [],
        toolCalls: [call],
      },
      this.env.systemPrompt !== undefined ? { systemPrompt: this.env.systemPrompt } : {},
    );
    if (v.findings.length) this.#record(v.findings.map((f) => ({ ...f, tool: f.tool ?? call.name })));
    if (v.decision === 'block') {
      this.blockedBy ??= v.findings.find((f) => f.action === 'block');
      return { blocked: true };
    }
    const args = v.redactions.get(`${call.path}.arguments`) ?? v.redactions.get(call.path);
    return args !== undefined ? { blocked: false, arguments: args } : { blocked: false };
  }

  protected errorPayload(): Record<string, unknown> {
    const f = this.blockedBy!;
    return {
      message: errorMessage('output_blocked', { rule: f.rule, category: f.category }),
      type: 'policy_violation',
      code: f.rule,
      trace_id: this.env.traceId,
    };
  }
}

const data = (v: unknown) => encodeSse(JSON.stringify(v));

// ---------------------------------------------------------------------------------------------
// OpenAI chat.completion.chunk and text_completion streams

interface HeldCall {
  index: number;
  id?: string;
  name: string;
  args: string;
  argsObject?: Record<string, unknown>;
  /** SSE text of the fragments as they came (raw when the event held nothing else) */
  out: string[];
}

interface ChoiceState {
  held: Map<number, HeldCall>;
  current?: number;
  finished: boolean;
  /** the last #finishChoice wrote text tails into the finishing chunk */
  tailsMerged?: boolean;
}

const CHAT_TEXT_FIELDS = ['content', 'reasoning_content', 'reasoning'] as const;

export class OpenAiStreamGuard extends StreamGuard {
  readonly #chat: boolean;
  #envelope: Record<string, Json> = {};
  readonly #choices = new Map<number, ChoiceState>();
  #done = false;

  constructor(env: StreamEnv, kind: 'chat' | 'completions') {
    super(env);
    this.#chat = kind === 'chat';
  }

  event(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw; // comments and keep-alives carry no model text
    if (ev.data.trim() === '[DONE]') {
      const tail = this.#flushAll();
      this.#done = true;
      return this.blocked ? tail : tail + ev.raw;
    }
    let chunk: Json;
    try {
      chunk = JSON.parse(ev.data);
    } catch {
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
        if (this.#chat && Array.isArray(holder.tool_calls) && holder.tool_calls.length) {
          out += this.#closeText(index);
          if (this.blocked) return out + this.#blockTail();
          // the event's own bytes can stand for a fragment only when it holds nothing else
          const only =
            chunk.choices.length === 1 &&
            holder.tool_calls.length === 1 &&
            onlyToolCalls(holder) &&
            ch.finish_reason == null &&
            !ch.logprobs;
          for (const frag of holder.tool_calls) {
            out += this.#holdFragment(index, st, frag, only ? ev.raw : undefined);
            if (this.blocked) return out + this.#blockTail();
          }
          delete holder.tool_calls;
          choiceChanged = true;
        }
        for (const f of this.#chat ? CHAT_TEXT_FIELDS : (['text'] as const)) {
          const t = holder[f];
          if (typeof t !== 'string' || t === '') continue;
          const s = this.channel(`${index}/${f}`, this.#path(index, f)).write(t);
          if (s.blocked) return out + this.#blockTail();
          if (s.release !== t) {
            holder[f] = s.release;
            choiceChanged = true;
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
      kept.push(ch);
    }
    if (!changed) return out + ev.raw;
    if (!kept.length && chunk.usage == null) return out;
    chunk.choices = kept;
    return out + data(chunk);
  }

  end(): string {
    if (this.blocked || this.#done) return '';
    // no [DONE]: flush anyway, so nothing that passed the scan is lost
    return this.#flushAll();
  }

  #state(index: number): ChoiceState {
    let st = this.#choices.get(index);
    if (!st) this.#choices.set(index, (st = { held: new Map(), finished: false }));
    return st;
  }

  #path(index: number, field: string): string {
    return this.#chat ? `choices[${index}].message.${field}` : `choices[${index}].text`;
  }

  /** end the text channels of a choice, sending their tails as their own chunks */
  #closeText(index: number): string {
    let out = '';
    for (const f of this.#chat ? CHAT_TEXT_FIELDS : (['text'] as const)) {
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
    if (!call) st.held.set(ti, (call = { index: ti, name: '', args: '', out: [] }));
    const fn = frag?.function ?? {};
    if (typeof frag?.id === 'string') call.id = frag.id;
    if (typeof fn.name === 'string') call.name += fn.name;
    if (typeof fn.arguments === 'string') call.args += fn.arguments;
    else if (fn.arguments && typeof fn.arguments === 'object') call.argsObject = fn.arguments;
    // raw bytes only once per event (an event may hold several fragments)
    if (raw !== undefined && !call.out.includes(raw)) call.out.push(raw);
    else if (raw === undefined)
      call.out.push(
        data({
          ...this.#envelope,
          choices: [{ index, delta: { tool_calls: [frag] }, logprobs: null, finish_reason: null }],
        }),
      );
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
    const frag = {
      index: ti,
      ...(call.id ? { id: call.id } : {}),
      type: 'function',
      function: { name: call.name, arguments: v.arguments },
    };
    return data({
      ...this.#envelope,
      choices: [{ index, delta: { tool_calls: [frag] }, logprobs: null, finish_reason: null }],
    });
  }

  #finishChoice(index: number, st: ChoiceState, holder?: Json): string {
    if (st.finished) return '';
    st.finished = true;
    let out = '';
    if (holder) {
      st.tailsMerged = false;
      for (const f of this.#chat ? CHAT_TEXT_FIELDS : (['text'] as const)) {
        const ch = this.channels.get(`${index}/${f}`);
        if (!ch || ch.ended) continue;
        const s = ch.end();
        if (s.blocked) return out;
        if (s.release) {
          holder[f] = (typeof holder[f] === 'string' ? holder[f] : '') + s.release;
          st.tailsMerged = true;
        }
      }
    } else out += this.#closeText(index);
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
    const indexes = [...this.#choices.entries()].filter(([, s]) => !s.finished).map(([i]) => i);
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
    if (k === 'tool_calls') continue;
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

// ---------------------------------------------------------------------------------------------
// /v1/responses typed events

interface HeldItem {
  outputIndex: number;
  events: Json[];
  name: string;
  args: string;
  callId?: string;
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
      e = JSON.parse(ev.data);
    } catch {
      return '';
    }
    if (!e || typeof e !== 'object' || typeof e.type !== 'string') return '';
    if (e.response?.id) this.#responseId = e.response.id;
    const oi = typeof e.output_index === 'number' ? e.output_index : undefined;
    const held = oi !== undefined ? this.#held.get(oi) : undefined;

    if (e.type === 'response.output_item.added' && e.item?.type === 'function_call' && oi !== undefined) {
      this.#held.set(oi, {
        outputIndex: oi,
        events: [e],
        name: typeof e.item.name === 'string' ? e.item.name : '',
        args: typeof e.item.arguments === 'string' ? e.item.arguments : '',
        ...(typeof e.item.call_id === 'string' ? { callId: e.item.call_id } : {}),
      });
      return '';
    }
    if (held) {
      held.events.push(e);
      if (e.type === 'response.function_call_arguments.delta' && typeof e.delta === 'string')
        held.args += e.delta;
      if (e.type === 'response.function_call_arguments.done' && typeof e.arguments === 'string')
        held.args = e.arguments;
      if (e.type === 'response.output_item.done') {
        if (typeof e.item?.name === 'string') held.name = e.item.name;
        if (typeof e.item?.arguments === 'string') held.args = e.item.arguments;
        return this.#release(held);
      }
      return '';
    }

    const key = `${oi}/${e.content_index ?? 0}`;
    const path = `output[${oi}].content[${e.content_index ?? 0}].text`;
    switch (e.type) {
      case 'response.output_text.delta':
      case 'response.refusal.delta':
      case 'response.reasoning_summary_text.delta':
      case 'response.reasoning_text.delta': {
        if (typeof e.delta !== 'string') return this.#emit(e, ev.raw, false);
        const s = this.channel(`${e.type}/${key}`, path).write(e.delta);
        if (s.blocked) return this.#blockTail();
        if (s.release === '') return '';
        const changed = s.release !== e.delta;
        if (changed) {
          e.delta = s.release;
          if (Array.isArray(e.logprobs)) e.logprobs = [];
        }
        return this.#emit(e, ev.raw, changed);
      }
      case 'response.output_text.done':
      case 'response.refusal.done':
      case 'response.reasoning_summary_text.done':
      case 'response.reasoning_text.done': {
        const dtype = e.type.replace(/\.done$/, '.delta');
        const ch = this.channels.get(`${dtype}/${key}`);
        let out = '';
        if (ch) {
          const s = ch.end();
          if (s.blocked) return this.#blockTail();
          if (s.release)
            out += this.#emit(
              {
                ...pick(e, ['item_id', 'output_index', 'content_index', 'summary_index']),
                type: dtype,
                delta: s.release,
              },
              undefined,
              true,
            );
        }
        const field = e.type === 'response.refusal.done' ? 'refusal' : 'text';
        const want = ch ? ch.released : '';
        const changed = typeof e[field] === 'string' && e[field] !== want;
        if (changed) {
          e[field] = want;
          if (Array.isArray(e.logprobs)) e.logprobs = [];
        }
        return out + this.#emit(e, ev.raw, changed);
      }
      case 'response.content_part.done': {
        const changed = this.#patchPart(e.part, oi, e.content_index ?? 0);
        return this.blocked ? this.#blockTail() : this.#emit(e, ev.raw, changed);
      }
      case 'response.output_item.done': {
        const changed = this.#patchItem(e.item, oi);
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
            (item: Json, i: number) => (changed = this.#patchItem(item, i) || changed),
          );
        if (this.blocked) return out + this.#blockTail();
        if (typeof e.response?.output_text === 'string') {
          const all = [...this.channels.entries()]
            .filter(([k]) => k.startsWith('response.output_text.delta/'))
            .map(([, c]) => c.released);
          if (all.join('') !== e.response.output_text) {
            e.response.output_text = all.join('');
            changed = true;
          }
        }
        out += this.#emit(e, ev.raw, changed);
        this.#done = true;
        return out;
      }
      default:
        return this.#emit(e, ev.raw, false);
    }
  }

  end(): string {
    if (this.blocked || this.#done) return '';
    return this.#flush();
  }

  /** the released text replaces what the upstream repeats in .done events */
  #patchPart(part: Json, oi: number | undefined, ci: number): boolean {
    const refusal = part?.type === 'refusal';
    const type = refusal ? 'response.refusal.delta' : 'response.output_text.delta';
    const f = refusal ? 'refusal' : 'text';
    if (!part || typeof part[f] !== 'string' || this.blocked) return false;
    let ch = this.channels.get(`${type}/${oi}/${ci}`);
    if (!ch) {
      // text the upstream never streamed as deltas is scanned whole before it is repeated
      ch = this.channel(`${type}/${oi}/${ci}`, `output[${oi}].content[${ci}].${f}`);
      if (ch.write(part[f]).blocked || ch.end().blocked) return false;
    }
    if (part[f] === ch.released) return false;
    part[f] = ch.released;
    return true;
  }

  #patchItem(item: Json, oi: number | undefined): boolean {
    if (!item || !Array.isArray(item.content)) return false;
    let changed = false;
    item.content.forEach((part: Json, ci: number) => (changed = this.#patchPart(part, oi, ci) || changed));
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
      const [type, oi, ci] = k.split('/');
      if (s.release)
        out += this.#emit(
          { type, output_index: Number(oi), content_index: Number(ci), delta: s.release },
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

// ---------------------------------------------------------------------------------------------
// Triton generate_stream: every event is `{"model_name", "model_version", "text_output": <delta>}`

export class GenerateStreamGuard extends StreamGuard {
  #envelope: Record<string, Json> = {};
  #done = false;

  event(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw;
    let e: Json;
    try {
      e = JSON.parse(ev.data);
    } catch {
      return '';
    }
    if (!e || typeof e !== 'object') return '';
    for (const k of ['model_name', 'model_version', 'id'] as const)
      if (e[k] !== undefined) this.#envelope[k] = e[k];
    if (typeof e.text_output !== 'string' || e.text_output === '') return ev.raw;
    const s = this.channel('text_output', 'text_output').write(e.text_output);
    if (s.blocked) return this.#blockTail();
    if (s.release === e.text_output) return ev.raw;
    if (s.release === '') return '';
    e.text_output = s.release;
    return data(e);
  }

  end(): string {
    if (this.blocked || this.#done) return '';
    this.#done = true;
    const ch = this.channels.get('text_output');
    if (!ch) return '';
    const s = ch.end();
    if (s.blocked) return this.#blockTail();
    return s.release ? data({ ...this.#envelope, text_output: s.release }) : '';
  }

  #blockTail(): string {
    this.#done = true;
    // Triton reports stream errors as {"error": "..."}; the OpenAI-style fields ride along
    const err = this.errorPayload();
    return encodeSse(
      JSON.stringify({
        ...this.#envelope,
        error: err.message,
        type: err.type,
        code: err.code,
        trace_id: err.trace_id,
      }),
      'error',
    );
  }
}
