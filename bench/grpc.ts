// gRPC data-plane benchmark: the same KServe v2 calls direct to a zero-latency model server, through
// nginx `grpc_pass` (the reference floor: a plain HTTP/2 proxy that inspects nothing), through a bare
// node:http2 relay that pipes headers, DATA and trailers and parses nothing (what Node's HTTP/2 itself
// costs), and through the sidecar's gRPC listener with an empty policy and with the built-in default
// policy. Unary ModelInfer (4 KiB prompt) and ModelStreamInfer (one request, 8 responses), 1 and 64
// calls in flight.
//
//   flock /tmp/inferguard-bench.lock npm run bench -- grpc      (or npx tsx bench/grpc.ts)
//
// Method (as bench/http.ts): the model server, nginx, the relay and each sidecar run in their own
// process, this one is the only client (one grpc-js channel per cell); every contender is warmed up
// first; the grid is measured in ROUNDS rounds with the contenders of a cell back to back in a rotating
// order, ratios are taken within a round and the median of rounds is printed with its min–max; each
// process's own CPU time per call (from /proc, over the recording window) is printed beside the
// wall-clock numbers, and "CPU-bound" ratios from the CPU the whole chain (client + proxy + model
// server) spends per call, which is what stays meaningful when other work shares the cores. The
// children run tsc's output (as `npm run build` ships it), not the tsx transform.
//
// Knobs: BENCH_GRPC_ROUNDS (5), BENCH_GRPC_MS (recording per cell and round, 800), BENCH_GRPC_CELLS
// (e.g. `stream:64,unary:1`), BENCH_GRPC_TARGETS (any of direct,nginx,relay,empty,default),
// BENCH_GRPC_PROFILE=DIR (a CPU profile of each sidecar child, sampled every 100 µs).
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  compileForBench,
  median,
  pct,
  cellKey,
  cpuPerOp,
  fixed,
  medianRange,
  roundViews,
  cpuSnapshot,
  pickCells,
  sleep,
  spawnRole,
  startNginx as startNginxWith,
  type Nginx,
} from './harness.js';
import * as grpc from '@grpc/grpc-js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..');
const SVC = '/inference.GRPCInferenceService';
const ROUNDS = Math.max(1, Number(process.env.BENCH_GRPC_ROUNDS ?? 5));
const MEASURE_MS = Number(process.env.BENCH_GRPC_MS ?? 800);
/** per cell and round, before recording: channel connected, steady state reached */
const SETTLE_MS = 200;
/** once per contender before the first round: the JIT has compiled the hot paths */
const WARMUP_MS = 1000;
const STREAM_RESPONSES = 8;
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

/** the children run the code as `npm run build` ships it (compileForBench), tsx only when that fails */
let compiledRoot: string | undefined;

function child(args: string[]): ReturnType<typeof spawnRole> {
  return spawnRole(HERE, args, process.env.BENCH_GRPC_PROFILE, {
    cpuProfIntervalUs: 100,
    ...(compiledRoot ? { compiledRoot } : {}),
  });
}

