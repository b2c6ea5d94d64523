// gRPC over HTTP/2 header blocks: what is forwarded each way, deadlines, and the statuses we send.
// See https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
import type http2 from 'node:http2';
import { GrpcStatus, grpcStatusName } from '../grpc-status.js';
import type { RequestTrace } from '../context.js';
import type { GuardError } from '../errors.js';
import { DECODABLE } from './frames.js';

export type Headers = http2.IncomingHttpHeaders;
export type OutHeaders = http2.OutgoingHttpHeaders;

// not gRPC metadata: what the HTTP/2 and gRPC layers put on every call (as grpc-js hides them from handlers)
const NOT_METADATA = new Set([
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'accept-encoding',
  'te',
  'content-type',
]);

/** The request's metadata as the plain map Telemetry.startRequest takes (binary values skipped). */
export function metadataMap(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in headers) {
    if (k.charCodeAt(0) === 58 /* : */ || NOT_METADATA.has(k) || k.endsWith('-bin')) continue;
    const v = headers[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** HTTP/2 header-list size of the request metadata as on the wire: name + value + 32 per entry (RFC 9113 §6.5.2) */
export function metadataBytes(rawHeaders: readonly string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const k = rawHeaders[i];
    if (k.charCodeAt(0) === 58) continue;
    size += k.length + Buffer.byteLength(rawHeaders[i + 1]) + 32;
  }
  return size;
}

// connection-specific (never valid in HTTP/2) or replaced by the sidecar
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
  'traceparent',
  'tracestate',
  'grpc-timeout',
]);

/**
 * The request headers for the upstream stream: the client's metadata and gRPC headers as sent (user-agent,
 * grpc-encoding, -bin keys...), the sidecar's span context as traceparent, and what is left of the
 * client's deadline. `inspected`: the model server may only compress answers in what we can open.
 */
export function upstreamHeaders(
  incoming: Headers,
  authority: string,
  trace: RequestTrace,
  deadline: number | undefined,
  inspected: boolean,
): OutHeaders {
  const out: OutHeaders = {
    ':method': 'POST',
    ':scheme': 'http',
    ':authority': authority,
    ':path': incoming[':path'],
  };
  for (const k in incoming) {
    if (k.charCodeAt(0) === 58 || NOT_FORWARDED.has(k)) continue;
    out[k] = incoming[k];
  }
  if (inspected && typeof out['grpc-accept-encoding'] === 'string') {
    const ok = out['grpc-accept-encoding']
      .split(',')
      .map((e) => e.trim())
      .filter((e) => DECODABLE.has(e));
    out['grpc-accept-encoding'] = ok.length > 0 ? ok.join(',') : 'identity';
  }
  if (deadline !== undefined) out['grpc-timeout'] = `${Math.max(1, Math.ceil(deadline - Date.now()))}m`;
  const carrier: Record<string, string> = {};
  trace.inject(carrier);
  for (const k in carrier) out[k.toLowerCase()] = carrier[k];
  return out;
}

/** Response headers or trailers from the upstream, for our side of the stream (pseudo-headers but :status dropped). */
export function relayHeaders(h: Headers, trailers: boolean): OutHeaders {
  const out: OutHeaders = {};
  for (const k in h) {
    if (k.charCodeAt(0) === 58 && k !== ':status') continue;
    out[k] = h[k];
  }
  // Node adds a date header to every response unless told not to; relay the upstream's, or none
  if (!trailers && out.date === undefined) (out as Record<string, unknown>).date = null;
  return out;
}

const TIMEOUT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout → absolute deadline (ms since epoch); undefined without one; throws on a malformed value */
export function parseDeadline(value: string | string[] | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = Array.isArray(value) ? value[0] : value;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) throw new Error(`Invalid grpc-timeout value "${v}"`);
  return now + Number(m[1]) * TIMEOUT_MS[m[2]];
}

/** grpc-message: percent-encoded (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) */
export function encodeMessage(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(b);
  }
  return out;
}

/** A gRPC status as trailer fields. */
export interface Status {
  code: number;
  details: string;
  /** extra trailers (metadata) */
  metadata?: Record<string, string>;
}

export function statusTrailers(s: Status): OutHeaders {
  const out: OutHeaders = { 'grpc-status': String(s.code) };
  if (s.details) out['grpc-message'] = encodeMessage(s.details);
  if (s.metadata) Object.assign(out, s.metadata);
  return out;
}

/** The status we send for one of our own errors: SPEC §5 details and trailers. */
export function guardStatus(err: GuardError, trace: RequestTrace, rule?: string): Status {
  const metadata: Record<string, string> = {};
  if (rule) metadata['inferguard-rule'] = rule;
  metadata['inferguard-trace-id'] = trace.traceId;
  return { code: err.grpc, details: err.message, metadata };
}

export function statusName(code: number): string {
  return grpcStatusName(code);
}

/** grpc-status in a header block, or undefined */
export function statusOf(h: Headers): number | undefined {
  const v = h['grpc-status'];
  if (v === undefined) return undefined;
  const n = Number(Array.isArray(v) ? v[0] : v);
  return Number.isInteger(n) ? n : GrpcStatus.UNKNOWN;
}
