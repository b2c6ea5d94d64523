// What every streamed-response guard shares (stream-openai.ts: chat/completions chunks,
// stream-responses.ts: /v1/responses typed events, stream-triton.ts: Triton generate_stream). A guard
// takes decoded SSE events and returns the SSE text the client may have now.
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
import { Collector, MAX_JSON_DEPTH, nestedDeeperThan, textLeaves, type Json } from './exchange.js';
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
export class Channel {
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
    textLeaves(c, obj, path);
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

export const data = (v: unknown) => encodeSse(JSON.stringify(v));

/** a held tool call larger than this ends the stream: memory stays bounded whatever the upstream sends */
export const MAX_HELD_CALL_CHARS = 1 << 20;

export class StreamBoundError extends Error {
  constructor(message = `a streamed tool call exceeded ${MAX_HELD_CALL_CHARS} characters`) {
    super(message);
    this.name = 'StreamBoundError';
  }
}

/**
 * An event's JSON, parsed; nesting past MAX_JSON_DEPTH is a stream bound (fails closed in either
 * --fail mode) rather than a stack overflow when the event is re-encoded.
 */
export function parseEventJson(text: string): Json {
  const v: Json = JSON.parse(text);
  if (nestedDeeperThan(v, MAX_JSON_DEPTH))
    throw new StreamBoundError(`a streamed event nested deeper than ${MAX_JSON_DEPTH} levels`);
  return v;
}
