// Process plumbing shared by the data-plane benchmarks (bench/grpc.ts, bench/http.ts): child roles
// over IPC, free ports, percentiles, and nginx as the reference proxy.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

/**
 * Runs `script` again as a child in the role named by args[0]; the child reports `{port}` or `{error}`
 * over IPC once it listens. `profileDir` writes a CPU profile of sidecar children there.
 */
export function spawnRole(
  script: string,
  args: string[],
  profileDir?: string,
): Promise<{ proc: ChildProcess; port?: number; error?: string }> {
  const prof = profileDir && args[1] === 'sidecar' ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const proc = spawn(process.execPath, [...prof, '--import', TSX, script, ...args], {
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
