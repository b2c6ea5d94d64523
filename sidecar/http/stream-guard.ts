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
  type ResponseVerdict,
  type StreamScanner,
  type TextSegment,
  type ToolCall,
} from '../../policy/index.js';
import { errorMessage } from '../errors.js';
import { Collector, type Json } from './exchange.js';
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
  /** characters written so far */
  origLen = 0;
  /** whether everything released so far is exactly the text written (no redaction) */
  exact = true;
  /** written text not yet released, while exact (bounded by the hold-back) */
  #unreleased = '';
  /** the choice and field this channel carries (chat/completions streams) */
  tag?: { index: number; field: string };

  constructor(env: StreamEnv, path: string, onFindings: (f: Finding[]) => void) {
    this.#scanner = createStreamScanner(env.policy, {
      direction: 'output',
      path,
      ...(env.systemPrompt !== undefined ? { systemPrompt: env.systemPrompt } : {}),
    });
    this.#onFindings = onFindings;
  }

  write(text: string): Step {
    this.origLen += text.length;
    if (this.exact) this.#unreleased += text;
    const s = this.#scanner.write(text);
    return this.#step(s);
  }

  end(): Step {
    if (this.ended) return { release: '', blocked: false };
    this.ended = true;
    return this.#step(this.#scanner.end());
  }

  #step(s: { release: string; findings: Finding[]; blocked: boolean }): Step {
    if (s.findings.length) this.#onFindings(s.findings);
    if (s.blocked) return { release: '', blocked: true };
    this.released += s.release;
    if (this.exact && s.release) {
      if (this.#unreleased.startsWith(s.release)) this.#unreleased = this.#unreleased.slice(s.release.length);
      else {
        this.exact = false;
        this.#unreleased = '';
      }
    }
    return { release: s.release, blocked: false };
  }

  /** characters of the written text released unchanged (meaningful while exact) */
  get releasedLen(): number {
    return this.released.length;
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
    const args = v.redactions.get(call.path);
    return args !== undefined ? { blocked: false, arguments: args } : { blocked: false };
  }

  /** text segments judged as one non-streamed response (for events the guard has no stream state for) */
  protected scanWhole(segments: TextSegment[]): ResponseVerdict {
    const v = scanResponse(
      this.env.policy,
      { operation: this.env.operation, ...(this.env.model ? { model: this.env.model } : {}), segments },
      this.env.systemPrompt !== undefined ? { systemPrompt: this.env.systemPrompt } : {},
    );
    if (v.findings.length) this.#record(v.findings);
    if (v.decision === 'block') this.blockedBy ??= v.findings.find((f) => f.action === 'block');
    return v;
  }

  /** every string in an object we have no stream state for, as one non-streamed response */
  protected judgeWhole(obj: Json, path: string): boolean {
    const c = new Collector();
    const walk = (o: Json, p: string) => {
      if (Array.isArray(o))
        o.forEach((v, i) =>
          typeof v === 'string'
            ? c.text(`${p}[${i}]`, 'output', v, (t) => (o[i] = t))
            : walk(v, `${p}[${i}]`),
        );
      else if (o && typeof o === 'object')
        for (const [k, v] of Object.entries(o)) {
          if (NOT_TEXT.has(k) || k.endsWith('_id')) continue;
          if (typeof v === 'string') c.text(`${p}.${k}`, 'output', v, (t) => (o[k] = t));
          else walk(v, `${p}.${k}`);
        }
    };
    walk(obj, path);
    if (!c.segments.length) return false;
    const v = this.scanWhole(c.segments);
    if (v.decision === 'block' || !v.redactions.size) return false;
    c.apply(v.redactions);
    return true;
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
  /** the last #finishChoice wrote text tails into the finishing chunk */
  tailsMerged?: boolean;
  /** text fields seen in this choice's deltas (content, reasoning_content, refusal, ...) */
  fields: Set<string>;
}

/** delta fields that are not model text */
const CHAT_NON_TEXT = new Set(['role', 'tool_calls', 'function_call']);

/** a held tool call larger than this ends the stream: memory stays bounded whatever the upstream sends */
export const MAX_HELD_CALL_CHARS = 1 << 20;

export class StreamBoundError extends Error {
  constructor() {
    super(`a streamed tool call exceeded ${MAX_HELD_CALL_CHARS} characters`);
    this.name = 'StreamBoundError';
  }
}

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
      chunk = JSON.parse(ev.data);
    } catch {
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

// ---------------------------------------------------------------------------------------------
// /v1/responses typed events

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

/** identifiers and enums, not text, in events judged whole */
const NOT_TEXT = new Set([
  'type',
  'id',
  'item_id',
  'call_id',
  'status',
  'role',
  'object',
  'model',
  'sequence_number',
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
      e = JSON.parse(ev.data);
    } catch {
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

// ---------------------------------------------------------------------------------------------
// Triton generate_stream: every event is `{"model_name", "model_version", "text_output": <delta>}`

export class GenerateStreamGuard extends StreamGuard {
  #envelope: Record<string, Json> = {};
  #done = false;
  /** raw pass-through while nothing changed (see OpenAiStreamGuard) */
  #exact = true;
  readonly #waiting: { raw: string; need: number; text: boolean }[] = [];
  #sent = 0;
  #wrote = false;
  #dropped = false;

  event(ev: SseEvent): string {
    if (!this.#exact) return this.#rewrite(ev);
    return this.#exactly(() => this.#rewrite(ev), ev);
  }

  end(): string {
    if (!this.#exact) return this.#rewriteEnd();
    return this.#exactly(() => this.#rewriteEnd(), undefined);
  }

  #exactly(run: () => string, ev: SseEvent | undefined): string {
    const before = this.channels.get('text_output')?.releasedLen ?? 0;
    this.#wrote = false;
    this.#dropped = false;
    const out = run();
    const ch = this.channels.get('text_output');
    if (!this.blocked && (!ch || ch.exact)) {
      if (ev && !this.#dropped)
        this.#waiting.push({ raw: ev.raw, need: this.#wrote ? ch!.origLen : 0, text: this.#wrote });
      let sent = '';
      while (this.#waiting.length && this.#waiting[0].need <= (ch?.releasedLen ?? 0)) {
        const w = this.#waiting.shift()!;
        this.#sent = Math.max(this.#sent, w.need);
        sent += w.raw;
      }
      return sent;
    }
    this.#exact = false;
    // released text the client lacks, then the waiting events that carried no text
    let gap =
      ch && before > this.#sent
        ? data({ ...this.#envelope, text_output: ch.released.slice(this.#sent, before) })
        : '';
    for (const w of this.#waiting.splice(0)) if (!w.text) gap += w.raw;
    return gap + out;
  }

  #rewrite(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw;
    let e: Json;
    try {
      e = JSON.parse(ev.data);
    } catch {
      this.#dropped = true;
      return '';
    }
    if (!e || typeof e !== 'object') {
      this.#dropped = true;
      return '';
    }
    for (const k of ['model_name', 'model_version', 'id'] as const)
      if (e[k] !== undefined) this.#envelope[k] = e[k];
    if (typeof e.text_output !== 'string' || e.text_output === '') return ev.raw;
    this.#wrote = true;
    const s = this.channel('text_output', 'text_output').write(e.text_output);
    if (s.blocked) return this.#blockTail();
    if (s.release === e.text_output) return ev.raw;
    if (s.release === '') return '';
    e.text_output = s.release;
    return data(e);
  }

  #rewriteEnd(): string {
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
