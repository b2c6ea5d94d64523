// The bridge between a parsed JSON body and the engine's protocol-neutral exchanges. Decoders walk
// the body once, emit TextSegments and ToolCalls with a `path` naming where each came from, and keep
// a setter per path so a verdict's redactions can be written back into the same object.
import type { RequestExchange, ResponseExchange, Source, TextSegment, ToolCall } from '../../policy/index.js';
import { GuardError } from '../errors.js';

export type Json = any;
export type Setter = (text: string) => void;

export class Collector {
  readonly segments: TextSegment[] = [];
  readonly toolCalls: ToolCall[] = [];
  readonly setters = new Map<string, Setter>();

  text(path: string, source: Source, text: unknown, set: Setter, role?: string): void {
    if (typeof text !== 'string' || text === '') return;
    const seg: TextSegment = { path, source, text };
    if (role !== undefined) seg.role = role;
    this.segments.push(seg);
    this.setters.set(path, set);
  }

  /** a tool call; the engine returns redacted (string) arguments under the call's own path */
  toolCall(call: ToolCall, setArgs?: Setter): void {
    this.toolCalls.push(call);
    if (setArgs) this.setters.set(call.path, setArgs);
  }

  /** write redactions back; a path we did not hand out means we cannot honour the verdict */
  apply(redactions: Map<string, string>): void {
    for (const [path, text] of redactions) {
      const set = this.setters.get(path);
      if (!set) throw new Error(`redaction for unknown path ${path}`);
      set(text);
    }
  }
}

/** a body that is not plain JSON (KServe binary tensors) re-encodes itself after a change */
export type BodyEncoder = (json: Json) => { body: Buffer; headers: Record<string, string> };

export interface DecodedRequest {
  exchange: RequestExchange;
  collector: Collector;
  encode?: BodyEncoder;
  /** system / developer prompts and instructions, joined, for output leak detection */
  systemPrompt?: string;
  stream: boolean;
  /** strip these tools from the body; true when something was removed */
  removeTools(names: string[]): boolean;
  /** cap the output token limit; true when the body changed */
  capOutputTokens(max: number): boolean;
}

export interface DecodedResponse {
  exchange: ResponseExchange;
  collector: Collector;
  encode?: BodyEncoder;
}

export function malformed(reason: string): GuardError {
  return new GuardError('malformed_request', { reason });
}

export function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Cap a numeric field if present; returns true when it changed. */
export function capField(obj: Record<string, Json>, key: string, max: number): boolean {
  const v = obj[key];
  if (typeof v === 'number' && v > max) {
    obj[key] = max;
    return true;
  }
  return false;
}

/** identifiers and enums, not text, when an unknown structure is scanned leaf by leaf */
export const NOT_TEXT = new Set([
  'type',
  'id',
  'role',
  'status',
  'object',
  'model',
  'format',
  'expires_at',
  'sequence_number',
]);

/**
 * Deepest nesting accepted in a JSON body (request or non-streamed answer). Real bodies nest a few
 * levels; a hostile `[[[[…` thousands deep parses fine but overflows the stack when the body must be
 * re-serialized (a capped token limit, a redaction), so it is refused right after parsing.
 */
export const MAX_JSON_DEPTH = 256;

/**
 * true when `v` nests objects/arrays deeper than `max` levels. Runs on every body, so it allocates
 * nothing; it recurses, but never deeper than `max` + 1 frames (it stops there), so a hostile nesting
 * cannot overflow the stack.
 */
export function nestedDeeperThan(v: Json, max: number): boolean {
  if (typeof v !== 'object' || v === null) return false;
  return deeper(v, 1, max);
}

function deeper(x: Json, d: number, max: number): boolean {
  if (d > max) return true;
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) {
      const c = x[i];
      if (typeof c === 'object' && c !== null && deeper(c, d + 1, max)) return true;
    }
    return false;
  }
  // JSON.parse objects have only own enumerable keys (a "__proto__" key is an own property too)
  for (const k in x) {
    const c = x[k];
    if (typeof c === 'object' && c !== null && deeper(c, d + 1, max)) return true;
  }
  return false;
}

/** deeper than this, an answer's structure is not something a model server sends */
export const MAX_LEAF_DEPTH = 64;

/**
 * Every string leaf of a structure we have no specific decoder for, as output text. Bounded in depth:
 * a hostile upstream's `[[[[…` fails closed instead of overflowing the stack.
 */
export function textLeaves(c: Collector, v: Json, path: string, depth = 0): void {
  if (depth > MAX_LEAF_DEPTH)
    throw new GuardError('upstream_unavailable', {
      reason: `answer nested deeper than ${MAX_LEAF_DEPTH} levels`,
    });
  if (Array.isArray(v)) {
    v.forEach((x, i) =>
      typeof x === 'string'
        ? c.text(`${path}[${i}]`, 'output', x, (t) => (v[i] = t))
        : textLeaves(c, x, `${path}[${i}]`, depth + 1),
    );
  } else if (isObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (NOT_TEXT.has(k) || k.endsWith('_id')) continue;
      if (typeof x === 'string') c.text(`${path}.${k}`, 'output', x, (t) => (v[k] = t));
      else textLeaves(c, x, `${path}.${k}`, depth + 1);
    }
  }
}
