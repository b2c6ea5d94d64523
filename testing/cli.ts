// Runs the real `inferguard` CLI as a child process (through tsx, so tests never see a stale build).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'cli.ts');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

/** argv to start the CLI: [execPath, ...args] */
export function cliArgv(args: string[]): string[] {
  return [process.execPath, '--import', TSX, CLI, ...args];
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** run a one-shot CLI command to completion, optionally feeding stdin */
export function runCli(
  args: string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...rest] = cliArgv(args);
    const child = spawn(cmd, rest, {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: 'pipe',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
    child.stdin.end(opts.input ?? '');
  });
}

/** start a long-running CLI command (sidecar, injector); caller kills it */
export function spawnCli(args: string[], opts: SpawnOptions = {}): ChildProcess {
  const [cmd, ...rest] = cliArgv(args);
  return spawn(cmd, rest, {
    cwd: ROOT,
    stdio: 'pipe',
    ...opts,
    env: { ...process.env, ...(opts.env ?? {}) },
  });
}
