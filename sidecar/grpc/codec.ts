// KServe v2 / Triton message codec: decodes the three messages the sidecar inspects (ModelInferRequest,
// ModelInferResponse, ModelStreamInferResponse), lists the text they carry as addressable elements, and
// re-encodes a message after redaction. Every other message of the service is forwarded as opaque bytes.
//
// Text lives in:
//   - BYTES tensors, either one element per `contents.bytes_contents` entry, or packed in
//     `raw_input_contents[i]` / `raw_output_contents[i]` as 4-byte little-endian length + bytes, repeated;
//   - string parameters (`parameters` of the request and of each input tensor), e.g. `sampling_parameters`.
// Elements that are not valid UTF-8 are decoded lossily (U+FFFD for bad sequences) and scanned like any
// other text: a model that takes binary BYTES still gets every printable run checked, and nothing is
// forwarded unscanned. They are only re-encoded when a redaction changes them.
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import type { Source, TextSegment } from '../../policy/index.js';

// ---------------------------------------------------------------------------------------------
// Schema

function protoDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // source tree: sidecar/grpc → ../../proto; built: dist/sidecar/grpc → ../../../proto
  for (const rel of ['../../proto', '../../../proto']) {
    const dir = path.resolve(here, rel);
    if (existsSync(path.join(dir, 'inference', 'grpc_service.proto'))) return dir;
  }
  throw new Error(`inferguard: proto/ not found next to ${here}`);
}

const PROTO_DIR = protoDir();
const PROTO_FILES = ['inference/grpc_service.proto', 'grpc/health/v1/health.proto'];

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
root.loadSync(PROTO_FILES, { keepCase: true });

const InferRequestType = root.lookupType('inference.ModelInferRequest');
const InferResponseType = root.lookupType('inference.ModelInferResponse');
const StreamResponseType = root.lookupType('inference.ModelStreamInferResponse');
const ServerReadyResponseType = root.lookupType('inference.ServerReadyResponse');
const HealthCheckResponseType = root.lookupType('grpc.health.v1.HealthCheckResponse');

// ---------------------------------------------------------------------------------------------
// Message shapes (as protobufjs decodes them with keepCase; absent repeated fields are empty arrays)

export interface InferParameter {
  bool_param?: boolean;
  int64_param?: number | object;
  string_param?: string;
  double_param?: number;
  uint64_param?: number | object;
}

export interface TensorContents {
  bytes_contents?: Uint8Array[];
  [k: string]: unknown;
}

export interface Tensor {
  name: string;
  datatype: string;
  shape: (number | object)[];
  parameters: Record<string, InferParameter>;
  contents?: TensorContents | null;
}

export interface InferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  inputs: Tensor[];
  outputs: { name: string; parameters: Record<string, InferParameter> }[];
  raw_input_contents: Uint8Array[];
}

export interface InferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  outputs: Tensor[];
  raw_output_contents: Uint8Array[];
}

export interface StreamResponse {
  error_message: string;
  infer_response?: InferResponse | null;
}

/** The message could not be decoded; the reason names the field, never its content. */
export class MalformedMessage extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'MalformedMessage';
  }
}

// protobufjs's wire types for scalar field types (varint 0, fixed64 1, fixed32 5); strings, bytes and
// messages are length-delimited (2)
const SCALAR_WIRE: Record<string, number> = protobuf.types.basic as unknown as Record<string, number>;

/**
 * Refuse encodings that protobufjs reads differently from the parsers model servers use (C++, Go,
 * Python, Java: Triton, KServe runtimes), since the sidecar must scan exactly what the model will read
 * (found by sidecar/grpc/fuzz.test.ts):
 *   - a singular embedded message given twice: conformant parsers MERGE the occurrences, protobufjs keeps
 *     only the last, so text in the first (e.g. `contents`) reached the model unscanned;
 *   - a known field under the wrong wire type: conformant parsers skip it as an unknown field and go on
 *     parsing what follows as top-level fields, protobufjs ignores the wire type and reads a varint as a
 *     length, turning the next fields into the inside of a message it then scans as something else.
 * No conformant encoder produces either, so refusing them (INVALID_ARGUMENT) costs legitimate clients
 * nothing. Throws a plain Error with a structural reason; decode() wraps it in MalformedMessage.
 */
