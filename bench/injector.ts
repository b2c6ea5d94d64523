// SPEC §7: "Injector: p99 ≤ 5 ms per AdmissionReview at 200 req/s".
//
// A real `inferguard injector` process (the CLI, TLS from a --cert-dir holding a certificate generated
// here) and an HTTPS keep-alive client that sends AdmissionReviews for a vLLM-style pod on a fixed
// schedule of 200 req/s (open loop: a slow answer does not delay the next send) for ~10 s, after a
// warm-up. Client-side latency is measured from each request's *scheduled* send time to the last
// response byte, so a server that falls behind shows up as queueing instead of being hidden
// (coordinated omission). The server's own `inferguard_injector_admission_duration_seconds` histogram
// is read from /metrics before and after, and the difference over the measured window is reported too.
//
// Run alone: `npx tsx bench/injector.ts` (BENCH_INJECTOR_SECONDS=N and BENCH_INJECTOR_RATE=R override).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { pct } from './harness.js';

export const description = 'AdmissionReview latency of a real `inferguard injector` at a fixed 200 req/s';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUDGET_MS = 5;

interface Server {
  child: ChildProcess;
  port: number;
  ca: string;
  dir: string;
}

async function startInjector(): Promise<Server> {
  const { generateCertificates } = await import('../injector/certs.js');
  const { spawnCli } = await import('../testing/cli.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'inferguard-bench-injector-'));
  const pair = await generateCertificates({ dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  writeFileSync(path.join(dir, 'tls.crt'), pair.cert);
  writeFileSync(path.join(dir, 'tls.key'), pair.key);
  const child = spawnCli(['injector', '--listen', '127.0.0.1:0', '--cert-dir', dir, '--log-level', 'info'], {
    env: { INFERGUARD_OTEL_ENDPOINT: 'http://otel-collector.observability:4317' },
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`injector did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString('utf8');
      const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`injector exited with ${code}:\n${out}`));
    });
  });
  return { child, port, ca: pair.ca, dir };
}

function request(
  agent: https.Agent,
  port: number,
  method: string,
  p: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: p,
        agent,
        servername: 'localhost',
        headers: body
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** cumulative bucket counts of the mutate webhook's duration histogram, by upper bound (seconds) */
function buckets(metrics: string): Map<number, number> {
  const out = new Map<number, number>();
  const re =
    /^inferguard_injector_admission_duration_seconds_bucket\{(?=[^}]*webhook="mutate")[^}]*le="([^"]+)"[^}]*\} (\d+)/gm;
  for (const m of metrics.matchAll(re)) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/** the smallest bucket bound holding the q-quantile of the window's observations (an upper bound) */
function bucketQuantile(diff: [number, number][], q: number): number {
  const total = diff.at(-1)?.[1] ?? 0;
  for (const [le, n] of diff) if (n >= q * total) return le;
  return Infinity;
}

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '∞');

export async function run(): Promise<void> {
  const seconds = Number(process.env.BENCH_INJECTOR_SECONDS ?? 10);
  const rate = Number(process.env.BENCH_INJECTOR_RATE ?? 200);
  const { podReview } = await import('../injector/testutil.js');
  // the golden vLLM pod: a readinessProbe, a declared port, redirect capture: the full injection path
  const pod = parse(
    readFileSync(path.join(HERE, '..', 'injector', 'testdata', 'pod-basic.input.yaml'), 'utf8'),
  );

  const server = await startInjector();
  // the API server keeps a few connections per webhook; 4 sockets is plenty at 200 req/s
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: server.ca });
  try {
    const first = await request(agent, server.port, 'POST', '/mutate', podReview(pod));
    const review = JSON.parse(first.body) as { response?: { allowed?: boolean; patch?: string } };
    if (first.status !== 200 || !review.response?.allowed || !review.response.patch) {
      throw new Error(
        `the injector did not inject the bench pod: ${first.status} ${first.body.slice(0, 300)}`,
      );
    }
    // warm-up: JIT, TLS sessions, sockets
    for (let i = 0; i < 300; i++) await request(agent, server.port, 'POST', '/mutate', podReview(pod));

    const before = buckets((await request(agent, server.port, 'GET', '/metrics')).body);
    const total = Math.round(seconds * rate);
    const latencies: number[] = [];
    let errors = 0;
    let lateSends = 0;
    const t0 = performance.now() + 20;
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (wait < -1) lateSends++;
      const body = podReview(pod);
      inflight.push(
        request(agent, server.port, 'POST', '/mutate', body).then(
          (r) => {
            if (r.status !== 200) errors++;
            latencies.push(performance.now() - due);
          },
          () => {
            errors++;
          },
        ),
      );
    }
    await Promise.all(inflight);
    const elapsed = (performance.now() - t0) / 1000;
    const after = buckets((await request(agent, server.port, 'GET', '/metrics')).body);
    const diff: [number, number][] = [...after.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([le, n]) => [le, n - (before.get(le) ?? 0)]);
    const observed = diff.at(-1)?.[1] ?? 0;
    const within = diff.find(([le]) => le === BUDGET_MS / 1000)?.[1] ?? NaN;

    latencies.sort((a, b) => a - b);
    const p99 = pct(latencies, 99);
    console.log(
      `${total} AdmissionReviews (vLLM pod, injected) at ${rate} req/s over ${elapsed.toFixed(1)} s, HTTPS keep-alive (4 sockets); ${errors} errors, ${lateSends} sends > 1 ms late\n`,
    );
    console.log('| measured | p50 ms | p90 ms | p99 ms | max ms | budget (p99 ≤ 5 ms) |');
    console.log('|---|---|---|---|---|---|');
    console.log(
      `| client: scheduled send → last byte | ${ms(pct(latencies, 50))} | ${ms(pct(latencies, 90))} | ${ms(p99)} | ${ms(latencies.at(-1) ?? NaN)} | ${p99 <= BUDGET_MS ? 'met' : 'MISSED'} |`,
    );
    const sp50 = bucketQuantile(diff, 0.5) * 1000;
    const sp99 = bucketQuantile(diff, 0.99) * 1000;
    console.log(
      `| server histogram (bucket upper bounds) | ≤ ${ms(sp50)} | — | ≤ ${ms(sp99)} | — | ${sp99 <= BUDGET_MS ? 'met' : 'MISSED'} |`,
    );
    console.log(
      `\nserver: ${observed} observations in the window, ${((within / observed) * 100).toFixed(2)} % within 5 ms; buckets (ms ≤ : count) ${diff
        .filter(([, n], i) => i === 0 || n !== diff[i - 1][1])
        .map(([le, n]) => `${Number.isFinite(le) ? le * 1000 : '+Inf'}:${n}`)
        .join(' ')}`,
    );
  } finally {
    agent.destroy();
    server.child.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        server.child.kill('SIGKILL');
        resolve();
      }, 5000);
      server.child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
    rmSync(server.dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  run().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
