// A Triton-like model server for tests, the demo and e2e: a real @grpc/grpc-js server speaking
// inference.GRPCInferenceService (ModelInfer, decoupled ModelStreamInfer, ServerLive/Ready, ModelReady,
// ServerMetadata, ModelMetadata) and grpc.health.v1.Health/Check. It answers from a script and records
// every call it receives, raw bytes included, so tests can prove what did (or did not) reach the model.
//
//   const triton = await startFakeTriton({ script: (req) => ({ chunks: ['Hello', ' world'] }) });
//   ... point a client or the sidecar at triton.target ...
//   triton.calls            // ReceivedCall[]: method, metadata, raw request/response bytes, cancelled
//   await triton.close();
//
// Replies: ModelInfer joins `chunks` into one text_output; ModelStreamInfer sends one response per
// chunk, the last with triton_final_response=true (or an extra empty final response, `emptyFinal`).
// `/inferguard.test.Echo/Echo` (unary) echoes its raw request bytes: a method the sidecar does not know.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'proto');
const definitions = protoLoader.loadSync(['inference/grpc_service.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const inference = definitions['inference.GRPCInferenceService'] as protoLoader.ServiceDefinition;
const health = definitions['grpc.health.v1.Health'] as protoLoader.ServiceDefinition;

/** ModelInferRequest as decoded here (proto field names, bytes as Buffers) */
export interface InferRequestJson {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<
    string,
    { string_param?: string; bool_param?: boolean; int64_param?: number; parameter_choice?: string }
  >;
  inputs: {
    name: string;
    datatype: string;
    shape: number[];
    contents?: { bytes_contents: Buffer[] } | null;
  }[];
  raw_input_contents: Buffer[];
}

export interface FakeReply {
  /** text_output pieces; default: echo the request's text_input */
  chunks?: string[];
  /** put BYTES outputs in raw_output_contents (4-byte LE length + bytes) instead of bytes_contents */
  raw?: boolean;
  /** ModelStreamInfer: mark chunks non-final and finish with an empty response carrying the final flag */
  emptyFinal?: boolean;
  /** ModelStreamInfer: leave out triton_final_response entirely (a non-decoupled server) */
  noFinalFlag?: boolean;
  /** extra response headers and trailers (string values) */
  headers?: Record<string, string>;
  trailers?: Record<string, string>;
  /** answer with this status instead */
  error?: { code: grpc.status; details: string };
  /** wait this long before each response (ms) */
  delayMs?: number;
  /** never answer (deadline and cancellation tests) */
  hang?: boolean;
}

export type FakeScript = (req: InferRequestJson, method: 'ModelInfer' | 'ModelStreamInfer') => FakeReply;

export interface ReceivedCall {
  /** full method path, e.g. /inference.GRPCInferenceService/ModelInfer */
  method: string;
  metadata: Record<string, string | string[]>;
  /** raw bytes of each request message, as received */
  requests: Buffer[];
  decoded: InferRequestJson[];
  /** raw bytes of each response message sent */
  responses: Buffer[];
  cancelled: boolean;
  /** deadline the call arrived with (ms since epoch), if any */
  deadline?: number;
}

export interface FakeTriton {
  readonly port: number;
  /** host:port for clients */
  readonly target: string;
  readonly calls: ReceivedCall[];
  /** change the script between calls */
  script: FakeScript;
  /** what ServerReady answers */
  ready: boolean;
  /** resolve when a call matching `pred` was recorded (e.g. to wait for a cancellation to arrive) */
  waitFor(pred: (c: ReceivedCall) => boolean, timeoutMs?: number): Promise<ReceivedCall>;
  close(): Promise<void>;
}

/** The text of a request's BYTES input, from bytes_contents or raw_input_contents. */
export function inputText(req: InferRequestJson, name = 'text_input'): string | undefined {
  const i = req.inputs.findIndex((t) => t.name === name);
  if (i < 0) return undefined;
  if (req.raw_input_contents.length > 0)
    return splitRaw(req.raw_input_contents[i] ?? Buffer.alloc(0))
      .map((b) => b.toString('utf8'))
      .join('');
  return (req.inputs[i].contents?.bytes_contents ?? []).map((b) => Buffer.from(b).toString('utf8')).join('');
}

export function splitRaw(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + 4 <= buf.length;) {
    const len = buf.readUInt32LE(off);
    out.push(buf.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return out;
}

export function joinRaw(elements: Buffer[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(e.length).buffer), e]));
}

