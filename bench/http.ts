// HTTP data-plane benchmark: the same OpenAI-compatible calls direct to a zero-latency vLLM-like
// server (testing/fake-vllm.ts), through nginx `proxy_pass` (the reference floor: a plain HTTP/1.1
// proxy that inspects nothing), and through the sidecar's HTTP listener with an empty policy and with
// the built-in default policy. Non-streamed chat (4 KiB prompt) and streamed chat (SSE, 64 chunks),
// 1 and 64 requests in flight, one run.
//
//   npx tsx bench/http.ts            (or `npm run bench -- http`)
//
// The upstream and each sidecar run in their own child process (this process only drives load), so
// the numbers compare proxies, not event-loop sharing. Prints p50/p99 latency, requests/s, streaming
// time to first byte and to the end of the stream, and ratios against direct.
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { pct, spawnRole, startNginx as startNginxWith, type Nginx } from './harness.js';
import { Pool } from 'undici';

export const description =
  'OpenAI-compatible HTTP: direct vs nginx proxy_pass vs sidecar (empty / default policy)';

const HERE = fileURLToPath(import.meta.url);
const WARMUP_MS = 300;
const MEASURE_MS = Number(process.env.BENCH_HTTP_MS ?? 1500);
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
  answerCpu();
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
  answerCpu();
}

/** children report their CPU time on request, so the driver can charge each proxy its own cost */
function answerCpu(): void {
  process.on('message', (m: { cmd?: string }) => {
    if (m?.cmd !== 'cpu') return;
    const u = process.cpuUsage();
    process.send!({ cpu: u.user + u.system });
  });
}

// ---------------------------------------------------------------------------------------------
// Driver

function child(args: string[]): ReturnType<typeof spawnRole> {
  // BENCH_HTTP_PROFILE=DIR writes a CPU profile of each sidecar child there
  return spawnRole(HERE, args, process.env.BENCH_HTTP_PROFILE);
}

/** CPU time (µs) a process has used: ask a node child over IPC, read /proc for nginx */
async function cpuOf(t: { proc?: ChildProcess; pid?: number }): Promise<number | undefined> {
  if (t.proc) {
    const proc = t.proc;
    return new Promise((resolve) => {
      const on = (m: { cpu?: number }) => {
        if (m?.cpu === undefined) return;
        proc.off('message', on);
        resolve(m.cpu);
      };
      proc.on('message', on);
      proc.send({ cmd: 'cpu' });
    });
  }
  if (t.pid === undefined) return undefined;
  try {
    const { readFileSync } = await import('node:fs');
    const f = readFileSync(`/proc/${t.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    // utime and stime are fields 14 and 15 (1-based); f starts at field 3
    return ((Number(f[11]) + Number(f[12])) / 100) * 1e6;
  } catch {
    return undefined;
  }
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

interface Result {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  /** streams: time to the first body byte */
  ttfb50?: number;
  /** requests sent, warm-up included */
  total?: number;
  /** CPU time the proxy process (or, for direct, the upstream) spent per request, µs */
  cpuPerReq?: number;
}

async function measure(
  port: number,
  kind: 'chat' | 'stream',
  inflight: number,
  prompt: string,
): Promise<Result> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: inflight, pipelining: 1 });
  const body = JSON.stringify({
    model: 'fake-model',
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: prompt },
    ],
    max_tokens: 128,
    stream: kind === 'stream',
  });
  const lat: number[] = [];
  const ttfb: number[] = [];
  let errors = 0;
  let total = 0;
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
      total++;
      if (!recording) continue;
      if (ok) {
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (kind === 'stream') ttfb.push(first);
      } else errors++;
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
  await pool.close();
  lat.sort((a, b) => a - b);
  ttfb.sort((a, b) => a - b);
  return {
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    rps: lat.length / elapsed,
    errors,
    total,
    ...(kind === 'stream' ? { ttfb50: pct(ttfb, 50) } : {}),
  };
}

export async function run(): Promise<void> {
  const started = Date.now();
  const prompt = 'Summarize the following report for an executive audience, keeping the numbers exact. '
    .repeat(48)
    .slice(0, 4096);
  const children: ChildProcess[] = [];
  const notes: string[] = [];
  const upstream = await child(['--role', 'upstream']);
  children.push(upstream.proc);
  type Target = { name: string; port?: number; note?: string; proc?: ChildProcess; pid?: number };
  const targets: Target[] = [{ name: 'direct', port: upstream.port, proc: upstream.proc }];
  const nginx = await startNginx(upstream.port!);
  targets.push({ name: 'nginx proxy_pass', port: nginx.port, note: nginx.error, pid: nginx.pid });
  for (const which of ['empty', 'default'] as const) {
    const s = await child(['--role', 'sidecar', String(upstream.port), which]);
    children.push(s.proc);
    targets.push({ name: `sidecar (${which} policy)`, port: s.port, note: s.error, proc: s.proc });
  }
  for (const t of targets) if (t.note) notes.push(`${t.name}: not measured (${t.note})`);

  const rows: { target: string; kind: string; inflight: number; r: Result }[] = [];
  try {
    for (const kind of ['chat', 'stream'] as const) {
      for (const inflight of [1, 64]) {
        for (const t of targets) {
          if (t.port === undefined) continue;
          const before = await cpuOf(t);
          const r = await measure(t.port, kind, inflight, prompt);
          const after = await cpuOf(t);
          // warm-up requests are charged too, so this slightly overstates; the same for every target
          if (before !== undefined && after !== undefined && r.total)
            r.cpuPerReq = (after - before) / r.total;
          rows.push({ target: t.name, kind, inflight, r });
        }
      }
    }
  } finally {
    nginx.stop();
    for (const c of children) c.kill('SIGTERM');
  }

  console.log(
    `\n## HTTP (POST /v1/chat/completions, 4 KiB prompt; streamed: ${STREAM_CHUNKS} SSE chunks, ~${STREAM_CHUNKS * 32} chars)`,
  );
  console.log(
    `load avg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; ${MEASURE_MS} ms per cell after ${WARMUP_MS} ms warm-up, one run`,
  );
  const f = (n: number | undefined, d = 3): string =>
    n !== undefined && Number.isFinite(n) ? n.toFixed(d) : '-';
  console.log(
    '\n| call | in flight | target | p50 ms | p99 ms | req/s | errors | added p50 ms | throughput vs direct | stream TTFB p50 ms | CPU µs/req |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const direct = rows.find(
      (x) => x.kind === row.kind && x.inflight === row.inflight && x.target === 'direct',
    )!.r;
    const added = row.target === 'direct' ? '' : f(row.r.p50 - direct.p50);
    const share = row.target === 'direct' ? '' : `${((row.r.rps / direct.rps) * 100).toFixed(0)} %`;
    console.log(
      `| ${row.kind} | ${row.inflight} | ${row.target} | ${f(row.r.p50)} | ${f(row.r.p99)} | ${row.r.rps.toFixed(0)} | ${row.r.errors} | ${added} | ${share} | ${f(row.r.ttfb50)} | ${f(row.r.cpuPerReq, 0)} |`,
    );
  }
  console.log('\nscanning cost (default vs empty policy, same proxy):');
  for (const kind of ['chat', 'stream']) {
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
  console.log(
    '\nCPU µs/req is the CPU the measured process itself used per request (direct: the model server; others: the\n' +
      'proxy alone), the number that stays meaningful when the machine is shared.',
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
