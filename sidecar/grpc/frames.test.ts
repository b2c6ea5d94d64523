// gRPC message framing over arbitrarily split DATA chunks, and opening compressed messages.
import zlib from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  frame,
  frameHeader,
  FrameDecoder,
  FrameTooLarge,
  FrameTracker,
  messageBytes,
  Undecodable,
} from './frames.js';

/** split `buf` at the given cut points (any order, out-of-range ignored) */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(Buffer.from(buf.subarray(prev, c)));
    prev = c;
  }
  out.push(Buffer.from(buf.subarray(prev)));
  return out;
}

const messages = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 });
const cuts = fc.array(fc.nat(3000), { maxLength: 40 });

describe('FrameDecoder and FrameTracker', () => {
  it('however the stream is cut, every message comes out whole, in order, with its original frame', () => {
    fc.assert(
      fc.property(messages, cuts, (msgs, cutAt) => {
        const wire = Buffer.concat(msgs.map((m) => frame(Buffer.from(m))));
        const decoder = new FrameDecoder(1000);
        const tracker = new FrameTracker(1000);
        const got = split(wire, cutAt).flatMap((chunk) => {
          tracker.push(chunk);
          return decoder.push(chunk);
        });
        expect(got.map((f) => Buffer.from(f.payload))).toEqual(msgs.map((m) => Buffer.from(m)));
        expect(Buffer.concat(got.map((f) => f.wire)).equals(wire)).toBe(true);
        expect(got.every((f) => !f.compressed)).toBe(true);
        expect(decoder.buffered).toBe(0);
        expect(tracker.messages).toBe(msgs.length);
        expect(tracker.atBoundary).toBe(true);
      }),
    );
  });

  it('a length prefix over the limit is refused as soon as it is complete, before the message arrives', () => {
    fc.assert(
      fc.property(fc.integer({ min: 101, max: 2 ** 32 - 1 }), fc.nat(4), (len, cut) => {
        const head = Buffer.concat([frame(Buffer.alloc(10)), frameHeader(false, len)]);
        const [a, b] = split(head, [15 + cut]);
        const decoder = new FrameDecoder(100);
        const tracker = new FrameTracker(100);
        if (b) {
          expect(decoder.push(a)).toHaveLength(1);
          tracker.push(a);
        }
        const last = b ?? a;
        expect(() => decoder.push(last)).toThrow(FrameTooLarge);
        expect(() => tracker.push(last)).toThrow(FrameTooLarge);
      }),
    );
  });

  it('a stream ending inside a message leaves bytes buffered (the relay refuses it)', () => {
    const decoder = new FrameDecoder(100);
    const tracker = new FrameTracker(100);
    const part = frame(Buffer.from('hello')).subarray(0, 7);
    expect(decoder.push(part)).toEqual([]);
    tracker.push(part);
    expect(decoder.buffered).toBe(7);
    expect(tracker.atBoundary).toBe(false);
  });
});

describe('messageBytes', () => {
  const text = Buffer.from('the quick brown fox '.repeat(50));
  const compressed = (payload: Buffer) => ({ wire: Buffer.alloc(0), compressed: true, payload });

  it('opens gzip and deflate; an uncompressed message is returned as is', () => {
    expect(messageBytes(compressed(zlib.gzipSync(text)), 'gzip', 1 << 20).equals(text)).toBe(true);
    expect(messageBytes(compressed(zlib.deflateSync(text)), 'deflate', 1 << 20).equals(text)).toBe(true);
    const plain = { wire: frame(text), compressed: false, payload: text };
    expect(messageBytes(plain, 'gzip', 10)).toBe(text);
  });

  it('refuses what it cannot open: no encoding, a wrong one, an unknown one, one that inflates past the limit', () => {
    const gz = compressed(zlib.gzipSync(text));
    expect(() => messageBytes(gz, undefined, 1 << 20)).toThrow(/without a grpc-encoding/);
    expect(() => messageBytes(gz, 'deflate', 1 << 20)).toThrow(/does not decompress as deflate/);
    expect(() => messageBytes(gz, 'snappy', 1 << 20)).toThrow(/unsupported encoding "snappy"/);
    const bomb = compressed(zlib.gzipSync(Buffer.alloc(10 << 20)));
    let err: unknown;
    try {
      messageBytes(bomb, 'gzip', 1 << 20);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Undecodable);
    expect((err as Undecodable).tooLarge).toBe(true);
  });
});
