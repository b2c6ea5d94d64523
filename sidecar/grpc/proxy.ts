// One proxied gRPC call: a client's HTTP/2 stream on our listener relayed to one stream on the upstream
// session. Methods that are not inspected are relayed as DATA chunks (only message lengths are
// checked); inspected ones are reassembled into messages, opened (gzip/deflate) for the guard, and the
// original frame is forwarded unless the guard changed the message. Headers, trailers, deadlines,
// cancellation and flow control follow the call both ways.
import http2 from 'node:http2';
import type { SidecarContext } from '../context.js';
import { GuardError } from '../errors.js';
import { CallState } from './call.js';
import {
  frame,
  FrameDecoder,
  FrameTooLarge,
  FrameTracker,
  messageBytes,
  Undecodable,
  type Frame,
} from './frames.js';
import type { UpstreamPool } from './upstream.js';
import {
  guardStatus,
  relayHeaders,
  statusOf,
  statusTrailers,
  upstreamHeaders,
  type Headers,
  type OutHeaders,
  type Status,
} from './wire.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;
/** request bytes kept to replay a call the model server refused unprocessed (REFUSED_STREAM, e.g. after its GOAWAY) */
const REPLAY_MAX_BYTES = 64 * 1024;
const OK = 0;
const CANCELLED = 1;
const INTERNAL = 13;
const UNIMPLEMENTED = 12;
const RESOURCE_EXHAUSTED = 8;

export const identity = (b: Buffer): Buffer => b;

/** gen_ai.operation.name for a method: inference, the service's other (metadata) rpcs, or anything else */
export function operationOf(path: string): string {
  if (
    path === '/inference.GRPCInferenceService/ModelInfer' ||
    path === '/inference.GRPCInferenceService/ModelStreamInfer'
  )
    return 'infer';
  if (path.startsWith('/inference.GRPCInferenceService/') || path.startsWith('/grpc.health.v1.Health/'))
    return 'metadata';
  return 'other';
}

/**
 * What an inspected call does with each message (in the clear). Return the same Buffer to forward the
 * original frame, another to forward it instead, or undefined after calling relay.fail().
 */
export interface MessageHooks {
  request(msg: Buffer): Buffer | undefined;
  response(msg: Buffer): Buffer | undefined;
  /** the upstream ended with OK: write what is still owed (relay.write) or fail */
  beforeOk?(): void;
}

export interface RelayEnv {
  ctx: SidecarContext;
  pool: UpstreamPool;
  maxBytes: number;
}

/** A Trailers-Only response: the whole answer is one header block with the status. */
export function respondStatus(down: http2.ServerHttp2Stream, s: Status): void {
  if (down.destroyed || down.closed || down.headersSent) return;
  down.respond(
    { ':status': 200, 'content-type': 'application/grpc', ...statusTrailers(s) },
    { endStream: true },
  );
  // the client may still be sending: read and drop it so the stream can close
  down.resume();
}

export class Relay {
  readonly st: CallState;
  readonly #env: RelayEnv;
  readonly #down: http2.ServerHttp2Stream;
  readonly #headers: Headers;
  readonly #deadline: number | undefined;
  readonly #hooks: MessageHooks | undefined;
  #up: http2.ClientHttp2Stream | undefined;
  #session: http2.ClientHttp2Session | undefined;
  #upError: string | undefined;
  #upHeaders = false;
  #upTrailers: Headers | undefined;
  #responseEncoding: string | undefined;
  #trailers: OutHeaders | undefined;
  #done = false;
  #timer: NodeJS.Timeout | undefined;
  /** what went upstream so far, while it can still be replayed */
  #replay: Buffer[] | undefined = [];
  #replayBytes = 0;
  #retried = false;
  #requestEnded = false;
  // request side
  readonly #reqTracker: FrameTracker | undefined;
  readonly #reqDecoder: FrameDecoder | undefined;
  // response side
  readonly #resTracker: FrameTracker | undefined;
  readonly #resDecoder: FrameDecoder | undefined;