function checkWire(type: protobuf.Type, reader: protobuf.Reader, end: number, at: string): void {
  const fields = fieldTable(type);
  let seen: Set<number> | undefined;
  while (reader.pos < end) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wire = tag & 7;
    const field = fields.get(id);
    if (!field) {
      reader.skipType(wire);
      if (reader.pos > end) throw new Error(`index out of range: ${reader.pos} > ${end}`);
      continue;
    }
    const ok = field.lengthDelimited ? wire === 2 : wire === field.scalar || (field.repeated && wire === 2);
    if (!ok) throw new Error(`field ${at}${field.name} has wire type ${wire}`);
    if (wire !== 2) {
      reader.skipType(wire);
      continue;
    }
    const len = reader.uint32();
    const stop = reader.pos + len;
    if (stop > end) throw new Error(`index out of range: ${reader.pos} + ${len} > ${end}`);
    const message = field.message;
    if (field.map) {
      // a map entry is a message {1: key, 2: value}; a message value given twice merges too
      if (message) checkMapEntry(message, reader, stop, `${at}${field.name}.`);
    } else if (message) {
      if (!field.repeated) {
        seen ??= new Set();
        if (seen.has(id)) throw new Error(`field ${at}${field.name} given more than once`);
        seen.add(id);
      }
      checkWire(message, reader, stop, `${at}${field.name}.`);
    }
    reader.pos = stop;
  }
}

interface FieldWire {
  name: string;
  /** the embedded message type (or a map's value type) */
  message?: protobuf.Type;
  map: boolean;
  repeated: boolean;
  lengthDelimited: boolean;
  /** the wire type of a scalar */
  scalar?: number;
}

const FIELD_TABLES = new WeakMap<protobuf.Type, Map<number, FieldWire>>();

/** what checkWire needs of each field, resolved once per type */
function fieldTable(type: protobuf.Type): Map<number, FieldWire> {
  let table = FIELD_TABLES.get(type);
  if (table) return table;
  table = new Map();
  for (const field of type.fieldsArray) {
    field.resolve();
    const message = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    // enums travel as varints
    const scalar = field.resolvedType instanceof protobuf.Enum ? 0 : SCALAR_WIRE[field.type];
    table.set(field.id, {
      name: field.name,
      message,
      map: field.map,
      repeated: field.repeated,
      lengthDelimited: message !== undefined || field.map || scalar === undefined,
      scalar,
    });
  }
  FIELD_TABLES.set(type, table);
  return table;
}

function checkMapEntry(value: protobuf.Type, reader: protobuf.Reader, end: number, at: string): void {
  let values = 0;
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag >>> 3 === 2) {
      if ((tag & 7) !== 2) throw new Error(`field ${at}value has wire type ${tag & 7}`);
      if (++values > 1) throw new Error(`field ${at}value given more than once`);
      const len = reader.uint32();
      const stop = reader.pos + len;
      if (stop > end) throw new Error(`index out of range: ${reader.pos} + ${len} > ${end}`);
      checkWire(value, reader, stop, `${at}value.`);
      reader.pos = stop;
    } else reader.skipType(tag & 7);
  }
}

/**
 * protobufjs's plain Reader (bounds-checked), with strings decoded by Node's native UTF-8 decoder: the
 * plain Reader copies every string's bytes (allocating even for "") and decodes them in JavaScript, which
 * was most of the time spent decoding a ModelStreamInferResponse. Invalid UTF-8 becomes U+FFFD (WHATWG),
 * as for text elements.
 */
class StrictReader extends protobuf.Reader {
  readonly #bytes: Buffer;
  constructor(buf: Uint8Array) {
    super(buf);
    this.#bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  override string(): string {
    const len = this.uint32();
    const start = this.pos;
    const end = start + len;
    if (end > this.len) throw new RangeError(`index out of range: ${start} + ${len} > ${this.len}`);
    this.pos = end;
    return len === 0 ? '' : this.#bytes.toString('utf8', start, end);
  }
}