/** Encode a ModelInferRequest the way clients do (tritonclient uses raw; others bytes_contents). */
export function encodeInferRequest(opts: {
  model?: string;
  id?: string;
  text?: string;
  inputs?: Record<string, string>;
  parameters?: Record<string, string | boolean | number>;
  raw?: boolean;
}): Buffer {
  const texts: Record<string, string> = {
    ...(opts.text !== undefined ? { text_input: opts.text } : {}),
    ...opts.inputs,
  };
  const names = Object.keys(texts);
  const parameters: Record<string, object> = {};
  for (const [k, v] of Object.entries(opts.parameters ?? {})) {
    parameters[k] =
      typeof v === 'string'
        ? { string_param: v }
        : typeof v === 'boolean'
          ? { bool_param: v }
          : { int64_param: v };
  }
  const msg = {
    model_name: opts.model ?? 'llm',
    id: opts.id ?? '',
    parameters,
    inputs: names.map((name) => ({
      name,
      datatype: 'BYTES',
      shape: [1],
      contents: opts.raw ? undefined : { bytes_contents: [Buffer.from(texts[name], 'utf8')] },
    })),
    raw_input_contents: opts.raw ? names.map((n) => joinRaw([Buffer.from(texts[n], 'utf8')])) : [],
  };
  return inference.ModelInfer.requestSerialize(msg);
}

export interface InferResponseJson {
  model_name: string;
  id: string;
  parameters: Record<string, { bool_param?: boolean; string_param?: string }>;
  outputs: {
    name: string;
    datatype: string;
    shape: number[];
    contents?: { bytes_contents: Buffer[] } | null;
  }[];
  raw_output_contents: Buffer[];
}

export function decodeInferResponse(buf: Buffer): InferResponseJson {
  return inference.ModelInfer.responseDeserialize(buf) as InferResponseJson;
}

export function decodeStreamResponse(buf: Buffer): {
  error_message: string;
  infer_response: InferResponseJson | null;
} {
  return inference.ModelStreamInfer.responseDeserialize(buf) as {
    error_message: string;
    infer_response: InferResponseJson | null;
  };
}

/** text_output of a response (both encodings), '' if absent */
export function outputText(res: InferResponseJson, name = 'text_output'): string {
  const i = res.outputs.findIndex((o) => o.name === name);
  if (i < 0) return '';
  if (res.raw_output_contents.length > 0)
    return splitRaw(res.raw_output_contents[i])
      .map((b) => b.toString('utf8'))
      .join('');
  return (res.outputs[i].contents?.bytes_contents ?? []).map((b) => Buffer.from(b).toString('utf8')).join('');
}

function inferResponse(
  req: InferRequestJson,
  text: string | undefined,
  raw: boolean,
  final: boolean | undefined,
): object {
  const outputs =
    text === undefined
      ? []
      : [
          {
            name: 'text_output',
            datatype: 'BYTES',
            shape: [1],
            contents: raw ? undefined : { bytes_contents: [Buffer.from(text, 'utf8')] },
          },
        ];
  return {
    model_name: req.model_name,
    model_version: '1',
    id: req.id,
    parameters: final === undefined ? {} : { triton_final_response: { bool_param: final } },
    outputs,
    raw_output_contents: raw && text !== undefined ? [joinRaw([Buffer.from(text, 'utf8')])] : [],
  };
}

const md = (rec?: Record<string, string>): grpc.Metadata => {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(rec ?? {})) m.set(k, v);
  return m;
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Envelope {
  raw: Buffer;
  msg: InferRequestJson;
  bad?: boolean;
}

