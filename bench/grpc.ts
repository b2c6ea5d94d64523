// gRPC data-plane benchmark: the same KServe v2 calls direct to a zero-latency model server, through
// nginx `grpc_pass` (the reference floor: a plain HTTP/2 proxy that inspects nothing), through a bare
// node:http2 relay that parses nothing (what Node's HTTP/2 itself costs), and through the sidecar's gRPC
// listener with an empty policy and with the built-in default policy. Unary ModelInfer
// (4 KiB prompt) and ModelStreamInfer (one request, 8 responses), 1 and 64 calls in flight, one run.
//
//   npx tsx bench/grpc.ts            (or through bench/run.ts)
//
// The upstream and each sidecar run in their own child process (this process only drives load), so
// the numbers compare proxies, not event-loop sharing. Prints p50/p99 latency, calls/s and ratios.
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pct, spawnRole, startNginx as startNginxWith, type Nginx } from './harness.js';
import * as grpc from '@grpc/grpc-js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..');
const SVC = '/inference.GRPCInferenceService';
const WARMUP_MS = 300;
const MEASURE_MS = Number(process.env.BENCH_GRPC_MS ?? 1500);
const STREAM_RESPONSES = 8;
// for profiling one case: BENCH_GRPC_CELLS=stream/64,unary/1 BENCH_GRPC_SIDECARS=default,empty,passthrough
const ONLY_CELLS = process.env.BENCH_GRPC_CELLS?.split(',');
const ONLY_SIDECARS = process.env.BENCH_GRPC_SIDECARS?.split(',');
const id = (b: Buffer): Buffer => b;

// ---------------------------------------------------------------------------------------------
// Child roles: `upstream` (a zero-latency Triton-like server) and `sidecar` (the listener)

async function roleUpstream(): Promise<void> {
  // not the recording fake Triton (its bookkeeping would grow for the whole run): precomputed answers,: the upstream costs the same for every contender
  const server = new grpc.Server({ 'grpc.max_receive_message_length': -1 });
  const answer = await precomputed();
  server.register(
    `${SVC}/ModelInfer`,
    (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer.unary),
    id,
    id,
    'unary',
  );
  server.register(
    `${SVC}/ModelStreamInfer`,
    (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', () => {
        for (const r of answer.stream) call.write(r);
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
    id,
    id,
    'bidi',
  );
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  process.send!({ port });
}

async function precomputed(): Promise<{ unary: Buffer; stream: Buffer[] }> {
  const protoLoader = await import('@grpc/proto-loader');
  const defs = protoLoader.loadSync(['inference/grpc_service.proto'], {
    includeDirs: [path.join(ROOT, 'proto')],
    keepCase: true,
  });
  const svc = defs['inference.GRPCInferenceService'] as import('@grpc/proto-loader').ServiceDefinition;
  const text = 'The capital of France is Paris. It is known for the Eiffel Tower and its museums. '.repeat(3);
  const out = (t: string, final?: boolean): object => ({
    model_name: 'llm',
    model_version: '1',
    id: 'r',
    parameters: final === undefined ? {} : { triton_final_response: { bool_param: final } },
    outputs: [
      { name: 'text_output', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(t)] } },
    ],
  });
  const unary = svc.ModelInfer.responseSerialize(out(text));
  const piece = text.slice(0, 32);
  const stream = Array.from({ length: STREAM_RESPONSES }, (_, i) =>
    svc.ModelStreamInfer.responseSerialize({
      error_message: '',
      infer_response: out(piece, i === STREAM_RESPONSES - 1),
    }),
  );
  return { unary, stream };
}

type Contender = 'empty' | 'default' | 'passthrough';