function decode<T>(type: protobuf.Type, buf: Uint8Array, what: string): T {
  try {
    checkWire(type, new protobuf.Reader(buf), buf.length, '');
    // not protobufjs's BufferReader: it silently truncates a string whose length runs past the end, and
    // a message the model server would reject must not pass as valid
    return type.decode(new StrictReader(buf)) as unknown as T;
  } catch (err) {
    // protobufjs reasons are structural ("index out of range: 12 + 10 > 14", "invalid wire type 7 at
    // offset 3"): safe to return to the client.
    throw new MalformedMessage(`${what}: ${(err as Error).message}`);
  }
}

function encode(type: protobuf.Type, msg: object): Buffer {
  const u8 = type.encode(msg as protobuf.Message).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export const decodeInferRequest = (buf: Uint8Array): InferRequest =>
  decode<InferRequest>(InferRequestType, buf, 'ModelInferRequest');
export const decodeInferResponse = (buf: Uint8Array): InferResponse =>
  decode<InferResponse>(InferResponseType, buf, 'ModelInferResponse');
export const decodeStreamResponse = (buf: Uint8Array): StreamResponse =>
  decode<StreamResponse>(StreamResponseType, buf, 'ModelStreamInferResponse');
export const encodeInferRequest = (msg: InferRequest): Buffer => encode(InferRequestType, msg);
export const encodeInferResponse = (msg: InferResponse): Buffer => encode(InferResponseType, msg);
export const encodeStreamResponse = (msg: StreamResponse): Buffer => encode(StreamResponseType, msg);

export function decodeServerReady(buf: Uint8Array): boolean {
  return Boolean((ServerReadyResponseType.decode(buf) as unknown as { ready: boolean }).ready);
}
/** grpc.health.v1 ServingStatus: 1 = SERVING */
export function decodeHealthStatus(buf: Uint8Array): number {
  return Number((HealthCheckResponseType.decode(buf) as unknown as { status: number }).status);
}

// ---------------------------------------------------------------------------------------------
// Raw BYTES layout

/** Split a raw BYTES tensor into its elements; undefined when the length prefixes do not add up. */
export function splitRawBytes(buf: Uint8Array): Buffer[] | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Buffer[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + 4 > b.length) return undefined;
    const len = b.readUInt32LE(off);
    off += 4;
    if (off + len > b.length) return undefined;
    out.push(b.subarray(off, off + len));
    off += len;
  }
  return out;
}

export function joinRawBytes(elements: Uint8Array[]): Buffer {
  let size = 0;
  for (const e of elements) size += 4 + e.byteLength;
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.byteLength, off);
    off += 4;
    out.set(e, off);
    off += e.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text elements

/** One piece of text in a message, with what is needed to write a replacement back. */
export interface TextElement {
  /** stable address in the message, echoed in findings: `inputs[0].contents.bytes_contents[0]`,
   *  `raw_input_contents[0][1]`, `parameters.sampling_parameters`, `inputs[1].parameters.x` */
  path: string;
  /** tensor name, or the parameter key */
  name: string;
  kind: 'tensor' | 'parameter';
  /** tensor index (inputs/outputs) or -1 for request-level parameters */
  tensor: number;
  /** element index inside the tensor (tensor elements) */
  index: number;
  raw: boolean;
  text: string;
}

const USER_INPUTS = new Set([
  'text_input',
  'prompt',
  'text',
  'input',
  'query',
  'question',
  'messages',
  'input_text',
]);

/** Which part of an exchange a request input carries (drives source-specific rules and leak detection). */
export function inputSource(name: string): Source {
  const n = name.toLowerCase();
  if (n === 'system_prompt' || n === 'system' || n === 'system_message' || n === 'instructions')
    return 'system';
  if (USER_INPUTS.has(n)) return 'user';
  if (n === 'sampling_parameters' || n.endsWith('_parameters')) return 'parameter';
  // an unknown BYTES input is treated as user text: the conservative choice for injection rules
  return 'user';
}

