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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

export const description =
  'OpenAI-compatible HTTP: direct vs nginx proxy_pass vs sidecar (empty / default policy)';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
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

function child(args: string[]): Promise<{ proc: ChildProcess; port?: number; error?: string }> {
  // BENCH_HTTP_PROFILE=DIR writes a CPU profile of each sidecar child there
  const prof =
    process.env.BENCH_HTTP_PROFILE && args[1] === 'sidecar'
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_HTTP_PROFILE}`]
      : [];
  const proc = spawn(process.execPath, [...prof, '--import', TSX, HERE, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    proc.once('message', (m: { port?: number; error?: string }) => resolve({ proc, ...m }));
    proc.once('exit', (code) => reject(new Error(`bench child ${args.join(' ')} exited ${code}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startNginx(upstreamPort: number): Promise<{ port?: number; stop(): void; error?: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'inferguard-bench-nginx-'));
  const port = await freePort();
  const conf = `worker_processes 1;
daemon off;
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
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  let proc: ChildProcess;
  try {
    proc = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
  } catch (err) {
    return { stop() {}, error: (err as Error).message };
  }
  const failed = await new Promise<string | undefined>((resolve) => {
    proc.once('error', (e) => resolve(`${e.message} (apt-get install nginx)`));
    proc.once('exit', (code) => resolve(`nginx exited ${code} (see ${dir}/error.log)`));
    const probe = (tries: number): void => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', () =>
        tries > 0 ? setTimeout(() => probe(tries - 1), 50) : resolve('nginx did not listen'),
      );
    };
    probe(60);
  });
  const stop = (): void => {
    proc.kill('SIGTERM');
    setTimeout(() => rmSync(dir, { recursive: true, force: true }), 200).unref();
  };
  if (failed) {
    stop();
    return { stop() {}, error: failed };
  }
  return { port, stop };
}

interface Result {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  /** streams: time to the first body byte and to the end */
  ttfb50?: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
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
  const targets: { name: string; port?: number; note?: string }[] = [{ name: 'direct', port: upstream.port }];
  const nginx = await startNginx(upstream.port!);
  targets.push({ name: 'nginx proxy_pass', port: nginx.port, note: nginx.error });
  for (const which of ['empty', 'default'] as const) {
    const s = await child(['--role', 'sidecar', String(upstream.port), which]);
    children.push(s.proc);
    targets.push({ name: `sidecar (${which} policy)`, port: s.port, note: s.error });
  }
  for (const t of targets) if (t.note) notes.push(`${t.name}: not measured (${t.note})`);

  const rows: { target: string; kind: string; inflight: number; r: Result }[] = [];
  try {
    for (const kind of ['chat', 'stream'] as const) {
      for (const inflight of [1, 64]) {
        for (const t of targets) {
          if (t.port === undefined) continue;
          rows.push({ target: t.name, kind, inflight, r: await measure(t.port, kind, inflight, prompt) });
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
    '\n| call | in flight | target | p50 ms | p99 ms | req/s | errors | added p50 ms | throughput vs direct | stream TTFB p50 ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const direct = rows.find(
      (x) => x.kind === row.kind && x.inflight === row.inflight && x.target === 'direct',
    )!.r;
    const added = row.target === 'direct' ? '' : f(row.r.p50 - direct.p50);
    const share = row.target === 'direct' ? '' : `${((row.r.rps / direct.rps) * 100).toFixed(0)} %`;
    console.log(
      `| ${row.kind} | ${row.inflight} | ${row.target} | ${f(row.r.p50)} | ${f(row.r.p99)} | ${row.r.rps.toFixed(0)} | ${row.r.errors} | ${added} | ${share} | ${f(row.r.ttfb50)} |`,
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