async function roleSidecar(upstreamPort: number, which: Contender): Promise<void> {
  const { startGrpcListener } = await import('../sidecar/grpc/index.js');
  const { defaultPolicy, emptyPolicy } = await import('../policy/index.js');
  const { pino } = await import('pino');
  let policy: import('../policy/index.js').CompiledPolicy;
  try {
    policy = which === 'default' ? defaultPolicy() : emptyPolicy();
  } catch (err) {
    process.send!({ error: String((err as Error).message).split('\n')[0] });
    return;
  }
  // telemetry that does nothing: the benchmark measures the data plane; spans cost what the
  // telemetry helper's own benchmark says
  const noop = {
    traceId: '0'.repeat(32),
    inject() {},
    setModel() {},
    decision() {},
    scanned() {},
    upstream() {},
    end() {},
  };
  const ctx = {
    policy: () => policy,
    fail: 'closed' as const,
    telemetry: { startRequest: () => noop, policyReloaded() {}, shutdown: async () => {} },
    log: pino({ level: 'silent' }),
    pod: {},
  };
  if (which === 'passthrough') {
    // a bare node:http2 relay (headers, data and trailers piped, nothing parsed): what Node's HTTP/2 costs
    const port = await bareRelay(upstreamPort);
    process.send!({ port });
    return;
  }
  const listener = await startGrpcListener(ctx, {
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: '127.0.0.1', port: upstreamPort },
  });
  process.send!({ port: listener.address.port });
}

async function bareRelay(upstreamPort: number): Promise<number> {
  const http2 = await import('node:http2');
  const net = await import('node:net');
  const up = http2.connect(`http://127.0.0.1:${upstreamPort}`, {
    createConnection: () => net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true }),
  });
  up.on('error', () => {});
  const server = http2.createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
  server.on('connection', (s: import('node:net').Socket) => s.setNoDelay(true));
  server.on('stream', (down, headers) => {
    const out: import('node:http2').OutgoingHttpHeaders = {};
    for (const k in headers) if (!k.startsWith(':')) out[k] = headers[k];
    const req = up.request({ ...out, ':method': 'POST', ':path': headers[':path'] });
    let trailers: import('node:http2').OutgoingHttpHeaders = {};
    req.on('response', (h, flags) => {
      const r: import('node:http2').OutgoingHttpHeaders = {};
      for (const k in h) if (!k.startsWith(':') || k === ':status') r[k] = h[k];
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) down.respond(r, { endStream: true });
      else down.respond(r, { waitForTrailers: true });
    });
    req.on('trailers', (h) => (trailers = h));
    down.on('wantTrailers', () => down.sendTrailers(trailers));
    down.pipe(req);
    req.pipe(down);
    req.on('error', () => down.close());
    down.on('error', () => req.close());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as import('node:net').AddressInfo).port;
}

// ---------------------------------------------------------------------------------------------
// Driver

function child(args: string[]): ReturnType<typeof spawnRole> {
  // BENCH_GRPC_PROFILE=DIR writes a CPU profile of each sidecar child there
  return spawnRole(HERE, args, process.env.BENCH_GRPC_PROFILE);
}

async function startNginx(upstreamPort: number): Promise<Nginx> {
  return startNginxWith((dir, port) => {
    return `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream model { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port} http2;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 1024;
    client_max_body_size 64m;
    location / { grpc_pass grpc://model; }
  }
}
`;
  });
}

interface Result {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
}

function unaryCall(c: grpc.Client, body: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    c.makeUnaryRequest(`${SVC}/ModelInfer`, id, id, body, new grpc.Metadata(), (err) => resolve(!err));
  });
}

function streamCall(c: grpc.Client, body: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const s = c.makeBidiStreamRequest(`${SVC}/ModelStreamInfer`, id, id, new grpc.Metadata());
    let n = 0;
    s.on('data', () => {
      if (++n === STREAM_RESPONSES) s.end();
    });
    s.on('error', () => {});
    s.on('status', (st) => resolve(st.code === grpc.status.OK && n >= 1));
    s.write(body);
  });
}

async function measure(
  port: number,
  kind: 'unary' | 'stream',
  inflight: number,
  body: Buffer,
): Promise<Result> {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
  });
  const call = kind === 'unary' ? unaryCall : streamCall;
  const lat: number[] = [];
  let errors = 0;
  let recording = false;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      const ok = await call(c, body);
      if (!recording) continue;
      if (ok) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      else errors++;
    }
  };
  const workers = Array.from({ length: inflight }, worker);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  recording = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, MEASURE_MS));
  recording = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  c.close();
  lat.sort((a, b) => a - b);
  return { p50: pct(lat, 50), p99: pct(lat, 99), rps: lat.length / elapsed, errors };
}

export const description = 'gRPC proxy: direct vs nginx grpc_pass vs sidecar (empty / default policy)';