// Numeric tensors carry no text. Anything else (BYTES, a datatype we do not know, or a casing some
// server might accept) is scanned as text: an unknown datatype must not be a way around the scanner.
const NUMERIC = new Set([
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BF16',
]);

function tensorElements(tensors: Tensor[], raws: Uint8Array[], side: 'input' | 'output'): TextElement[] {
  const out: TextElement[] = [];
  const list = side === 'input' ? 'inputs' : 'outputs';
  const rawField = side === 'input' ? 'raw_input_contents' : 'raw_output_contents';
  const whole = (t: number, name: string, raw: Uint8Array): void => {
    out.push({
      path: `${rawField}[${t}]`,
      name,
      kind: 'tensor',
      tensor: t,
      index: -1,
      raw: true,
      text: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'),
    });
  };
  for (let t = 0; t < tensors.length; t++) {
    const tensor = tensors[t];
    const datatype = (tensor.datatype ?? '').toUpperCase();
    const bytes = tensor.datatype === 'BYTES';
    // bytes_contents are text whatever the datatype claims
    const els = tensor.contents?.bytes_contents ?? [];
    for (let i = 0; i < els.length; i++) {
      const e = els[i];
      out.push({
        path: `${list}[${t}].contents.bytes_contents[${i}]`,
        name: tensor.name,
        kind: 'tensor',
        tensor: t,
        index: i,
        raw: false,
        text: Buffer.from(e.buffer, e.byteOffset, e.byteLength).toString('utf8'),
      });
    }
    if (raws.length === 0 || NUMERIC.has(datatype)) continue;
    const raw = raws[t];
    if (raw === undefined) {
      if (bytes) throw new MalformedMessage(`${rawField}[${t}] missing for BYTES ${list}[${t}]`);
      continue;
    }
    const split = splitRawBytes(raw);
    if (!split) {
      if (bytes) throw new MalformedMessage(`${rawField}[${t}] is not a length-prefixed BYTES tensor`);
      whole(t, tensor.name, raw);
      continue;
    }
    for (let i = 0; i < split.length; i++) {
      out.push({
        path: `${rawField}[${t}][${i}]`,
        name: tensor.name,
        kind: 'tensor',
        tensor: t,
        index: i,
        raw: true,
        text: split[i].toString('utf8'),
      });
    }
  }
  // raw contents without a tensor to describe them: servers disagree on what they mean, so scan them
  for (let t = tensors.length; t < raws.length; t++) whole(t, '', raws[t]);
  return out;
}

function parameterElements(
  params: Record<string, InferParameter> | undefined,
  prefix: string,
  tensor: number,
): TextElement[] {
  const out: TextElement[] = [];
  if (!params) return out;
  for (const key of Object.keys(params)) {
    const s = params[key]?.string_param;
    if (typeof s === 'string' && s.length > 0) {
      out.push({
        path: `${prefix}parameters.${key}`,
        name: key,
        kind: 'parameter',
        tensor,
        index: -1,
        raw: false,
        text: s,
      });
    }
  }
  return out;
}

export interface RequestText {
  elements: TextElement[];
  segments: TextSegment[];
  /** the request's system prompt(s), joined, for output leak detection */
  systemPrompt?: string;
  /** requested output tokens (sampling_parameters.max_tokens or a max_tokens input), if given */
  maxOutputTokens?: number;
}

