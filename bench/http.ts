// HTTP data-plane benchmark: the same OpenAI-compatible calls direct to a zero-latency vLLM-like
// server (testing/fake-vllm.ts), through nginx `proxy_pass` (the reference floor: a plain HTTP/1.1
// proxy that inspects nothing), and through the sidecar's HTTP listener with an empty policy and with
// the built-in default policy. Non-streamed chat (4 KiB prompt) and streamed chat (SSE, 64 chunks),
// 1 and 64 requests in flight.
//
//   npx tsx bench/http.ts            (or `npm run bench -- http`)
//
// How it stays trustworthy on a shared 2-core machine:
//   - the upstream, nginx and each sidecar run in their own process; this process is the only client,
//     the same undici Pool for every contender, and does nothing else while it measures;
//   - every contender is warmed up first (JIT), and every cell gets a short settle period (new
//     connections) before recording starts;
//   - the whole grid is measured in ROUNDS rounds, the contenders of a cell back to back in a rotating
//     order, so a burst of load from elsewhere hits one round, not one contender. Ratios (vs direct,
//     default vs empty policy) are taken within a round and the median of rounds is printed with its
//     min–max spread;
//   - each process's own CPU time per request (from /proc, over the recording window only) is printed
//     beside the wall-clock numbers: it is what stays meaningful when other work shares the cores.
//
//   - the children run tsc's output (as `npm run build` ships it), not the tsx loader's transform, whose
//     per-closure `__name` wrappers cost the sidecar several percent that production does not pay.
//
// Knobs (environment): BENCH_HTTP_ROUNDS (9), BENCH_HTTP_MS (recording per cell and round, 500),
// BENCH_HTTP_CELLS (e.g. `chat:64,stream:1`), BENCH_HTTP_TARGETS (any of direct,nginx,empty,default),
// BENCH_HTTP_PROFILE=DIR (CPU profile of each sidecar child, sampled every 100 µs).
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
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

export const description =
  'OpenAI-compatible HTTP: direct vs nginx proxy_pass vs sidecar (empty / default policy)';

const HERE = fileURLToPath(import.meta.url);
const ROUNDS = Math.max(1, Number(process.env.BENCH_HTTP_ROUNDS ?? 9));
const MEASURE_MS = Number(process.env.BENCH_HTTP_MS ?? 500);
/** per cell and round, before recording: connections opened, steady state reached */
const SETTLE_MS = 200;
/** once per contender before the first round: the JIT has compiled the hot paths */
const WARMUP_MS = 1000;
const STREAM_CHUNKS = 64;

// ---------------------------------------------------------------------------------------------
// Child roles

async function roleUpstream(): Promise<void> {
  const { startFakeVllm } = await import('../testing/fake-vllm.js');
  const piece = 'Paris is the capital of France. ';
  const fake = await startFakeVllm({
    record: false,
    defaultScript: { chunks: Array.from({ length: STREAM_CHUNKS }, () => piece) },
  });
  process.send!({ port: fake.port });
}

async function roleSidecar(upstreamPort: number, which: 'empty' | 'default'): Promise<void> {
  const { startHttpListener } = await import('../sidecar/http/index.js');
  const { defaultPolicy, emptyPolicy } = await import('../policy/index.js');
  const { pino } = await import('pino');
  let policy;
  try {
    policy = which === 'default' ? defaultPolicy() : emptyPolicy();
  } catch (err) {
    process.send!({ error: String((err as Error).message).split('\n')[0] });
    return;
  }
  // telemetry that does nothing: this measures the data plane
  const noop = {
    traceId: '0'.repeat(32),
    inject() {},
    setModel() {},
    decision() {},
    scanned() {},
    upstream() {},
    end() {},
  };
  const listener = await startHttpListener(
    {
      policy: () => policy,
      fail: 'closed',
      telemetry: { startRequest: () => noop, policyReloaded() {}, shutdown: async () => {} },
      log: pino({ level: 'silent' }),
      pod: {},
    },
    { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort } },
  );
  process.send!({ port: listener.address.port });
}

// ---------------------------------------------------------------------------------------------
// Driver

/** the children run the code as `npm run build` ships it (compileForBench), tsx only when that fails */
let compiledRoot: string | undefined;

