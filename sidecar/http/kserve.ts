// KServe Open Inference Protocol v2 REST (`/v2/models/{m}/infer`, BYTES tensors as JSON strings or
// in the binary tensor extension, see kserve-binary.ts)
// and Triton's generate extension (`/v2/models/{m}/generate[_stream]`, `text_input` → `text_output`).
import { GuardError } from '../errors.js';
import {
  capField,
  Collector,
  isObject,
  malformed,
  type BodyEncoder,
  type DecodedRequest,
  type DecodedResponse,
  type Json,
} from './exchange.js';
import { BINARY_HEADER, binaryTensors } from './kserve-binary.js';

/**
 * Nesting of a tensor's `data` beyond this is not a tensor: it is refused as malformed. Without a bound
 * a body of a few KiB of `[[[[…` overflowed the stack in the walk below, and the client got a 503
 * engine_fault instead of a 400 (found by sidecar/http/fuzz.test.ts). Real tensors nest as deep as their
 * rank, which is single-digit.
 */
const MAX_DATA_DEPTH = 64;

/** Every string element of a BYTES tensor's (possibly nested) `data`, with a setter. */
function bytesData(c: Collector, data: Json, path: string, source: 'user' | 'output') {
  let flat = 0;
  const walk = (arr: Json[], depth: number) => {
    if (depth > MAX_DATA_DEPTH) throw malformed(`${path}.data is nested deeper than ${MAX_DATA_DEPTH}`);
    arr.forEach((v: Json, k: number) => {
      if (Array.isArray(v)) return walk(v, depth + 1);
      const at = flat++;
      if (typeof v === 'string') c.text(`${path}.data[${at}]`, source, v, (t) => (arr[k] = t));
    });
  };
  if (Array.isArray(data)) walk(data, 1);
}

export function decodeInferRequest(
  body: Record<string, Json>,
  model: string | undefined,
  blob?: Buffer,
): DecodedRequest {
  const c = new Collector();
  if (!Array.isArray(body.inputs)) throw malformed('inputs must be an array');
  body.inputs.forEach((inp: Json, i: number) => {
    if (!isObject(inp)) throw malformed(`inputs[${i}] must be an object`);
    const binary = isObject(inp.parameters) && inp.parameters.binary_data_size !== undefined;
    if (binary && !blob) throw malformed(`inputs[${i}] has binary_data_size but the body has no binary part`);
    if (!binary && inp.datatype === 'BYTES') bytesData(c, inp.data, `inputs[${i}]`, 'user');
  });
  const d = kserveRequest(body, c, 'infer', model, body.inputs.length);
  if (blob) {
    const b = binaryTensors(c, body.inputs, blob, 'inputs', 'user');
    if ('error' in b) throw malformed(b.error);
    d.encode = binaryEncoder(b);
  }
  return d;
}

function binaryEncoder(b: { encode(header: Json): { body: Buffer; headerLength: number } }): BodyEncoder {
  return (json) => {
    const { body, headerLength } = b.encode(json);
    return { body, headers: { [BINARY_HEADER]: String(headerLength) } };
  };
}

export function decodeGenerateRequest(
  body: Record<string, Json>,
  model: string | undefined,
  streamRoute: boolean,
): DecodedRequest {
  const c = new Collector();
  // Triton maps top-level keys to input tensors by name, so any string field may reach the model
  for (const [k, v] of Object.entries(body)) {
    const source = k === 'text_input' || k === 'prompt' ? 'user' : 'parameter';
    if (typeof v === 'string') c.text(k, source, v, (t) => (body[k] = t));
    else if (Array.isArray(v))
      v.forEach((s: Json, i: number) => {
        if (typeof s === 'string') c.text(`${k}[${i}]`, source, s, (t) => (v[i] = t));
      });
  }
  const d = kserveRequest(body, c, 'generate', model, undefined);
  if (streamRoute) d.stream = true;
  return d;
}

function kserveRequest(
  body: Record<string, Json>,
  c: Collector,
  operation: string,
  model: string | undefined,
  messageCount: number | undefined,
): DecodedRequest {
  const params = isObject(body.parameters) ? body.parameters : undefined;
  const holders = [body, ...(params ? [params] : [])];
  let requested: number | undefined;
  for (const h of holders)
    if (typeof h.max_tokens === 'number') requested = Math.max(requested ?? 0, h.max_tokens);
  return {
    exchange: {
      operation,
      ...(model ? { model } : {}),
      segments: c.segments,
      ...(messageCount !== undefined ? { messageCount } : {}),
      ...(requested !== undefined ? { maxOutputTokens: requested } : {}),
    },
    collector: c,
    stream: isObject(params) && params.stream === true,
    removeTools: () => false,
    // an extra input a model does not declare is an error in Triton: only cap what was sent
    capOutputTokens: (max) => holders.map((h) => capField(h, 'max_tokens', max)).some(Boolean),
  };
}

/** `blob`: the binary part when the response carries Inference-Header-Content-Length */
export function decodeInferResponse(body: Record<string, Json>, blob?: Buffer): DecodedResponse {
  const c = new Collector();
  const outputs: Json[] = Array.isArray(body.outputs) ? body.outputs : [];
  outputs.forEach((o: Json, i: number) => {
    const binary = isObject(o) && isObject(o.parameters) && o.parameters.binary_data_size !== undefined;
    if (isObject(o) && !binary && o.datatype === 'BYTES') bytesData(c, o.data, `outputs[${i}]`, 'output');
  });
  const d = kserveResponse(body, c, 'infer');
  if (blob) {
    const b = binaryTensors(c, outputs, blob, 'outputs', 'output');
    // a model server whose answer does not add up: nothing we could judge, so nothing is passed on
    if ('error' in b)
      throw new GuardError('upstream_unavailable', { reason: 'binary tensor response is malformed' });
    d.encode = binaryEncoder(b);
  }
  return d;
}

export function decodeGenerateResponse(body: Record<string, Json>): DecodedResponse {
  const c = new Collector();
  c.text('text_output', 'output', body.text_output, (t) => (body.text_output = t));
  return kserveResponse(body, c, 'generate');
}

function kserveResponse(body: Record<string, Json>, c: Collector, operation: string): DecodedResponse {
  return {
    exchange: {
      operation,
      ...(typeof body.model_name === 'string' ? { model: body.model_name } : {}),
      segments: c.segments,
    },
    collector: c,
  };
}
