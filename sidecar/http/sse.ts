// Server-sent events framing, as a pure bounded decoder (the shape of grpc-js's StreamDecoder).
//
// Why not eventsource-parser directly: the proxy must forward events it did not change
// byte-for-byte, so every decoded block carries its raw text, and a stream that never sends a blank
// line must hit a named bound instead of growing without limit. sse.test.ts checks this decoder
// against eventsource-parser on random streams split at random points.

export interface SseEvent {
  /** the block exactly as received (lines and terminators); concatenating every raw gives the input */
  raw: string;
  /** `data` lines joined with "\n"; undefined when the block had none (comments, stray blank lines) */
  data?: string;
  event?: string;
  id?: string;
}

export class SseTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`server-sent event larger than ${limit} bytes`);
    this.name = 'SseTooLargeError';
    this.limit = limit;
  }
}

/** 1 MiB: a single chunk of an OpenAI stream is a few hundred bytes */
export const DEFAULT_MAX_EVENT_CHARS = 1 << 20;

const LINE_END = /[\r\n]/g;

export class SseDecoder {
  readonly #decoder = new TextDecoder();
  readonly #max: number;
  /** the current line, not yet terminated */
  #line = '';
  /** complete lines of the current block, with their terminators */
  #raw = '';
  #data: string[] | undefined;
  #event: string | undefined;
  #id: string | undefined;
  /**
   * the previous chunk ended in CR: `#line` is complete, but whether its terminator is CR or CRLF is
   * known only with the next byte, so it waits (the raw bytes then stay exact)
   */
  #pendingCR = false;

  constructor(maxEventChars = DEFAULT_MAX_EVENT_CHARS) {
    this.#max = maxEventChars;
  }

  write(chunk: Uint8Array | string): SseEvent[] {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    const out: SseEvent[] = [];
    let i = 0;
    if (this.#pendingCR && text.length > 0) {
      this.#pendingCR = false;
      const crlf = text.charCodeAt(0) === 10;
      this.#finishLine(crlf ? '\r\n' : '\r', out);
      if (crlf) i = 1;
    }
    while (i < text.length) {
      LINE_END.lastIndex = i;
      const m = LINE_END.exec(text);
      if (!m) {
        this.#line += text.slice(i);
        break;
      }
      const j = m.index;
      this.#line += text.slice(i, j);
      if (text.charCodeAt(j) === 13 && j + 1 === text.length) {
        this.#pendingCR = true;
        i = text.length;
        break;
      }
      const end = text.charCodeAt(j) === 13 && text.charCodeAt(j + 1) === 10 ? j + 2 : j + 1;
      this.#finishLine(text.slice(j, end), out);
      i = end;
    }
    if (this.#raw.length + this.#line.length > this.#max) throw new SseTooLargeError(this.#max);
    return out;
  }

  /**
   * The upstream closed. A block without its terminating blank line is not an event (EventSource
   * drops it too), so its raw text is returned only for accounting and must not be forwarded.
   */
  end(): { events: SseEvent[]; unterminated: string } {
    const events: SseEvent[] = [];
    if (this.#pendingCR) {
      this.#pendingCR = false;
      this.#finishLine('\r', events);
    }
    const rest = this.#decoder.decode();
    const unterminated = this.#raw + this.#line + rest;
    this.#reset();
    this.#line = '';
    return { events, unterminated };
  }

  #finishLine(terminator: string, out: SseEvent[]): void {
    const line = this.#line;
    this.#line = '';
    this.#raw += line + terminator;
    this.#onLine(line, out);
  }

  #onLine(line: string, out: SseEvent[]): void {
    if (line === '') {
      const ev: SseEvent = { raw: this.#raw };
      if (this.#data) ev.data = this.#data.join('\n');
      if (this.#event !== undefined) ev.event = this.#event;
      if (this.#id !== undefined) ev.id = this.#id;
      out.push(ev);
      this.#reset();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        (this.#data ??= []).push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      default: // retry and unknown fields carry nothing we inspect
        break;
    }
  }

  #reset(): void {
    this.#raw = '';
    this.#data = undefined;
    this.#event = undefined;
    this.#id = undefined;
  }
}

/** Encode one event; `data` may hold newlines (each line becomes its own `data:` field). */
export function encodeSse(data: string, event?: string): string {
  let s = event === undefined ? '' : `event: ${event}\n`;
  for (const line of data.split(/\r\n|\r|\n/)) s += `data: ${line}\n`;
  return s + '\n';
}
