// The HTTP/2 connection(s) to the model server. Every proxied call is one stream on a shared session;
// a session that gets GOAWAY, errors or closes is dropped and the next call opens a new one, so a
// restarted model server is found again on the next call (no backoff: it is on loopback).
import http2 from 'node:http2';
import net from 'node:net';
import { GrpcStatus } from '../grpc-status.js';
import { FrameDecoder, frame } from './frames.js';
import { statusOf } from './wire.js';

/** HTTP/2 connection-level receive window we grant (the protocol's default is 64 KiB for all streams together) */
export const SESSION_WINDOW = 16 * 1024 * 1024;

export class UpstreamPool {
  readonly authority: string;
  #sessions: (http2.ClientHttp2Session | undefined)[];
  #next = 0;
  #closed = false;
  /** why the last session failed, for error messages */
  lastError?: string;
  readonly #errors = new WeakMap<http2.ClientHttp2Session, string>();

  constructor(
    readonly host: string,
    readonly port: number,
    size = 1,
  ) {
    this.authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.#sessions = new Array<http2.ClientHttp2Session | undefined>(Math.max(1, size));
  }

  /** a usable session (connecting if needed); throws after close() */
  session(): http2.ClientHttp2Session {
    if (this.#closed) throw new Error('the listener is closing');
    const i = this.#next;
    this.#next = (i + 1) % this.#sessions.length;
    const s = this.#sessions[i];
    if (s && !s.closed && !s.destroyed) return s;
    return (this.#sessions[i] = this.#connect(i));
  }

  #connect(i: number): http2.ClientHttp2Session {
    const s = http2.connect(`http://${this.authority}`, {
      createConnection: () => net.connect({ host: this.host, port: this.port, noDelay: true }),
      // like grpc-js: Node's default (10 MB of queued frames) makes busy sessions fail with ENHANCE_YOUR_CALM
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      settings: { enablePush: false },
    });
    const drop = (): void => {
      if (this.#sessions[i] === s) this.#sessions[i] = undefined;
    };
    s.on('connect', () => s.setLocalWindowSize(SESSION_WINDOW));
    s.on('error', (err: Error) => {
      this.lastError = err.message;
      this.#errors.set(s, err.message);
      drop();
    });
    // a graceful GOAWAY: streams already open finish on this session, new ones go to a new session
    s.on('goaway', drop);
    s.on('close', drop);
    // an idle session must not keep the process alive
    s.unref();
    return s;
  }

  /** why this session failed (connection refused, reset...), if it did */
  errorOf(session: http2.ClientHttp2Session | undefined): string | undefined {
    return session ? this.#errors.get(session) : undefined;
  }

  /** stop handing out a session that failed to open a stream */
  discard(session: http2.ClientHttp2Session): void {
    const i = this.#sessions.indexOf(session);
    if (i >= 0) this.#sessions[i] = undefined;
    if (!session.destroyed) session.close();
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#sessions) s?.close();
    this.#sessions.fill(undefined);
  }

  /** destroy sessions (after the drain grace period) */
  destroy(): void {
    this.#closed = true;
    for (const s of this.#sessions) s?.destroy();
    this.#sessions.fill(undefined);
  }
}

/** A unary call with an empty deadline-bound request, for readiness checks: the status and the response message. */
export function rawUnary(
  pool: UpstreamPool,
  path: string,
  message: Buffer,
  timeoutMs: number,
): Promise<{ code: number; body?: Buffer }> {
  return new Promise((resolve) => {
    let req: http2.ClientHttp2Stream;
    const unavailable = { code: GrpcStatus.UNAVAILABLE };
    try {
      req = pool.session().request({
        ':method': 'POST',
        ':path': path,
        ':authority': pool.authority,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${timeoutMs}m`,
      });
    } catch {
      return resolve(unavailable);
    }
    const decoder = new FrameDecoder(4 * 1024 * 1024);
    let body: Buffer | undefined;
    let code: number | undefined;
    const timer = setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), timeoutMs);
    req.setTimeout(0);
    req.on('response', (h) => (code = statusOf(h) ?? code));
    req.on('trailers', (h) => (code = statusOf(h) ?? code));
    req.on('data', (chunk: Buffer) => {
      try {
        for (const f of decoder.push(chunk)) body ??= f.payload;
      } catch {
        req.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    req.on('error', () => {});
    req.on('close', () => {
      clearTimeout(timer);
      if (code === undefined) return resolve(unavailable);
      resolve({ code, body: body ?? Buffer.alloc(0) });
    });
    req.end(frame(message));
  });
}
