// One request to the model server on undici's dispatch API. `pool.request()` wraps every answer in a
// Readable stream, an AsyncResource and abort-signal listeners, and the adapter then read it with an
// async iterator; at 64 requests in flight that machinery was a large share of the sidecar's CPU. This
// handler hands the adapter what it needs directly: status and headers, then either the whole body
// (bounded) or its chunks with backpressure (the upstream socket is paused while the consumer is busy).
// Timeouts, connection reuse and error codes stay undici's (the Pool's options apply as before).
import type { Dispatcher } from 'undici';
import type { HeaderMap } from './upstream.js';

/** The client side of a request: aborting it aborts the upstream call (a client that went away). */
export class Cancel {
  aborted = false;
  #onAbort: (() => void) | undefined;
  #then: (() => void) | undefined;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const f = this.#onAbort;
    this.#onAbort = undefined;
    f?.();
    this.#then?.();
  }

  /** run `f` once the client is gone (after the running call was aborted) */
  whenAborted(f: () => void): void {
    this.#then = f;
  }

  /** @internal the running call's abort; undefined once it is over */
  set onAbort(f: (() => void) | undefined) {
    this.#onAbort = f;
  }
}

/** the error an aborted call fails with (mapped like a reset connection if it ever reaches a client) */
export class CallAbortedError extends Error {
  readonly code = 'UND_ERR_ABORTED';
  constructor() {
    super('request aborted');
    this.name = 'AbortError';
  }
}

export interface UpstreamReply extends AsyncIterable<Buffer> {
  statusCode: number;
  /** lower-case names; a repeated header is an array (as undici's request() gives them) */
  headers: HeaderMap;
  /** the whole body; past `max` bytes the call is aborted and `tooBig()` is thrown */
  readAll(max: number, tooBig: () => Error): Promise<Buffer>;
  /** stop reading: the upstream request is aborted (its connection closed) */
  destroy(): void;
}

type Waiter = { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: Error) => void };

class Call implements Dispatcher.DispatchHandler, UpstreamReply {
  statusCode = 0;
  headers: HeaderMap = {};
  #abort: ((e: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #paused = false;
  #queue: Buffer[] = [];
  #ended = false;
  #destroyed = false;
  #error: Error | undefined;
  #waiter: Waiter | undefined;
  #all:
    | {
        max: number;
        size: number;
        tooBig: () => Error;
        resolve: (b: Buffer) => void;
        reject: (e: Error) => void;
      }
    | undefined;
  #started: { resolve: (r: UpstreamReply) => void; reject: (e: Error) => void } | undefined;
  readonly #cancel: Cancel | undefined;

  constructor(started: { resolve: (r: UpstreamReply) => void; reject: (e: Error) => void }, cancel?: Cancel) {
    this.#started = started;
    this.#cancel = cancel;
  }

  // --- undici's handler interface -------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#cancel?.aborted) abort(new CallAbortedError());
    else if (this.#cancel) this.#cancel.onAbort = () => this.#abort?.(new CallAbortedError());
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    // 1xx (100-continue, 103 early hints) are not the answer
    if (statusCode < 200) return true;
    this.statusCode = statusCode;
    this.headers = parseHeaders(raw);
    this.#resume = resume;
    const s = this.#started;
    this.#started = undefined;
    s?.resolve(this);
    return true;
  }

  onData(chunk: Buffer): boolean {
    const all = this.#all;
    if (all) {
      all.size += chunk.length;
      if (all.size > all.max) {
        this.#all = undefined;
        all.reject(all.tooBig());
        this.destroy();
        return false;
      }
      this.#queue.push(chunk);
      return true;
    }
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w.resolve({ value: chunk, done: false });
      return true;
    }
    // nobody is reading right now: hold this one and pause the socket until they are
    this.#queue.push(chunk);
    this.#paused = true;
    return false;
  }

  onComplete(): void {
    this.#ended = true;
    if (this.#cancel) this.#cancel.onAbort = undefined;
    const all = this.#all;
    if (all) {
      this.#all = undefined;
      const q = this.#queue;
      this.#queue = [];
      all.resolve(q.length === 1 ? q[0] : Buffer.concat(q, all.size));
      return;
    }
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve({ value: undefined, done: true });
  }

  onError(err: Error): void {
    if (this.#cancel) this.#cancel.onAbort = undefined;
    if (this.#started) {
      const s = this.#started;
      this.#started = undefined;
      s.reject(err);
      return;
    }
    this.#error ??= err;
    const all = this.#all;
    this.#all = undefined;
    all?.reject(err);
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(err);
  }

  // --- the adapter's side ---------------------------------------------------------------------

  readAll(max: number, tooBig: () => Error): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let size = 0;
      for (const c of this.#queue) size += c.length;
      if (size > max) {
        reject(tooBig());
        this.destroy();
        return;
      }
      if (this.#error) return reject(this.#error);
      if (this.#ended) {
        const q = this.#queue;
        this.#queue = [];
        return resolve(q.length === 1 ? q[0] : Buffer.concat(q, size));
      }
      this.#all = { max, size, tooBig, resolve, reject };
      this.#unpause();
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => {
        if (this.#queue.length) return Promise.resolve({ value: this.#queue.shift()!, done: false });
        if (this.#error) return Promise.reject(this.#error);
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<Buffer>>((resolve, reject) => {
          this.#waiter = { resolve, reject };
          this.#unpause();
        });
      },
      // a consumer that stops early (break, throw) ends the call
      return: () => {
        if (!this.#ended && !this.#error) this.destroy();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  destroy(): void {
    if (this.#ended || this.#error || this.#destroyed) return;
    this.#destroyed = true;
    if (this.#cancel) this.#cancel.onAbort = undefined;
    this.#abort?.(new CallAbortedError());
  }

  #unpause(): void {
    if (!this.#paused) return;
    this.#paused = false;
    // may deliver the next chunks (or the end) synchronously
    this.#resume?.();
  }
}

/**
 * Sends one request and resolves once the answer's status and headers are in (rejects with undici's
 * error when it fails before that, e.g. ECONNREFUSED or UND_ERR_HEADERS_TIMEOUT). The body must then be
 * consumed with readAll(), iterated, or given up with destroy().
 */
export function upstreamCall(
  pool: Dispatcher,
  opts: Dispatcher.DispatchOptions,
  cancel?: Cancel,
): Promise<UpstreamReply> {
  return new Promise((resolve, reject) => {
    if (cancel?.aborted) return reject(new CallAbortedError());
    pool.dispatch(opts, new Call({ resolve, reject }, cancel));
  });
}

/** undici's raw [name, value, …] header list → an object as its request() API builds it */
export function parseHeaders(raw: (Buffer | string)[]): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i].toString('latin1').toLowerCase();
    const v = raw[i + 1].toString('latin1');
    const had = Object.hasOwn(out, k) ? out[k] : undefined;
    if (had === undefined) {
      if (k === '__proto__')
        Object.defineProperty(out, k, { value: v, enumerable: true, configurable: true, writable: true });
      else out[k] = v;
    } else if (Array.isArray(had)) had.push(v);
    else out[k] = [had, v];
  }
  return out;
}