async function startNginx(upstreamPort: number): Promise<Nginx> {
  return startNginxWith((dir, port) => {
    return `worker_processes 1;
daemon off;
master_process off;
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

type Kind = 'unary' | 'stream';
type Key = 'direct' | 'nginx' | 'relay' | 'empty' | 'default';

interface Target {
  key: Key;
  name: string;
  port?: number;
  note?: string;
  /** the process whose CPU is this contender's own (direct: the model server) */
  pid?: number;
  upstreamPid?: number;
}

interface Sample {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  /** CPU the measured process spent per call over the recording window, µs */
  cpuPerCall?: number;
  /** CPU per call of the whole chain: this client + the proxy (if any) + the model server, µs */
  chainPerCall?: number;
  clientPerCall?: number;
  serverPerCall?: number;
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

/** drives `inflight` closed-loop callers for settle + recording; CPU is read over the recording only */
async function measure(
  t: Target,
  kind: Kind,
  inflight: number,
  body: Buffer,
  settleMs: number,
  recordMs: number,
): Promise<Sample> {
  const c = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    // a fresh channel per cell, not grpc-js's shared subchannel from the previous one
    'grpc.use_local_subchannel_pool': 1,
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
  await sleep(settleMs);
  recording = true;
  const cpu0 = cpuSnapshot(t);
  const t0 = performance.now();
  await sleep(recordMs);
  recording = false;
  const cpu1 = cpuSnapshot(t);
  const elapsed = (performance.now() - t0) / 1000;
  const done = lat.length;
  stop = true;
  await Promise.all(workers);
  c.close();
  lat.sort((a, b) => a - b);
  const per = cpuPerOp(cpu0, cpu1, done);
  return {
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    rps: done / elapsed,
    errors,
    ...(per.proxy !== undefined ? { cpuPerCall: per.proxy } : {}),
    ...(per.chain !== undefined
      ? { chainPerCall: per.chain, clientPerCall: per.client!, serverPerCall: per.server! }
      : {}),
  };
}

function pickedCells(): { kind: Kind; inflight: number }[] {
  return pickCells<Kind>(['unary', 'stream'], 'BENCH_GRPC_CELLS');
}

export const description =
  'gRPC proxy: direct vs nginx grpc_pass vs bare node:http2 relay vs sidecar (empty / default policy)';

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
  const only = process.env.BENCH_GRPC_TARGETS?.split(',').map((x) => x.trim());
  const want = (k: Key) => !only || only.includes(k);
  const cells = pickedCells();
  const children: ChildProcess[] = [];
  const notes: string[] = [];
  const targets: Target[] = [];
  let nginx: Nginx | undefined;
  const rounds: Map<string, Sample>[] = [];
  const compiled = compileForBench(['bench/grpc.ts']);
  compiledRoot = compiled.root;
  if (compiled.error) notes.push(`children ran through tsx (${compiled.error})`);
  try {
    const upstream = await child(['--role', 'upstream']);
    children.push(upstream.proc);
    if (want('direct'))
      targets.push({ key: 'direct', name: 'direct', port: upstream.port, pid: upstream.proc.pid });
    if (want('nginx')) {
      nginx = await startNginx(upstream.port!);
      targets.push({
        key: 'nginx',
        name: 'nginx grpc_pass',
        port: nginx.port,
        note: nginx.error,
        pid: nginx.pid,
      });
    }
    for (const [key, role, name] of [
      ['relay', 'passthrough', 'bare node:http2 relay'],
      ['empty', 'empty', 'sidecar (empty policy)'],
      ['default', 'default', 'sidecar (default policy)'],
    ] as const) {
      if (!want(key)) continue;
      const s = await child(['--role', 'sidecar', String(upstream.port), role]);
      children.push(s.proc);
      targets.push({ key, name, port: s.port, note: s.error, pid: s.proc.pid });
    }
    for (const t of targets) t.upstreamPid = upstream.proc.pid;
    for (const t of targets) if (t.note) notes.push(`${t.name}: not measured (${t.note})`);
    const live = targets.filter((t) => t.port !== undefined);

    // JIT warm-up of every contender on both call kinds (not recorded)
    for (const t of live)
      for (const kind of ['unary', 'stream'] as const) await measure(t, kind, 64, body, WARMUP_MS / 2, 1);

    for (let r = 0; r < ROUNDS; r++) {
      const got = new Map<string, Sample>();
      for (const { kind, inflight } of cells) {
        // rotate who goes first, so no contender always runs right after the same neighbour
        const order = live.map((_, i) => live[(i + r) % live.length]);
        for (const t of order)
          got.set(
            cellKey(kind, inflight, t.key),
            await measure(t, kind, inflight, body, SETTLE_MS, MEASURE_MS),
          );
      }
      rounds.push(got);
    }
  } finally {
    nginx?.stop();
    for (const c of children) c.kill('SIGTERM');
    compiled.cleanup();
  }

  const f = fixed;
  const mm = medianRange;
  const { per, paired } = roundViews(rounds);

  console.log(
    `\n## gRPC (KServe v2 ModelInfer, 4 KiB prompt; ModelStreamInfer, ${STREAM_RESPONSES} responses per call)`,
  );
  console.log(
    `load avg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(
        ' ',
      )}; ${ROUNDS} rounds × ${MEASURE_MS} ms per cell (after ${SETTLE_MS} ms settle; ${WARMUP_MS} ms warm-up per contender); median of rounds (min–max)`,
  );
  console.log(
    '\n| call | in flight | target | p50 ms | p99 ms | calls/s | throughput vs direct | added p50 ms | CPU µs/call | chain CPU µs/call (client + model server) | CPU-bound throughput vs direct | errors |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const { kind, inflight } of cells) {
    for (const t of targets) {
      const xs = per(kind, inflight, t.key);
      if (!xs.length) continue;
      const isDirect = t.key === 'direct';
      const share = isDirect
        ? ''
        : mm(
            paired(kind, inflight, t.key, 'direct', (x, y) => (x.rps / y.rps) * 100),
            0,
            ' %',
          );
      const added = isDirect
        ? ''
        : mm(
            paired(kind, inflight, t.key, 'direct', (x, y) => x.p50 - y.p50),
            3,
          );
      // with every core busy, throughput is inversely proportional to the chain's CPU per call
      const cpuShare = isDirect
        ? ''
        : mm(
            paired(
              kind,
              inflight,
              t.key,
              'direct',
              (x, y) => ((y.chainPerCall ?? NaN) / (x.chainPerCall ?? NaN)) * 100,
            ),
            0,
            ' %',
          );
      console.log(
        `| ${kind} | ${inflight} | ${t.name} | ${f(median(xs.map((x) => x.p50)))} | ${f(median(xs.map((x) => x.p99)))} | ${mm(
          xs.map((x) => x.rps),
          0,
        )} | ${share} | ${added} | ${mm(
          xs.map((x) => x.cpuPerCall ?? NaN),
          0,
        )} | ${f(median(xs.map((x) => x.chainPerCall ?? NaN)), 0)} (${f(median(xs.map((x) => x.clientPerCall ?? NaN)), 0)} + ${f(median(xs.map((x) => x.serverPerCall ?? NaN)), 0)}) | ${cpuShare} | ${xs.reduce((a, x) => a + x.errors, 0)} |`,
      );
    }
  }

  console.log('\nscanning cost (default vs empty policy, same proxy, same round; median (min–max)):');
  for (const { kind, inflight } of cells) {
    const tp = paired(kind, inflight, 'default', 'empty', (d, e) => (1 - d.rps / e.rps) * 100);
    const p50 = paired(kind, inflight, 'default', 'empty', (d, e) => (d.p50 / e.p50 - 1) * 100);
    const cpu = paired(
      kind,
      inflight,
      'default',
      'empty',
      (d, e) => (d.cpuPerCall ?? NaN) - (e.cpuPerCall ?? NaN),
    );
    if (!tp.length) continue;
    console.log(
      `  ${kind} ×${inflight}: throughput ${mm(tp, 1, ' %')} lower, p50 ${mm(p50, 1, ' %')} higher, sidecar CPU +${mm(cpu, 0, ' µs/call')}`,
    );
  }

  // SPEC §7, judged on the medians of rounds
  const verdict = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'met' : 'NOT met');
  const medOf = (xs: number[]) => (xs.length ? median(xs) : undefined);
  const finite = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? undefined : x);
  console.log('\nSPEC §7 budgets (medians of rounds):');
  for (const which of ['empty', 'default'] as const)
    for (const kind of ['unary', 'stream'] as const) {
      const added = medOf(paired(kind, 1, which, 'direct', (x, y) => x.p50 - y.p50));
      console.log(
        `  added p50 ≤ 0.5 ms, ${kind} ×1, ${which} policy: ${f(added)} ms — ${verdict(added === undefined ? undefined : added <= 0.5)}`,
      );
    }
  for (const which of ['empty', 'default'] as const)
    for (const kind of ['unary', 'stream'] as const) {
      const share = medOf(paired(kind, 64, which, 'direct', (x, y) => (x.rps / y.rps) * 100));
      const cpu = finite(
        medOf(
          paired(
            kind,
            64,
            which,
            'direct',
            (x, y) => ((y.chainPerCall ?? NaN) / (x.chainPerCall ?? NaN)) * 100,
          ),
        ),
      );
      console.log(
        `  ≥ 50 % of direct throughput at 64 in flight, ${kind}, ${which} policy: measured ${f(share, 0)} % — ${verdict(share === undefined ? undefined : share >= 50)}; CPU-bound ${f(cpu, 0)} % — ${verdict(cpu === undefined ? undefined : cpu >= 50)}`,
      );
    }
  for (const kind of ['unary', 'stream'] as const) {
    const tp = medOf(paired(kind, 64, 'default', 'empty', (d, e) => (1 - d.rps / e.rps) * 100));
    const cpu = finite(
      medOf(
        paired(
          kind,
          64,
          'default',
          'empty',
          (d, e) => (1 - (e.chainPerCall ?? NaN) / (d.chainPerCall ?? NaN)) * 100,
        ),
      ),
    );
    console.log(
      `  default policy ≤ 15 % vs empty, ${kind} ×64 throughput: measured ${f(tp, 1)} % — ${verdict(tp === undefined ? undefined : tp <= 15)}; CPU-bound ${f(cpu, 1)} % — ${verdict(cpu === undefined ? undefined : cpu <= 15)}`,
    );
  }

  console.log(
    '\nCPU µs/call is the CPU the measured process itself used per call over the recording window (direct: the\n' +
      'model server; others: the proxy alone). The load generator (grpc-js), the model server (grpc-js) and the\n' +
      'proxy share the cores, so at 64 in flight throughput is bound by the CPU the whole chain spends per call\n' +
      '("chain CPU"; the parts other than the proxy in brackets); "CPU-bound throughput vs direct" is direct chain\n' +
      'CPU / this chain CPU, the ratio a machine with no other load would show. Wall-clock calls/s on a shared\n' +
      'machine moves with whatever else runs (see the min–max spread); the CPU columns barely do.',
  );
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