function child(args: string[]): ReturnType<typeof spawnRole> {
  return spawnRole(HERE, args, process.env.BENCH_HTTP_PROFILE, {
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
  upstream model { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    client_max_body_size 64m;
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`;
  });
}

type Kind = 'chat' | 'stream';
interface Target {
  key: 'direct' | 'nginx' | 'empty' | 'default';
  name: string;
  port?: number;
  note?: string;
  /** the process whose CPU is charged (direct: the model server; others: the proxy alone) */
  pid?: number;
  /** the model server, whose CPU is part of every contender's chain */
  upstreamPid?: number;
}
interface Sample {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  /** streams: time to the first body byte */
  ttfb50?: number;
  /** CPU time the measured process spent per request over the recording window, µs */
  cpuPerReq?: number;
  /** CPU per request of the whole chain: this client + the proxy (if any) + the model server, µs */
  chainPerReq?: number;
  /** its parts: this load generator, and the model server (which pays for how a proxy connects to it) */
  clientPerReq?: number;
  serverPerReq?: number;
}

function requestBody(kind: Kind, prompt: string): string {
  return JSON.stringify({
    model: 'fake-model',
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: prompt },
    ],
    max_tokens: 128,
    stream: kind === 'stream',
  });
}

/** drives `inflight` closed-loop clients for settle + recording; the process's CPU over the recording only */
async function measure(
  t: Target,
  kind: Kind,
  inflight: number,
  body: string,
  settleMs: number,
  recordMs: number,
): Promise<Sample> {
  const pool = new Pool(`http://127.0.0.1:${t.port}`, { connections: inflight, pipelining: 1 });
  const lat: number[] = [];
  const ttfb: number[] = [];
  let errors = 0;
  let recording = false;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      let first = 0;
      let ok = false;
      try {
        const r = await pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        for await (const chunk of r.body) {
          if (!first && chunk.length) first = Number(process.hrtime.bigint() - t0) / 1e6;
        }
        ok = r.statusCode === 200;
      } catch {
        ok = false;
      }
      if (!recording) continue;
      if (ok) {
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (kind === 'stream') ttfb.push(first);
      } else errors++;
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
  await pool.close();
  lat.sort((a, b) => a - b);
  ttfb.sort((a, b) => a - b);
  const per = cpuPerOp(cpu0, cpu1, done);
  return {
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    rps: done / elapsed,
    errors,
    ...(kind === 'stream' ? { ttfb50: pct(ttfb, 50) } : {}),
    ...(per.proxy !== undefined ? { cpuPerReq: per.proxy } : {}),
    ...(per.chain !== undefined
      ? { chainPerReq: per.chain, clientPerReq: per.client!, serverPerReq: per.server! }
      : {}),
  };
}

function pickedCells(): { kind: Kind; inflight: number }[] {
  return pickCells<Kind>(['chat', 'stream'], 'BENCH_HTTP_CELLS');
}

export async function run(): Promise<void> {
  const started = Date.now();
  const prompt = 'Summarize the following report for an executive audience, keeping the numbers exact. '
    .repeat(48)
    .slice(0, 4096);
  const bodies: Record<Kind, string> = {
    chat: requestBody('chat', prompt),
    stream: requestBody('stream', prompt),
  };
  const only = process.env.BENCH_HTTP_TARGETS?.split(',').map((s) => s.trim());
  const want = (k: Target['key']) => !only || only.includes(k);
  const cells = pickedCells();
  const children: ChildProcess[] = [];
  const notes: string[] = [];
  const targets: Target[] = [];
  let nginx: Nginx | undefined;
  const rounds: Map<string, Sample>[] = [];
  const compiled = compileForBench(['bench/http.ts']);
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
        name: 'nginx proxy_pass',
        port: nginx.port,
        note: nginx.error,
        pid: nginx.pid,
      });
    }
    for (const which of ['empty', 'default'] as const) {
      if (!want(which)) continue;
      const s = await child(['--role', 'sidecar', String(upstream.port), which]);
      children.push(s.proc);
      targets.push({
        key: which,
        name: `sidecar (${which} policy)`,
        port: s.port,
        note: s.error,
        pid: s.proc.pid,
      });
    }
    for (const t of targets) t.upstreamPid = upstream.proc.pid;
    for (const t of targets) if (t.note) notes.push(`${t.name}: not measured (${t.note})`);
    const live = targets.filter((t) => t.port !== undefined);

    // JIT warm-up of every contender on both call kinds (not recorded)
    for (const t of live)
      for (const kind of ['chat', 'stream'] as const)
        await measure(t, kind, 64, bodies[kind], WARMUP_MS / 2, 1);

    for (let r = 0; r < ROUNDS; r++) {
      const got = new Map<string, Sample>();
      for (const { kind, inflight } of cells) {
        // rotate who goes first, so no contender always runs right after the same neighbour
        const order = live.map((_, i) => live[(i + r) % live.length]);
        for (const t of order)
          got.set(
            cellKey(kind, inflight, t.key),
            await measure(t, kind, inflight, bodies[kind], SETTLE_MS, MEASURE_MS),
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

  /**
   * The CPU model of a cell: with every core busy, throughput ∝ 1 / (CPU the chain spends per request).
   * The load generator and the model server are the same processes for every contender, so their cost
   * per request is pooled over the whole cell (all contenders, all rounds; its median), which keeps the
   * model server's jumps under outside load out of the ratio; only the proxy's own CPU differs.
   */
  const base = (kind: Kind, inflight: number): number => {
    const all = targets.flatMap((t) => per(kind, inflight, t.key));
    return median(all.map((x) => x.clientPerReq ?? NaN)) + median(all.map((x) => x.serverPerReq ?? NaN));
  };
  const proxyCpu = (t: Target['key'], x: Sample): number => (t === 'direct' ? 0 : (x.cpuPerReq ?? NaN));
  /** per round: direct's modelled throughput share vs this contender's (%) */
  const modelShare = (kind: Kind, inflight: number, key: Target['key']): number[] => {
    const b = base(kind, inflight);
    return per(kind, inflight, key).map((x) => (b / (b + proxyCpu(key, x))) * 100);
  };
  /** per round: how much less the default policy's chain would carry than the empty one's (%) */
  const modelCost = (kind: Kind, inflight: number): number[] => {
    const b = base(kind, inflight);
    return paired(
      kind,
      inflight,
      'default',
      'empty',
      (d, e) => (1 - (b + proxyCpu('empty', e)) / (b + proxyCpu('default', d))) * 100,
    );
  };

  console.log(
    `\n## HTTP (POST /v1/chat/completions, 4 KiB prompt; streamed: ${STREAM_CHUNKS} SSE chunks, ~${STREAM_CHUNKS * 32} chars)`,
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
    '\n| call | in flight | target | p50 ms | p99 ms | req/s | throughput vs direct | added p50 ms | stream TTFB p50 ms | CPU µs/req | chain CPU µs/req (client + model server) | CPU-model throughput vs direct | errors |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const { kind, inflight } of cells) {
    for (const t of targets) {
      const s = per(kind, inflight, t.key);
      if (!s.length) continue;
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
      const cpuShare = isDirect ? '' : mm(modelShare(kind, inflight, t.key), 0, ' %');
      console.log(
        `| ${kind} | ${inflight} | ${t.name} | ${f(median(s.map((x) => x.p50)))} | ${f(median(s.map((x) => x.p99)))} | ${mm(
          s.map((x) => x.rps),
          0,
        )} | ${share} | ${added} | ${kind === 'stream' ? f(median(s.map((x) => x.ttfb50 ?? NaN))) : '-'} | ${mm(
          s.map((x) => x.cpuPerReq ?? NaN),
          0,
        )} | ${f(median(s.map((x) => x.chainPerReq ?? NaN)), 0)} (${f(median(s.map((x) => x.clientPerReq ?? NaN)), 0)} + ${f(median(s.map((x) => x.serverPerReq ?? NaN)), 0)}) | ${cpuShare} | ${s.reduce((a, x) => a + x.errors, 0)} |`,
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
      (d, e) => (d.cpuPerReq ?? NaN) - (e.cpuPerReq ?? NaN),
    );
    if (!tp.length) continue;
    console.log(
      `  ${kind} ×${inflight}: throughput ${mm(tp, 1, ' %')} lower, p50 ${mm(p50, 1, ' %')} higher, sidecar CPU +${mm(cpu, 0, ' µs/req')}, CPU model ${mm(modelCost(kind, inflight), 1, ' %')} lower`,
    );
  }

  // SPEC §7, judged on the medians of rounds
  const verdict = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'met' : 'NOT met');
  const medOf = (xs: number[]) => (xs.length ? median(xs) : undefined);
  console.log('\nSPEC §7 budgets (medians of rounds):');
  for (const which of ['empty', 'default'] as const) {
    const added = medOf(paired('chat', 1, which, 'direct', (x, y) => x.p50 - y.p50));
    console.log(
      `  added p50 ≤ 0.5 ms, chat ×1, ${which} policy: ${f(added)} ms — ${verdict(added === undefined ? undefined : added <= 0.5)}`,
    );
  }
  for (const which of ['empty', 'default'] as const)
    for (const kind of ['chat', 'stream'] as const) {
      const share = medOf(paired(kind, 64, which, 'direct', (x, y) => (x.rps / y.rps) * 100));
      const cpu = medOf(modelShare(kind, 64, which));
      console.log(
        `  ≥ 50 % of direct throughput at 64 in flight, ${kind}, ${which} policy: measured ${f(share, 0)} % — ${verdict(share === undefined ? undefined : share >= 50)}; CPU model ${f(cpu, 0)} % — ${verdict(cpu === undefined || !Number.isFinite(cpu) ? undefined : cpu >= 50)}`,
      );
    }
  for (const kind of ['chat', 'stream'] as const) {
    const tp = medOf(paired(kind, 64, 'default', 'empty', (d, e) => (1 - d.rps / e.rps) * 100));
    const cpu = medOf(modelCost(kind, 64));
    console.log(
      `  default policy ≤ 15 % vs empty, ${kind} ×64 throughput: measured ${f(tp, 1)} % — ${verdict(tp === undefined ? undefined : tp <= 15)}; CPU model ${f(cpu, 1)} % — ${verdict(cpu === undefined || !Number.isFinite(cpu) ? undefined : cpu <= 15)}`,
    );
  }
  const p50cost = medOf(paired('chat', 1, 'default', 'empty', (d, e) => (d.p50 / e.p50 - 1) * 100));
  console.log(
    `  default policy ≤ 15 % vs empty, chat ×1 p50: ${f(p50cost, 1)} % — ${verdict(p50cost === undefined ? undefined : p50cost <= 15)}`,
  );
  const ttfb = medOf(
    paired('stream', 1, 'default', 'direct', (x, y) => (x.ttfb50 ?? NaN) - (y.ttfb50 ?? NaN)),
  );
  console.log(
    `  stream TTFB added ≤ 1 ms, ×1, default policy: ${f(ttfb)} ms — ${verdict(ttfb === undefined || !Number.isFinite(ttfb) ? undefined : ttfb <= 1)}`,
  );

  console.log(
    '\nCPU µs/req is the CPU the measured process itself used per request over the recording window (direct: the\n' +
      'model server; others: the proxy alone). The load generator, the model server and the proxy share the cores,\n' +
      'so at 64 in flight throughput is bound by the CPU the whole chain spends per request ("chain CPU": client +\n' +
      'proxy + model server, the parts other than the proxy in brackets). "CPU model" is that bound with the\n' +
      "client's and the model server's cost pooled over the cell (the same processes serve every contender):\n" +
      '(client + server) / (client + server + proxy), the ratio a machine with no other load would show. Wall-clock\n' +
      'req/s on a shared machine moves with whatever else runs (see the min–max spread); the CPU model much less,\n' +
      'though CPU time per request also grows when other work thrashes the caches.',
  );
  console.log(
    '\nstream TTFB is the first body byte (the sidecar sends headers and the role chunk at once); the default\n' +
      "policy's hold-back (limits.maxHoldback) delays text, not the first byte.",
  );
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
if (process.argv[1] === HERE) {
  if (argv[0] === '--role') process.on('SIGTERM', () => process.exit(0));
  if (argv[0] === '--role' && argv[1] === 'upstream') await roleUpstream();
  else if (argv[0] === '--role' && argv[1] === 'sidecar')
    await roleSidecar(Number(argv[2]), argv[3] as 'empty' | 'default');
  else {
    await run();
    process.exit(0);
  }
}