export async function startFakeTriton(
  opts: { script?: FakeScript; host?: string; /** default 0: any free port */ port?: number } = {},
): Promise<FakeTriton> {
  const calls: ReceivedCall[] = [];
  const waiters: { pred: (c: ReceivedCall) => boolean; resolve: (c: ReceivedCall) => void }[] = [];
  const state = {
    script: opts.script ?? ((req: InferRequestJson): FakeReply => ({ chunks: [inputText(req) ?? ''] })),
    ready: true,
  };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  });

  const record = (
    method: string,
    call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline },
  ): ReceivedCall => {
    const d = call.getDeadline();
    const rec: ReceivedCall = {
      method,
      metadata: Object.fromEntries(
        Object.entries(call.metadata.getMap()).map(([k, v]) => [
          k,
          Buffer.isBuffer(v) ? v.toString('base64') : v,
        ]),
      ),
      requests: [],
      decoded: [],
      responses: [],
      cancelled: false,
      deadline: d instanceof Date ? d.getTime() : Number.isFinite(d) ? d : undefined,
    };
    calls.push(rec);
    return rec;
  };
  const notify = (): void => {
    for (const w of [...waiters]) {
      const hit = calls.find(w.pred);
      if (hit) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  };

  // a message proto-loader cannot turn into an object is recorded and answered INVALID_ARGUMENT by the
  // handlers, instead of grpc-js's INTERNAL
  const envelope =
    (decode: (b: Buffer) => unknown) =>
    (raw: Buffer): Envelope => {
      try {
        return { raw, msg: decode(raw) as InferRequestJson };
      } catch {
        const msg: InferRequestJson = {
          model_name: '',
          model_version: '',
          id: '',
          parameters: {},
          inputs: [],
          raw_input_contents: [],
        };
        return { raw, msg, bad: true };
      }
    };
  const id = (b: Buffer): Buffer => b;

  // ModelInfer
  server.register<Envelope, Buffer>(
    inference.ModelInfer.path,
    (call: grpc.ServerUnaryCall<Envelope, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const rec = record(inference.ModelInfer.path, call);
      rec.requests.push(call.request.raw);
      rec.decoded.push(call.request.msg);
      call.on('cancelled', () => {
        rec.cancelled = true;
        notify();
      });
      notify();
      // like Triton, answer a request it cannot read with INVALID_ARGUMENT instead of crashing
      let reply: FakeReply;
      try {
        if (call.request.bad) throw new Error('unreadable');
        reply = state.script(call.request.msg, 'ModelInfer');
      } catch {
        return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'fake-triton: unreadable request' });
      }
      if (reply.hang) return;
      void (async () => {
        if (reply.delayMs) await sleep(reply.delayMs);
        if (rec.cancelled) return;
        if (reply.headers) call.sendMetadata(md(reply.headers));
        if (reply.error)
          return callback({
            code: reply.error.code,
            details: reply.error.details,
            metadata: md(reply.trailers),
          });
        const text = (reply.chunks ?? [inputText(call.request.msg) ?? '']).join('');
        const out = inference.ModelInfer.responseSerialize(
          inferResponse(call.request.msg, text, reply.raw ?? false, undefined),
        );
        rec.responses.push(out);
        callback(null, out, md(reply.trailers));
      })();
    },
    id,
    envelope(inference.ModelInfer.requestDeserialize),
    'unary',
  );

  // ModelStreamInfer: decoupled, several responses per request
  server.register<Envelope, Buffer>(
    inference.ModelStreamInfer.path,
    (call: grpc.ServerDuplexStream<Envelope, Buffer>) => {
      const rec = record(inference.ModelStreamInfer.path, call);
      let pending = 0;
      let clientDone = false;
      let headersSent = false;
      let trailers: Record<string, string> | undefined;
      let failed = false;
      const maybeEnd = (): void => {
        if (clientDone && pending === 0 && !failed && !rec.cancelled) call.end(md(trailers));
      };
      call.on('cancelled', () => {
        rec.cancelled = true;
        notify();
      });
      call.on('error', () => {});
      call.on('data', (env: Envelope) => {
        rec.requests.push(env.raw);
        rec.decoded.push(env.msg);
        notify();
        let reply: FakeReply;
        try {
          if (env.bad) throw new Error('unreadable');
          reply = state.script(env.msg, 'ModelStreamInfer');
        } catch {
          reply = {
            error: { code: grpc.status.INVALID_ARGUMENT, details: 'fake-triton: unreadable request' },
          };
        }
        if (reply.hang) return;
        pending++;
        trailers = reply.trailers ?? trailers;
        void (async () => {
          if (!headersSent && reply.headers) {
            headersSent = true;
            call.sendMetadata(md(reply.headers));
          }
          if (reply.error) {
            failed = true;
            call.emit('error', {
              code: reply.error.code,
              details: reply.error.details,
              metadata: md(reply.trailers),
            });
            return;
          }
          const chunks = reply.chunks ?? [inputText(env.msg) ?? ''];
          for (let i = 0; i < chunks.length; i++) {
            if (reply.delayMs) await sleep(reply.delayMs);
            else await new Promise((r) => setImmediate(r));
            if (rec.cancelled || failed) return;
            const last = i === chunks.length - 1 && !reply.emptyFinal;
            const res = inferResponse(
              env.msg,
              chunks[i],
              reply.raw ?? false,
              reply.noFinalFlag ? undefined : last,
            );
            const out = inference.ModelStreamInfer.responseSerialize({
              error_message: '',
              infer_response: res,
            });
            rec.responses.push(out);
            call.write(out);
          }
          if (reply.emptyFinal) {
            const out = inference.ModelStreamInfer.responseSerialize({
              error_message: '',
              infer_response: inferResponse(env.msg, undefined, false, true),
            });
            rec.responses.push(out);
            call.write(out);
          }
          pending--;
          maybeEnd();
        })();
      });
      call.on('end', () => {
        clientDone = true;
        maybeEnd();
      });
    },
    id,
    envelope(inference.ModelStreamInfer.requestDeserialize),
    'bidi',
  );

  // metadata and health
  const simple = (def: protoLoader.MethodDefinition<object, object>, answer: (req: any) => object): void => {
    server.register<Buffer, Buffer>(
      def.path,
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const rec = record(def.path, call);
        rec.requests.push(call.request);
        const out = def.responseSerialize(answer(def.requestDeserialize(call.request)));
        rec.responses.push(out);
        notify();
        callback(null, out);
      },
      id,
      id,
      'unary',
    );
  };
  simple(inference.ServerLive, () => ({ live: true }));
  simple(inference.ServerReady, () => ({ ready: state.ready }));
  simple(inference.ModelReady, () => ({ ready: true }));
  simple(inference.ServerMetadata, () => ({
    name: 'fake-triton',
    version: '0.0.0',
    extensions: ['model_repository'],
  }));
  simple(inference.ModelMetadata, (req: { name: string }) => ({
    name: req.name,
    versions: ['1'],
    platform: 'vllm',
    inputs: [
      { name: 'text_input', datatype: 'BYTES', shape: [1] },
      { name: 'sampling_parameters', datatype: 'BYTES', shape: [1] },
    ],
    outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [-1] }],
  }));
  simple(health.Check, () => ({ status: state.ready ? 'SERVING' : 'NOT_SERVING' }));

  // a method the sidecar does not know: echoes its raw bytes
  server.register<Buffer, Buffer>(
    '/inferguard.test.Echo/Echo',
    (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const rec = record('/inferguard.test.Echo/Echo', call);
      rec.requests.push(call.request);
      rec.responses.push(call.request);
      notify();
      callback(null, call.request);
    },
    id,
    id,
    'unary',
  );

  const host = opts.host ?? '127.0.0.1';
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );

  // like Triton (C++ gRPC), answer with TCP_NODELAY: Node's http2 server leaves Nagle on
  const servers = (server as unknown as { http2Servers?: Map<import('node:net').Server, unknown> })
    .http2Servers;
  if (servers instanceof Map)
    for (const srv of servers.keys())
      srv.on('connection', (s: import('node:net').Socket) => s.setNoDelay(true));

  return {
    port,
    target: `${host}:${port}`,
    calls,
    get script() {
      return state.script;
    },
    set script(s: FakeScript) {
      state.script = s;
    },
    get ready() {
      return state.ready;
    },
    set ready(r: boolean) {
      state.ready = r;
    },
    waitFor(pred, timeoutMs = 5000) {
      const hit = calls.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error('fake-triton: no matching call within ' + timeoutMs + ' ms'));
          }
        }, timeoutMs).unref();
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      });
    },
  };
}