export function requestText(req: InferRequest): RequestText {
  const elements = [
    ...parameterElements(req.parameters, '', -1),
    ...tensorElements(req.inputs, req.raw_input_contents, 'input'),
  ];
  for (let t = 0; t < req.inputs.length; t++) {
    elements.push(...parameterElements(req.inputs[t].parameters, `inputs[${t}].`, t));
  }
  // parameters of requested outputs are strings the server reads too
  for (let o = 0; o < req.outputs.length; o++) {
    elements.push(...parameterElements(req.outputs[o].parameters, `outputs[${o}].`, o));
  }
  const segments: TextSegment[] = [];
  const system: string[] = [];
  let maxOutputTokens: number | undefined;
  for (const e of elements) {
    const source: Source = e.kind === 'parameter' ? 'parameter' : inputSource(e.name);
    segments.push({
      path: e.path,
      source,
      role: source === 'system' ? 'system' : source === 'user' ? 'user' : undefined,
      text: e.text,
    });
    if (source === 'system') system.push(e.text);
    if (e.name === 'sampling_parameters' && maxOutputTokens === undefined)
      maxOutputTokens = jsonMaxTokens(e.text);
  }
  return {
    elements,
    segments,
    systemPrompt: system.length > 0 ? system.join('\n') : undefined,
    maxOutputTokens: maxOutputTokens ?? paramMaxTokens(req),
  };
}

/** an integer `max_tokens` request parameter (Triton passes request parameters to the backend) */
export function paramMaxTokens(req: InferRequest): number | undefined {
  const p = req.parameters?.max_tokens;
  const v = p?.int64_param ?? p?.uint64_param;
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'number' ? v : Number(String(v)); // protobufjs gives int64 as Long objects
  return Number.isFinite(n) ? n : undefined;
}