  constructor(
    env: RelayEnv,
    down: http2.ServerHttp2Stream,
    headers: Headers,
    path: string,
    deadline: number | undefined,
    hooks?: (relay: Relay) => MessageHooks,
    st?: CallState,
  ) {
    this.#env = env;
    this.#down = down;
    this.#headers = headers;
    this.#deadline = deadline;
    this.st = st ?? new CallState(env.ctx, path, headers, operationOf(path));
    this.#hooks = hooks?.(this);
    if (this.#hooks) {
      this.#reqDecoder = new FrameDecoder(env.maxBytes);
      this.#resDecoder = new FrameDecoder(env.maxBytes);
    } else {
      this.#reqTracker = new FrameTracker(env.maxBytes);
      this.#resTracker = new FrameTracker(env.maxBytes);
    }
  }

  start(): void {
    const down = this.#down;
    down.on('data', (chunk: Buffer) => this.#onRequestData(chunk));
    down.on('end', () => this.#onRequestEnd());
    down.on('close', () => this.#onDownClose());
    down.on('error', () => {
      /* the client left; 'close' follows */
    });
    down.on('wantTrailers', () => {
      try {
        down.sendTrailers(this.#trailers ?? { 'grpc-status': String(OK) });
      } catch {
        // trailers Node refuses to send (an invalid field from the model server)
        down.sendTrailers({
          'grpc-status': String(INTERNAL),
          'grpc-message': 'invalid trailers from the model server',
        });
      }
    });
    down.on('drain', () => this.#up?.resume());
    if (this.#deadline !== undefined) {
      this.#timer = setTimeout(
        () => this.fail(new GuardError('upstream_timeout')),
        Math.max(0, this.#deadline - Date.now()),
      );
    }
    // inspected calls open the upstream stream with the first message that passes the guard, so the
    // model server never sees a refused call at all
    if (!this.#hooks) this.#openUpstream();
  }

  get ended(): boolean {
    return this.#done;
  }

  /** an extra message to the client (inspected calls: e.g. a held-back tail, an error_message response) */
  write(msg: Buffer): void {
    const down = this.#down;
    if (this.#done || down.destroyed || down.closed) return;
    if (!down.headersSent)
      down.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    if (!down.write(frame(msg))) this.#up?.pause();
  }

  /** end the call with one of our errors (SPEC §5 status and trailers); the upstream stream is cancelled */
  fail(err: GuardError, rule?: string): void {
    this.#failWith(guardStatus(err, this.st.trace, rule));
  }

  #failWith(s: Status): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#cancelUpstream();
    this.#sendStatus(s);
    this.st.end(s.code);
  }

  #sendStatus(s: Status): void {
    const down = this.#down;
    if (down.destroyed || down.closed) return;
    if (!down.headersSent) return respondStatus(down, s);
    this.#trailers = statusTrailers(s);
    down.end();
    down.resume();
  }

  #cancelUpstream(): void {
    const up = this.#up;
    if (up && !up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL);
  }

  #openUpstream(): boolean {
    if (this.#up || this.#done) return !this.#done;
    const pool = this.#env.pool;
    const headers = upstreamHeaders(
      this.#headers,
      pool.authority,
      this.st.trace,
      this.#deadline,
      this.#hooks !== undefined,
    );
    let up: http2.ClientHttp2Stream | undefined;
    // a session that went bad between two calls (GOAWAY, reset) throws here: try a fresh one once
    for (let attempt = 0; up === undefined; attempt++) {
      let session: http2.ClientHttp2Session | undefined;
      try {
        session = pool.session();
        up = session.request(headers);
        this.#session = session;
      } catch (err) {
        if (session) pool.discard(session);
        if (attempt > 0 || !session) {
          this.fail(new GuardError('upstream_unavailable', { reason: (err as Error).message }));
          return false;
        }
      }
    }
    this.#up = up;
    this.st.upstreamStarted();
    const mine = (): boolean => up === this.#up;
    up.on('response', (h: Headers, flags: number) => mine() && this.#onResponseHeaders(h, flags));
    up.on('data', (chunk: Buffer) => mine() && this.#onResponseData(chunk));
    up.on('trailers', (h: Headers) => mine() && (this.#upTrailers = h));
    up.on('end', () => mine() && this.#onUpstreamEnd());
    up.on('close', () => mine() && this.#onUpstreamClose());
    up.on('error', (err: Error) => mine() && (this.#upError ??= err.message));
    up.on('drain', () => mine() && this.#down.resume());
    return true;
  }

  /** write request bytes upstream, remembering them while a replay is still possible */
  #toUpstream(buf: Buffer): void {
    if (this.#replay) {
      this.#replayBytes += buf.length;
      if (this.#replayBytes > REPLAY_MAX_BYTES) this.#replay = undefined;
      else this.#replay.push(buf);
    }
    if (!this.#up!.write(buf)) this.#down.pause();
  }

  #endUpstream(): void {
    this.#requestEnded = true;
    this.#up!.end();
  }

  // ---- client → upstream

  #onRequestData(chunk: Buffer): void {
    if (this.#done) return;
    if (!this.#hooks) {
      try {
        this.#reqTracker!.push(chunk);
      } catch (err) {
        return this.#tooLarge(err);
      }
      this.#toUpstream(chunk);
      return;
    }
    let frames: Frame[];
    try {
      frames = this.#reqDecoder!.push(chunk);
    } catch (err) {
      return this.#tooLarge(err);
    }
    for (const f of frames) {
      let msg: Buffer;
      try {
        msg = messageBytes(f, header(this.#headers['grpc-encoding']), this.#env.maxBytes);
      } catch (err) {
        return this.#undecodableRequest(err as Undecodable);
      }
      const out = this.#hooks.request(msg);
      if (out === undefined || this.#done) return;
      if (!this.#openUpstream()) return;
      this.#toUpstream(out === msg ? f.wire : frame(out));
    }
  }

  #onRequestEnd(): void {
    if (this.#done) return;
    if (this.#reqDecoder && this.#reqDecoder.buffered > 0) {
      return this.#failWith({ code: INTERNAL, details: 'the request ended inside a message' });
    }
    if (!this.#openUpstream()) return;
    this.#endUpstream();
  }

  #onDownClose(): void {
    clearTimeout(this.#timer);
    // the client cancelled (RST_STREAM) or left before the call was over: cancel the upstream call
    this.#cancelUpstream();
    if (this.#done) return;
    this.#done = true;
    this.st.upstreamDone();
    this.st.end(CANCELLED);
  }

  #tooLarge(err: unknown): void {
    if (!(err instanceof FrameTooLarge)) throw err;
    this.#failWith({
      code: RESOURCE_EXHAUSTED,
      details: `Received message larger than max (${err.size} vs. ${err.max})`,
    });
  }

  #undecodableRequest(err: Undecodable): void {
    if (!(err instanceof Undecodable)) throw err;
    const encoding = header(this.#headers['grpc-encoding']);
    if (err.tooLarge) return this.#failWith({ code: RESOURCE_EXHAUSTED, details: err.message });
    if (encoding !== undefined && encoding !== 'identity' && !['gzip', 'deflate'].includes(encoding)) {
      // as grpc-js answers: the encoding is not one we (or grpc) implement
      return this.#failWith({
        code: UNIMPLEMENTED,
        details: `Received message compressed with unsupported encoding "${encoding}"`,
      });
    }
    this.#failWith({ code: INTERNAL, details: err.message });
  }

  // ---- upstream → client

  #onResponseHeaders(h: Headers, flags: number): void {
    if (this.#done) return;
    this.#upHeaders = true;
    this.#replay = undefined;
    const code = statusOf(h);
    if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM || code !== undefined) {
      // Trailers-Only: the whole answer, relayed as is
      this.#done = true;
      clearTimeout(this.#timer);
      this.st.upstreamDone();
      const down = this.#down;
      if (down.destroyed || down.closed) {
        /* the client is gone */
      } else if (down.headersSent) {
        const t = relayHeaders(h, true);
        delete t[':status'];
        this.#trailers = t;
        down.end();
      } else {
        try {
          down.respond(relayHeaders(h, false), { endStream: true });
        } catch {
          respondStatus(down, { code: INTERNAL, details: 'invalid response headers from the model server' });
        }
        down.resume();
      }
      this.st.end(code ?? 2);
      return;
    }
    if (this.#hooks && Number(h[':status']) !== 200) {
      return this.fail(new GuardError('upstream_unavailable', { reason: `HTTP status ${h[':status']}` }));
    }
    this.#responseEncoding = header(h['grpc-encoding']);
    if (this.#down.destroyed || this.#down.closed || this.#down.headersSent) return;
    try {
      this.#down.respond(relayHeaders(h, false), { waitForTrailers: true });
    } catch {
      this.fail(new GuardError('upstream_unavailable', { reason: 'invalid response headers' }));
    }
  }

  #onResponseData(chunk: Buffer): void {
    if (this.#done) return;
    if (!this.#hooks) {
      try {
        this.#resTracker!.push(chunk);
      } catch (err) {
        return this.#tooLarge(err);
      }
      if (!this.#down.write(chunk)) this.#up!.pause();
      return;
    }
    let frames: Frame[];
    try {
      frames = this.#resDecoder!.push(chunk);
    } catch (err) {
      return this.#tooLarge(err);
    }
    for (const f of frames) {
      let msg: Buffer;
      try {
        msg = messageBytes(f, this.#responseEncoding, this.#env.maxBytes);
      } catch (err) {
        if (!(err instanceof Undecodable)) throw err;
        return this.fail(
          new GuardError('upstream_unavailable', { reason: `undecodable response (${err.message})` }),
        );
      }
      const out = this.#hooks.response(msg);
      if (out === undefined || this.#done) return;
      if (!this.#down.write(out === msg ? f.wire : frame(out))) this.#up!.pause();
    }
  }

  #onUpstreamEnd(): void {
    if (this.#done) return;
    const trailers = this.#upTrailers;
    if (!trailers) return; // ended without a status: reported on close
    const code = statusOf(trailers) ?? 2;
    this.st.upstreamDone();
    if (code === OK && this.#hooks) {
      if (this.#resDecoder!.buffered > 0)
        return this.fail(
          new GuardError('upstream_unavailable', { reason: 'the response ended inside a message' }),
        );
      this.#hooks.beforeOk?.();
      if (this.#done) return;
    }
    this.#done = true;
    clearTimeout(this.#timer);
    this.#trailers = relayHeaders(trailers, true);
    if (!this.#down.destroyed && !this.#down.closed) this.#down.end();
    this.st.end(code);
  }

  #onUpstreamClose(deferred = false): void {
    if (this.#done) return;
    const up = this.#up!;
    if (!deferred && this.#session?.destroyed) {
      // the whole connection went: its error (e.g. connect ECONNREFUSED) is emitted after the streams close
      setImmediate(() => up === this.#up && this.#onUpstreamClose(true));
      return;
    }
    if (up.rstCode === NGHTTP2_REFUSED_STREAM && !this.#upHeaders && this.#replay && !this.#retried) {
      // the model server did not process the stream (RFC 9113 §8.7): send the call again, once
      this.#retried = true;
      this.#up = undefined;
      this.#upError = undefined;
      if (!this.#openUpstream()) return;
      let ok = true;
      for (const b of this.#replay) ok = this.#up!.write(b);
      if (this.#requestEnded) this.#up!.end();
      if (ok) this.#down.resume();
      return;
    }
    this.st.upstreamDone();
    const reason =
      this.#env.pool.errorOf(this.#session) ??
      (up.rstCode
        ? `the model server reset the stream (HTTP/2 error ${up.rstCode})`
        : (this.#upError ??
          (this.#upHeaders
            ? 'the model server ended the call without a status'
            : (this.#env.pool.lastError ?? 'connection closed'))));
    this.fail(new GuardError('upstream_unavailable', { reason }));
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
