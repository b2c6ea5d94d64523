// KServe v2 / Triton binary tensor data extension: a body is a JSON header of
// `Inference-Header-Content-Length` bytes followed by the raw tensors, in order, each taking
// `parameters.binary_data_size` bytes. A BYTES tensor in raw form is, per element, a 4-byte
// little-endian length and the bytes (what tritonclient sends by default).
import type { Collector, Json } from './exchange.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

export const BINARY_HEADER = 'inference-header-content-length';

/** Split a body at the JSON header length; undefined when the length is not a valid offset. */
export function splitBinary(raw: Buffer, headerLength: string): { json: Buffer; blob: Buffer } | undefined {
  if (!/^\d+$/.test(headerLength.trim())) return undefined;
  const n = Number(headerLength);
  if (n > raw.length) return undefined;
  return { json: raw.subarray(0, n), blob: raw.subarray(n) };
}

/** The elements of a raw BYTES tensor, or undefined when the framing is broken. */
export function parseBytesTensor(buf: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let o = 0;
  while (o < buf.length) {
    if (o + 4 > buf.length) return undefined;
    const len = buf.readUInt32LE(o);
    o += 4;
    if (o + len > buf.length) return undefined;
    out.push(buf.subarray(o, o + len));
    o += len;
  }
  return out;
}

export function encodeBytesTensor(els: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of els) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length);
    parts.push(len, e);
  }
  return Buffer.concat(parts);
}

/**
 * Walk the tensors (`inputs` or `outputs`) of a binary body: JSON `data` of BYTES tensors and the raw
 * BYTES blobs both become segments. Returns an encoder that rebuilds header + blobs after redactions,
 * or a reason when the blob does not add up (the body is then malformed).
 */
export function binaryTensors(
  c: Collector,
  tensors: Json[],
  blob: Buffer,
  key: 'inputs' | 'outputs',
  source: 'user' | 'output',
): { encode(header: Json): { body: Buffer; headerLength: number } } | { error: string } {
  let offset = 0;
  const pieces: { tensor: Json; els?: Buffer[]; raw: Buffer }[] = [];
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    const size = t?.parameters?.binary_data_size;
    if (size === undefined) continue;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || offset + size > blob.length)
      return { error: `${key}[${i}].parameters.binary_data_size does not fit the body` };
    const raw = blob.subarray(offset, offset + size);
    offset += size;
    const piece: { tensor: Json; els?: Buffer[]; raw: Buffer } = { tensor: t, raw };
    pieces.push(piece);
    if (t.datatype !== 'BYTES') continue;
    const els = parseBytesTensor(raw);
    if (!els) return { error: `${key}[${i}] is not a valid BYTES tensor` };
    piece.els = els;
    els.forEach((e, j) => {
      let text: string;
      try {
        text = utf8.decode(e);
      } catch {
        return; // binary content (an image, audio): not text
      }
      c.text(`${key}[${i}].data[${j}]`, source, text, (s) => {
        els[j] = Buffer.from(s);
        piece.raw = encodeBytesTensor(els);
      });
    });
  }
  if (offset !== blob.length) return { error: `${blob.length - offset} bytes after the last binary tensor` };
  return {
    encode(header: Json) {
      for (const p of pieces) p.tensor.parameters.binary_data_size = p.raw.length;
      const json = Buffer.from(JSON.stringify(header));
      return { body: Buffer.concat([json, ...pieces.map((p) => p.raw)]), headerLength: json.length };
    },
  };
}
