// Process plumbing shared by the data-plane benchmarks (bench/grpc.ts, bench/http.ts): child roles
// over IPC, free ports, percentiles, and nginx as the reference proxy.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

export interface SpawnRoleOptions {
  /** sampling interval of the CPU profile (µs; Node's default is 1000, too coarse for a short run) */
  cpuProfIntervalUs?: number;
  /**
   * run the child from this compiled tree (see compileForBench) with plain `node`, not through tsx: the
   * code as it ships, without the loader's per-closure `__name` wrappers
   */
  compiledRoot?: string;
}

/**
 * Compiles `entries` (repo-relative .ts files) and what they import with tsc — the transform
 * `npm run build` ships — without type checking (fast), into a fresh temporary folder laid out like the
 * repo, with the run-time assets build copies (rule packs, schemas, default policy, protos). Returns the
 * folder, or `{error}` when tsc fails (a bench then falls back to tsx and says so). `cleanup()` removes it.
 */
export function compileForBench(entries: string[]): { root?: string; error?: string; cleanup(): void } {
  const out = mkdtempSync(path.join(os.tmpdir(), 'inferguard-bench-dist-'));
  const cleanup = (): void => rmSync(out, { recursive: true, force: true });
  const config = path.join(out, 'tsconfig.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: path.join(ROOT, 'tsconfig.json'),
      compilerOptions: {
        outDir: out,
        rootDir: ROOT,
        // `types` resolve from the config's folder by default, which is this temporary one
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        sourceMap: false,
        noEmit: false,
        declaration: false,
      },
      files: entries.map((e) => path.join(ROOT, e)),
      include: [],
    }),
  );
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', config, '--noCheck'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) {
    cleanup();
    return { error: `tsc failed: ${(r.stdout + r.stderr).trim().split('\n')[0]}`, cleanup() {} };
  }
  for (const asset of ['policy/packs', 'policy/schema', 'policy/default-policy.yaml', 'proto']) {
    const from = path.join(ROOT, asset);
    if (existsSync(from))
      cpSync(from, path.join(out, asset), { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
  }
  // packages resolve from the repo's node_modules (ESM ignores NODE_PATH, so a link)
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'), 'dir');
  return { root: out, cleanup };
}

/**
 * Runs `script` again as a child in the role named by args[0]; the child reports `{port}` or `{error}`
 * over IPC once it listens. `profileDir` writes a CPU profile of sidecar children there.
 */
export function spawnRole(
  script: string,
  args: string[],
  profileDir?: string,
  opts: SpawnRoleOptions = {},
): Promise<{ proc: ChildProcess; port?: number; error?: string }> {
  const prof =
    profileDir && args[1] === 'sidecar'
      ? [
          '--cpu-prof',
          `--cpu-prof-dir=${profileDir}`,
          ...(opts.cpuProfIntervalUs ? [`--cpu-prof-interval=${opts.cpuProfIntervalUs}`] : []),
        ]
      : [];
  const argv = opts.compiledRoot
    ? [...prof, path.join(opts.compiledRoot, path.relative(ROOT, script).replace(/\.ts$/, '.js')), ...args]
    : [...prof, '--import', TSX, script, ...args];
  const proc = spawn(process.execPath, argv, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    proc.once('message', (m: { port?: number; error?: string }) => resolve({ proc, ...m }));
    proc.once('exit', (code) => reject(new Error(`bench child ${args.join(' ')} exited ${code}`)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** the p-th percentile of an ascending array */
export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** the median of an array (any order); NaN when empty */
export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** smallest and largest finite value, for "median (min–max)" columns */
export function spread(xs: number[]): { min: number; max: number } {
  const s = xs.filter((x) => Number.isFinite(x));
  return s.length ? { min: Math.min(...s), max: Math.max(...s) } : { min: NaN, max: NaN };
}

/** CPU time (user + system, µs) a process has used so far, from /proc; undefined where unreadable */
export function procCpuMicros(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    // utime and stime are fields 14 and 15 (1-based, in clock ticks of 10 ms); f starts at field 3
    return ((Number(f[11]) + Number(f[12])) / 100) * 1e6;
  } catch {
    return undefined;
  }
}

export interface Nginx {
  port?: number;
  pid?: number;
  stop(): void;
  error?: string;
}

/**
 * Starts Debian's nginx with the configuration `conf(dir, port)` returns (dir: a scratch folder for
 * its pid, logs and temp paths; port: where it must listen) and waits until it accepts connections.
 * Never throws: a missing or failing nginx comes back as `error`, so a bench can print "not measured".
 */
export async function startNginx(conf: (dir: string, port: number) => string): Promise<Nginx> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'inferguard-bench-nginx-'));
  const port = await freePort();
  writeFileSync(path.join(dir, 'nginx.conf'), conf(dir, port));
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
  return { port, pid: proc.pid, stop };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The processes of one contender: the proxy (none for direct calls) and the model server behind it. */
export interface CpuTarget {
  key: string;
  pid?: number;
  upstreamPid?: number;
}

/** CPU (µs) used so far by the proxy, and by the whole chain: this client, the model server and the proxy */
export interface CpuSnapshot {
  proxy?: number;
  chain?: { total: number; client: number; server: number };
}

export function cpuSnapshot(t: CpuTarget): CpuSnapshot {
  const own = t.pid !== undefined ? procCpuMicros(t.pid) : undefined;
  const u = process.cpuUsage();
  const up = t.upstreamPid !== undefined ? procCpuMicros(t.upstreamPid) : undefined;
  const proxy = t.key === 'direct' ? 0 : own;
  const client = u.user + u.system;
  return {
    proxy: own,
    chain:
      up === undefined || proxy === undefined
        ? undefined
        : { total: client + up + proxy, client, server: up },
  };
}

/** CPU per operation between two snapshots; a part is missing when a process could not be read */
export function cpuPerOp(
  a: CpuSnapshot,
  b: CpuSnapshot,
  done: number,
): { proxy?: number; chain?: number; client?: number; server?: number } {
  if (done <= 0) return {};
  return {
    ...(a.proxy !== undefined && b.proxy !== undefined ? { proxy: (b.proxy - a.proxy) / done } : {}),
    ...(a.chain && b.chain
      ? {
          chain: (b.chain.total - a.chain.total) / done,
          client: (b.chain.client - a.chain.client) / done,
          server: (b.chain.server - a.chain.server) / done,
        }
      : {}),
  };
}

/** Every (kind, in-flight) cell, or those named in the environment variable as "kind:n,kind:n" */
export function pickCells<K extends string>(
  kinds: readonly K[],
  envVar: string,
): { kind: K; inflight: number }[] {
  const all = kinds.flatMap((kind) => [1, 64].map((inflight) => ({ kind, inflight })));
  const only = process.env[envVar]?.split(',').map((x) => x.trim());
  return only ? all.filter((c) => only.includes(`${c.kind}:${c.inflight}`)) : all;
}

/** a number with `d` decimals, or "-" when there is none */
export function fixed(n: number | undefined, d = 3): string {
  return n !== undefined && Number.isFinite(n) ? n.toFixed(d) : '-';
}

/** "median (min–max)" of a per-round quantity; just the median for one round */
export function medianRange(xs: number[], d: number, unit = ''): string {
  const m = median(xs);
  if (!Number.isFinite(m)) return '-';
  const s = spread(xs);
  return xs.length > 1
    ? `${m.toFixed(d)}${unit} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`
    : `${m.toFixed(d)}${unit}`;
}

/** the key of one cell and contender in a round's samples */
export const cellKey = (kind: string, inflight: number, target: string): string =>
  `${kind}|${inflight}|${target}`;

/** Views over rounds of samples keyed by cellKey: one contender's samples, and pairs from the same round. */
export function roundViews<S>(rounds: Map<string, S>[]): {
  per(kind: string, inflight: number, target: string): S[];
  paired(kind: string, inflight: number, a: string, b: string, fn: (x: S, y: S) => number): number[];
} {
  return {
    per: (kind, inflight, target) =>
      rounds.map((g) => g.get(cellKey(kind, inflight, target))).filter((x): x is S => x !== undefined),
    paired: (kind, inflight, a, b, fn) =>
      rounds.flatMap((g) => {
        const x = g.get(cellKey(kind, inflight, a));
        const y = g.get(cellKey(kind, inflight, b));
        return x && y ? [fn(x, y)] : [];
      }),
  };
}