export async function run(): Promise<void> {
  const started = Date.now();
  const { encodeInferRequest } = await import('../testing/fake-triton.js');
  const prompt = 'Summarize the following report for an executive audience, keeping the numbers exact. '
    .repeat(48)
    .slice(0, 4096);
  const body = encodeInferRequest({
    text: prompt,
    inputs: { sampling_parameters: '{"max_tokens":128,"temperature":0.2}' },
  });

  const children: ChildProcess[] = [];
  const notes: string[] = [];
  const upstream = await child(['--role', 'upstream']);
  children.push(upstream.proc);
  const targets: { name: string; port?: number; note?: string }[] = [{ name: 'direct', port: upstream.port }];
  const nginx = await startNginx(upstream.port!);
  targets.push({ name: 'nginx grpc_pass', port: nginx.port, note: nginx.error });
  for (const which of (['passthrough', 'empty', 'default'] as const).filter(
    (w) => !ONLY_SIDECARS || ONLY_SIDECARS.includes(w),
  )) {
    const s = await child(['--role', 'sidecar', String(upstream.port), which]);
    children.push(s.proc);
    const name = which === 'passthrough' ? 'bare node:http2 relay' : `sidecar (${which} policy)`;
    targets.push({ name, port: s.port, note: s.error });
  }
  for (const t of targets) if (t.note) notes.push(`${t.name}: not measured (${t.note})`);

  const rows: { target: string; kind: string; inflight: number; r: Result }[] = [];
  try {
    for (const kind of ['unary', 'stream'] as const) {
      for (const inflight of [1, 64]) {
        if (ONLY_CELLS && !ONLY_CELLS.includes(`${kind}/${inflight}`)) continue;
        for (const t of targets) {
          if (t.port === undefined) continue;
          rows.push({ target: t.name, kind, inflight, r: await measure(t.port, kind, inflight, body) });
        }
      }
    }
  } finally {
    nginx.stop();
    for (const c of children) c.kill('SIGTERM');
  }

  console.log(
    `KServe v2 ModelInfer (4 KiB prompt) and ModelStreamInfer (${STREAM_RESPONSES} responses per call); ${MEASURE_MS} ms per cell after ${WARMUP_MS} ms warm-up, one run; load avg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const f = (n: number, d = 3): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
  console.log(
    '\n| call | in flight | target | throughput vs direct | added p50 ms | p50 ms | p99 ms | calls/s | errors |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const direct = rows.find(
      (x) => x.kind === row.kind && x.inflight === row.inflight && x.target === 'direct',
    )!.r;
    const added = row.target === 'direct' ? '' : f(row.r.p50 - direct.p50);
    const share = row.target === 'direct' ? '' : `${((row.r.rps / direct.rps) * 100).toFixed(0)} %`;
    console.log(
      `| ${row.kind} | ${row.inflight} | ${row.target} | ${share} | ${added} | ${f(row.r.p50)} | ${f(row.r.p99)} | ${row.r.rps.toFixed(0)} | ${row.r.errors} |`,
    );
  }
  console.log('\nscanning cost (default vs empty policy, same proxy):');
  for (const kind of ['unary', 'stream']) {
    for (const inflight of [1, 64]) {
      const e = rows.find(
        (x) => x.kind === kind && x.inflight === inflight && x.target === 'sidecar (empty policy)',
      )?.r;
      const d = rows.find(
        (x) => x.kind === kind && x.inflight === inflight && x.target === 'sidecar (default policy)',
      )?.r;
      if (!e || !d) continue;
      console.log(
        `  ${kind} ×${inflight}: p50 ${f(((d.p50 - e.p50) / e.p50) * 100, 1)} %, throughput ${f(((e.rps - d.rps) / e.rps) * 100, 1)} % lower`,
      );
    }
  }
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
if (process.argv[1] === HERE) {
  // children exit cleanly on SIGTERM (so a --cpu-prof profile gets written)
  if (argv[0] === '--role') process.on('SIGTERM', () => process.exit(0));
  if (argv[0] === '--role' && argv[1] === 'upstream') await roleUpstream();
  else if (argv[0] === '--role' && argv[1] === 'sidecar')
    await roleSidecar(Number(argv[2]), argv[3] as Contender);
  else {
    await run();
    process.exit(0);
  }
}