function jsonMaxTokens(text: string): number | undefined {
  if (!text.includes('max_tokens')) return undefined;
  try {
    const v = (JSON.parse(text) as { max_tokens?: unknown }).max_tokens;
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Cap `max_tokens` in a sampling_parameters JSON string; undefined when the text is not such JSON. */
export function capMaxTokens(text: string, max: number): string | undefined {
  try {
    const obj = JSON.parse(text) as Record<string, unknown>;
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
    if (typeof obj.max_tokens === 'number' && obj.max_tokens <= max) return undefined;
    obj.max_tokens = max;
    return JSON.stringify(obj);
  } catch {
    return undefined;
  }
}

export function responseText(res: InferResponse): TextElement[] {
  return tensorElements(res.outputs, res.raw_output_contents, 'output');
}

// ---------------------------------------------------------------------------------------------
// Rewriting

/**
 * Write replacement texts (by element path) back into tensors/parameters. Raw tensors are rebuilt
 * with fresh length prefixes. Mutates the decoded message in place; the caller re-encodes it.
 */
function applyReplacements(
  elements: TextElement[],
  replacements: Map<string, string>,
  tensors: Tensor[],
  raws: Uint8Array[],
  params: Record<string, InferParameter> | undefined,
): Uint8Array[] {
  const rawEdits = new Map<number, Map<number, Buffer>>();
  let newRaws = raws;
  for (const e of elements) {
    const text = replacements.get(e.path);
    if (text === undefined) continue;
    if (e.kind === 'parameter') {
      const target = e.tensor < 0 ? params : tensors[e.tensor].parameters;
      if (target) target[e.name] = { string_param: text };
    } else if (e.raw) {
      let m = rawEdits.get(e.tensor);
      if (!m) rawEdits.set(e.tensor, (m = new Map()));
      m.set(e.index, Buffer.from(text, 'utf8'));
    } else {
      const contents = tensors[e.tensor].contents!;
      const els = [...(contents.bytes_contents ?? [])];
      els[e.index] = Buffer.from(text, 'utf8');
      contents.bytes_contents = els;
    }
  }
  if (rawEdits.size > 0) {
    newRaws = [...raws];
    for (const [t, edits] of rawEdits) {
      const all = edits.get(-1); // a raw tensor scanned as one text
      if (all) {
        newRaws[t] = all;
        continue;
      }
      const els: Uint8Array[] = splitRawBytes(raws[t]) ?? [];
      for (const [i, b] of edits) els[i] = b;
      newRaws[t] = joinRawBytes(els);
    }
  }
  return newRaws;
}

export function rewriteRequest(
  req: InferRequest,
  elements: TextElement[],
  replacements: Map<string, string>,
  capTokens?: number,
): Buffer {
  // parameters maps decode as shared frozen defaults when absent: give the message its own copies
  req.parameters = { ...req.parameters };
  const asked = paramMaxTokens(req);
  if (capTokens !== undefined && asked !== undefined && asked > capTokens) {
    req.parameters.max_tokens = { int64_param: capTokens };
  }
  req.inputs = req.inputs.map((t) => ({ ...t, parameters: { ...t.parameters } }));
  req.outputs = req.outputs.map((o) => ({ ...o, parameters: { ...o.parameters } }));
  for (const e of elements) {
    const text = replacements.get(e.path);
    if (text !== undefined && e.kind === 'parameter' && e.path.startsWith('outputs[')) {
      req.outputs[e.tensor].parameters[e.name] = { string_param: text };
    }
  }
  req.raw_input_contents = applyReplacements(
    elements.filter((e) => !e.path.startsWith('outputs[')),
    replacements,
    req.inputs,
    req.raw_input_contents,
    req.parameters,
  );
  return encodeInferRequest(req);
}

export function rewriteResponse(
  res: InferResponse,
  elements: TextElement[],
  replacements: Map<string, string>,
): void {
  res.outputs = res.outputs.map((t) => ({ ...t }));
  res.raw_output_contents = applyReplacements(
    elements,
    replacements,
    res.outputs,
    res.raw_output_contents,
    undefined,
  );
}

/** Append an extra BYTES element text to an output tensor of a response, creating the tensor if absent. */
export function appendOutputText(res: InferResponse, name: string, index: number, text: string): void {
  index = Math.max(0, index); // a whole-tensor element (-1) continues as element 0
  const t = res.outputs.findIndex((o) => o.name === name && o.datatype === 'BYTES');
  const bytes = Buffer.from(text, 'utf8');
  if (t < 0) {
    const tensor: Tensor = {
      name,
      datatype: 'BYTES',
      shape: [1],
      parameters: {},
      contents: res.raw_output_contents.length > 0 ? null : { bytes_contents: [bytes] },
    };
    res.outputs = [...res.outputs, tensor];
    if (res.raw_output_contents.length > 0)
      res.raw_output_contents = [...res.raw_output_contents, joinRawBytes([bytes])];
    return;
  }
  if (res.raw_output_contents.length > 0) {
    const els: Uint8Array[] = splitRawBytes(res.raw_output_contents[t]) ?? [];
    els[index] = Buffer.concat([els[index] ?? Buffer.alloc(0), bytes]);
    res.raw_output_contents = [...res.raw_output_contents];
    res.raw_output_contents[t] = joinRawBytes(els.map((e) => e ?? Buffer.alloc(0)));
  } else {
    const contents = { ...(res.outputs[t].contents ?? {}) };
    const els = [...(contents.bytes_contents ?? [])];
    const prev = els[index] ?? new Uint8Array(0);
    els[index] = Buffer.concat([prev, bytes]);
    contents.bytes_contents = els;
    res.outputs = [...res.outputs];
    res.outputs[t] = { ...res.outputs[t], contents };
  }
}

/** Triton marks the last response of a decoupled request with parameter triton_final_response=true. */
export function finalFlag(res: InferResponse): boolean | undefined {
  const p = res.parameters?.triton_final_response;
  if (!p) return undefined;
  return p.bool_param === true;
}

// ---------------------------------------------------------------------------------------------
// Method table

export interface MethodInfo {
  /** `/inference.GRPCInferenceService/ModelInfer` */
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** Every rpc of the services in proto/ (inference.GRPCInferenceService, grpc.health.v1.Health). */
export const KNOWN_METHODS: readonly MethodInfo[] = (() => {
  const out: MethodInfo[] = [];
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Service) {
        const svc = obj.fullName.replace(/^\./, '');
        for (const m of obj.methodsArray) {
          out.push({
            path: `/${svc}/${m.name}`,
            requestStream: Boolean(m.requestStream),
            responseStream: Boolean(m.responseStream),
          });
        }
      } else if (obj instanceof protobuf.Namespace) {
        walk(obj);
      }
    }
  };
  walk(root);
  return out;
})();
