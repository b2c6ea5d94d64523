// A client living in another network namespace (the "client" side of the e2e link): reads one JSON
// request per stdin line, sends it over real sockets, and writes one JSON reply per stdout line with
// the same `id`. One long-running process, so each request does not pay a Node start-up.
//
//   {"id":1,"kind":"http","url":"http://192.0.2.5:8000/v1/chat/completions","method":"POST",
//    "headers":{…},"body":"…"}                     → {"id":1,"status":200,"headers":{…},"body":"…"}
//   {"id":2,"kind":"grpc","target":"192.0.2.5:8001","text":"…","metadata":{"traceparent":"…"}}
//                                                  → {"id":2,"code":0,"details":"…","trailers":{…},"text":"…"}
//
// gRPC goes through a real @grpc/grpc-js client calling inference.GRPCInferenceService/ModelInfer.
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { decodeInferResponse, encodeInferRequest, outputText } from '../testing/fake-triton.js';

interface HttpReq {
  id: number;
  kind: 'http';
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}
interface GrpcReq {
  id: number;
  kind: 'grpc';
  target: string;
  model?: string;
  text: string;
  metadata?: Record<string, string>;
}

const clients = new Map<string, grpc.Client>();
const reply = (o: object): boolean => process.stdout.write(JSON.stringify(o) + '\n');
const flat = (md: grpc.Metadata | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(md?.getMap() ?? {}).map(([k, v]) => [k, String(v)]));

async function http(r: HttpReq): Promise<object> {
  const res = await fetch(r.url, {
    method: r.method ?? 'GET',
    headers: r.headers,
    body: r.body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

function grpcCall(r: GrpcReq): Promise<object> {
  let client = clients.get(r.target);
  if (!client) {
    client = new grpc.Client(r.target, grpc.credentials.createInsecure());
    clients.set(r.target, client);
  }
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(r.metadata ?? {})) md.set(k, v);
  return new Promise((resolve) => {
    let trailers: Record<string, string> = {};
    const call = client.makeUnaryRequest(
      '/inference.GRPCInferenceService/ModelInfer',
      (b: Buffer) => b,
      (b: Buffer) => b,
      encodeInferRequest({ model: r.model ?? 'llm', text: r.text }),
      md,
      { deadline: Date.now() + 10_000 },
      // grpc-js emits 'status' (with the trailers) right after this callback
      (err, res) =>
        setImmediate(() =>
          resolve(
            err
              ? { code: err.code, details: err.details, trailers: flat(err.metadata) }
              : { code: 0, trailers, text: outputText(decodeInferResponse(res!)) },
          ),
        ),
    );
    call.on('status', (s) => (trailers = flat(s.metadata)));
  });
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const r = JSON.parse(line) as HttpReq | GrpcReq;
  void (r.kind === 'http' ? http(r) : grpcCall(r))
    .then((out) => reply({ id: r.id, ...out }))
    .catch((err: Error & { cause?: { code?: string } }) =>
      reply({ id: r.id, error: String(err.cause?.code ?? err.message) }),
    );
});
lines.on('close', () => {
  for (const c of clients.values()) c.close();
});
reply({ event: 'ready' });
