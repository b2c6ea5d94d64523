// Talking to the model server: which headers cross the proxy, how undici's failures map onto our
// error table, and bounded body reads.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { GuardError } from '../errors.js';

/** RFC 9110 §7.6.1 hop-by-hop fields, plus ones undici must set itself */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export type HeaderMap = Record<string, string | string[]>;

const NONE = new Set<string>();

function connectionTokens(v: string | string[] | undefined): Set<string> {
  if (v === undefined || v === 'keep-alive' || v === 'close') return NONE;
  const s = new Set<string>();
  for (const part of [v ?? []].flat())
    for (const t of part.split(',')) if (t.trim()) s.add(t.trim().toLowerCase());
  return s;
}

/** Headers for the upstream request: the client's, minus hop-by-hop and `expect` (undici answers 100-continue itself). */
export function requestHeaders(h: IncomingHttpHeaders): HeaderMap {
  const listed = connectionTokens(h.connection);
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || listed.has(k) || k === 'expect') continue;
    out[k] = v;
  }
  return out;
}

/** Headers for the client: the upstream's, minus hop-by-hop. */
export function responseHeaders(h: Record<string, string | string[] | undefined>): HeaderMap {
  const listed = connectionTokens(h.connection);
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || listed.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** undici / socket failures → what the client is told (SPEC §5: 502/503, timeouts 504) */
export function upstreamError(e: unknown): GuardError {
  const code = (e as { code?: string })?.code ?? '';
  switch (code) {
    case 'ECONNREFUSED':
      return new GuardError('upstream_unavailable', { reason: 'connection refused' });
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new GuardError('upstream_timeout');
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return new GuardError('not_ready', { state: 'shutting down' });
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return new GuardError('upstream_unavailable', { reason: 'connection reset' });
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new GuardError('upstream_unavailable', { reason: 'host unreachable' });
    default:
      return new GuardError('upstream_unavailable', { reason: 'request failed' });
  }
}

/**
 * Read a request body, refusing it (413) as soon as it passes `max` bytes: the declared
 * content-length is checked before reading, the running total while reading.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const max = bufferLimit(limit);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        cleanup();
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    // a client gone mid-upload may close without 'error': the read must not wait forever
    const onClose = () => onError(new Error('client closed before the body was complete'));
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * `limits.maxRequestBytes: 0` means "no policy limit", but a body must still be held in memory to be
 * scanned, so it is then bounded by this ceiling (the gRPC listener's default message cap). Before, 0 was
 * taken literally and every non-empty body got a 413 (found by the hardening tests, sidecar/limits.test.ts).
 */
export const REQUEST_BUFFER_CEILING = 64 * 1024 * 1024;

/** the bytes a body may take: the policy's limit, or the ceiling when the policy sets none (0) */
export function bufferLimit(limit: number): number {
  return limit > 0 ? limit : REQUEST_BUFFER_CEILING;
}

export function tooLarge(limit: number): GuardError {
  return limit > 0
    ? new GuardError('request_too_large', { limit: 'limits.maxRequestBytes', max: limit })
    : new GuardError('request_too_large', { limit: 'the inspection buffer', max: REQUEST_BUFFER_CEILING });
}

const DECODERS: Record<string, (b: Buffer, o: { maxOutputLength: number; info: true }) => unknown> = {
  gzip: gunzipSync,
  'x-gzip': gunzipSync,
  deflate: inflateSync,
  br: brotliDecompressSync,
};

/** Whether we can undo this content-encoding (so the body can be scanned). */
export function decodable(encoding: string | undefined): boolean {
  const e = (encoding ?? '').trim().toLowerCase();
  return e === '' || e === 'identity' || e in DECODERS;
}

/** Undo a content-encoding, bounded: a zip bomb is `request_too_large`, garbage is malformed. */
export function decodeBody(body: Buffer, encoding: string | undefined, limit: number): Buffer {
  const max = bufferLimit(limit);
  const e = (encoding ?? '').trim().toLowerCase();
  if (e === '' || e === 'identity') return body;
  const fn = DECODERS[e];
  if (!fn)
    throw new GuardError('unsupported_encoding', {
      encoding: `content-encoding ${e}`,
      hint: 'send gzip, deflate, br or identity',
    });
  try {
    // `info` hands back the engine, to see how much of the body the decoder consumed: inflate and brotli
    // stop at the end of their stream and silently drop what follows, bytes a different decoder upstream
    // might still read. Nothing follows a well-formed body, so trailing bytes are refused.
    const { buffer, engine } = fn(body, { maxOutputLength: max, info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    if (engine.bytesWritten !== body.length)
      throw new GuardError('malformed_request', { reason: `body has data after the end of its ${e} stream` });
    return buffer;
  } catch (err) {
    if (err instanceof GuardError) throw err;
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit);
    throw new GuardError('malformed_request', { reason: `body is not valid ${e}` });
  }
}
