// gRPC's length-prefixed messages on an HTTP/2 stream: a 1-byte compressed flag, a 4-byte big-endian
// length, then the message. DATA frames split and join them arbitrarily, so both decoders here carry
// state across chunks. See https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
import zlib from 'node:zlib';

/** One whole gRPC message as it was on the wire. */
export interface Frame {
  /** the 5-byte prefix and the message, contiguous (a view of the received chunk when possible) */
  wire: Buffer;
  compressed: boolean;
  /** the message bytes as sent (still compressed when `compressed`) */
  payload: Buffer;
}

/** A length prefix past the limit: the message is refused before its bytes are buffered. */
export class FrameTooLarge extends Error {
  constructor(
    readonly size: number,
    readonly max: number,
  ) {
    super(`message larger than max (${size} vs. ${max})`);
  }
}

export function frameHeader(compressed: boolean, length: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h[0] = compressed ? 1 : 0;
  h.writeUInt32BE(length, 1);
  return h;
}

/** an uncompressed message framed for the wire */
export function frame(message: Buffer): Buffer {
  return Buffer.concat([frameHeader(false, message.length), message]);
}

/** Reassembles whole messages from DATA chunks. */
export class FrameDecoder {
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** bytes received but not yet part of a whole message */
  get buffered(): number {
    return this.#pendingBytes;
  }

  /** every whole message completed by `chunk`; throws FrameTooLarge on an oversize prefix */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    let buf: Buffer;
    if (this.#pendingBytes === 0) {
      buf = chunk;
    } else {
      this.#pending.push(chunk);
      buf = Buffer.concat(this.#pending, this.#pendingBytes + chunk.length);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    let off = 0;
    while (buf.length - off >= 5) {
      const len = buf.readUInt32BE(off + 1);
      if (len > this.maxBytes) throw new FrameTooLarge(len, this.maxBytes);
      if (buf.length - off < 5 + len) break;
      const wire = buf.subarray(off, off + 5 + len);
      out.push({ wire, compressed: buf[off] !== 0, payload: wire.subarray(5) });
      off += 5 + len;
    }
    if (off < buf.length) {
      // keep a copy only of the unfinished tail (the chunk itself may be reused by the stream)
      const rest = buf.subarray(off);
      this.#pending.push(rest);
      this.#pendingBytes = rest.length;
    }
    return out;
  }
}

/**
 * Follows message boundaries without keeping any bytes, for streams relayed as they arrive: it only
 * checks each length prefix against the limit and counts whole messages.
 */
export class FrameTracker {
  /** bytes still to skip in the current message, or negative: -n prefix bytes seen so far */
  #left = 0;
  #prefix = Buffer.alloc(5);
  #prefixSeen = 0;
  messages = 0;

  constructor(private readonly maxBytes: number) {}

  /** throws FrameTooLarge on an oversize prefix */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, chunk.length - off);
        this.#left -= take;
        off += take;
        if (this.#left === 0) this.messages++;
        continue;
      }
      // reading a prefix
      if (this.#prefixSeen === 0 && chunk.length - off >= 5) {
        const len = chunk.readUInt32BE(off + 1);
        if (len > this.maxBytes) throw new FrameTooLarge(len, this.maxBytes);
        off += 5;
        this.#left = len;
        if (len === 0) this.messages++;
        continue;
      }
      const take = Math.min(5 - this.#prefixSeen, chunk.length - off);
      chunk.copy(this.#prefix, this.#prefixSeen, off, off + take);
      this.#prefixSeen += take;
      off += take;
      if (this.#prefixSeen === 5) {
        this.#prefixSeen = 0;
        const len = this.#prefix.readUInt32BE(1);
        if (len > this.maxBytes) throw new FrameTooLarge(len, this.maxBytes);
        this.#left = len;
        if (len === 0) this.messages++;
      }
    }
  }

  /** true between messages (no partial message pending) */
  get atBoundary(): boolean {
    return this.#left === 0 && this.#prefixSeen === 0;
  }
}

/** A compressed message we cannot open. */
export class Undecodable extends Error {
  constructor(
    message: string,
    /** the grpc status the peer should get */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

/** encodings the sidecar can open to inspect a message */
export const DECODABLE = new Set(['identity', 'gzip', 'deflate']);

/**
 * The message bytes of `f` in the clear, for inspection only (the original frame is what gets
 * forwarded when nothing changes). `encoding` is the stream's grpc-encoding header.
 */
export function messageBytes(f: Frame, encoding: string | undefined, maxBytes: number): Buffer {
  if (!f.compressed) return f.payload;
  if (encoding === undefined || encoding === 'identity')
    throw new Undecodable('compressed flag set without a grpc-encoding');
  const opts = { maxOutputLength: Math.max(1, maxBytes) };
  try {
    if (encoding === 'gzip') return zlib.gunzipSync(f.payload, opts);
    if (encoding === 'deflate') return zlib.inflateSync(f.payload, opts);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE')
      throw new Undecodable(`message decompresses to more than ${maxBytes} bytes`, true);
    throw new Undecodable(`message does not decompress as ${encoding}`);
  }
  throw new Undecodable(`unsupported encoding "${encoding}"`);
}
