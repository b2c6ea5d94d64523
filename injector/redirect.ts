// What `inferguard init-redirect` installs in the pod's network namespace: inbound TCP to each model
// port is REDIRECTed to its sidecar listener, for IPv4 (iptables) and IPv6 (ip6tables).
//
//   nat PREROUTING  -p tcp -j INFERGUARD_INBOUND          (inserted once, first)
//   nat INFERGUARD_INBOUND -p tcp --dport 8000 -j REDIRECT --to-ports 15001
//
// Why this does not loop: nat PREROUTING sees packets arriving from outside the pod. The sidecar's
// own connection to 127.0.0.1:8000 is locally generated: it goes through nat OUTPUT, where we add
// nothing, so it reaches the model untouched. (Processes inside the pod that dial the pod IP also go
// through OUTPUT: in-pod clients are inside the trust boundary, as with Istio's inbound capture.)
//
// Idempotent: the chain is (re)declared with iptables-restore --noflush, which creates it or
// flushes it and fills it in one atomic commit per family; the PREROUTING jump is checked (-C)
// before it is inserted. Running twice leaves exactly the same rules.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const CHAIN = 'INFERGUARD_INBOUND';

export interface Redirect {
  modelPort: number;
  listenPort: number;
}

export class RedirectError extends Error {}

/** `8000=15001` → { modelPort: 8000, listenPort: 15001 }; checks ranges and duplicates */
export function parseRedirects(values: string[]): Redirect[] {
  if (values.length === 0) throw new RedirectError('at least one --port MODEL=LISTEN is required');
  const out: Redirect[] = [];
  for (const v of values) {
    const m = /^(\d{1,5})=(\d{1,5})$/.exec(v.trim());
    const [modelPort, listenPort] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
    if (!m || modelPort < 1 || modelPort > 65535 || listenPort < 1 || listenPort > 65535) {
      throw new RedirectError(`--port "${v}": expected MODEL=LISTEN with ports 1-65535, e.g. 8000=15001`);
    }
    if (modelPort === listenPort)
      throw new RedirectError(`--port "${v}": model and listener port must differ`);
    if (out.some((r) => r.modelPort === modelPort))
      throw new RedirectError(`--port "${v}": model port ${modelPort} given twice`);
    if (out.some((r) => r.modelPort === listenPort || r.listenPort === modelPort)) {
      throw new RedirectError(`--port "${v}": a port is both a model port and a listener`);
    }
    out.push({ modelPort, listenPort });
  }
  return out;
}

/** the iptables-restore input that (re)creates our chain atomically */
export function restoreScript(redirects: Redirect[]): string {
  const lines = ['*nat', `:${CHAIN} - [0:0]`];
  for (const r of redirects) {
    lines.push(`-A ${CHAIN} -p tcp -m tcp --dport ${r.modelPort} -j REDIRECT --to-ports ${r.listenPort}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export const JUMP = ['-t', 'nat', '-p', 'tcp', '-j', CHAIN];

/** does /proc/net/if_inet6 list an address on an interface other than lo? */
export function ipv6Active(ifInet6: string | undefined): boolean {
  if (!ifInet6) return false;
  return ifInet6
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .some((f) => f.length >= 6 && f[5] !== 'lo');
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  /** set when the binary could not be started (ENOENT, EACCES) */
  spawnError?: string;
}

export type Runner = (bin: string, args: string[], input?: string) => Promise<CommandResult>;

export const runCommand: Runner = (bin, args, input) =>
  new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr, spawnError: err.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on('error', () => {}); // EPIPE when the binary is missing or exits early
    child.stdin.end(input ?? '');
  });

export interface ApplyOptions {
  iptables?: string;
  ip6tables?: string;
  run?: Runner;
  /** contents of /proc/net/if_inet6 (tests); read from /proc when undefined */
  ifInet6?: string;
  log?: (line: string) => void;
}

export interface ApplyReport {
  ipv4: 'applied';
  ipv6: 'applied' | 'skipped';
  /** the rules as `iptables -t nat -S` prints them, per family */
  rules: { ipv4: string; ipv6?: string };
}

async function applyFamily(bin: string, redirects: Redirect[], run: Runner): Promise<string> {
  const restoreBin = `${bin}-restore`;
  const restored = await run(restoreBin, ['--noflush', '--wait=10'], restoreScript(redirects));
  if (restored.spawnError || restored.code !== 0) {
    throw new RedirectError(
      `${restoreBin} failed: ${restored.spawnError ?? (restored.stderr.trim() || `exit ${restored.code}`)}`,
    );
  }
  const check = await run(bin, ['-w', '10', '-C', 'PREROUTING', ...JUMP]);
  if (check.spawnError) throw new RedirectError(`${bin}: ${check.spawnError}`);
  if (check.code !== 0) {
    const insert = await run(bin, ['-w', '10', '-I', 'PREROUTING', '1', ...JUMP]);
    if (insert.code !== 0)
      throw new RedirectError(
        `${bin} -I PREROUTING failed: ${insert.stderr.trim() || `exit ${insert.code}`}`,
      );
  }
  const listed = await run(bin, ['-w', '10', '-t', 'nat', '-S', CHAIN]);
  return listed.stdout;
}

/**
 * Installs the rules. IPv4 failing is always fatal. IPv6 failing is fatal only when the pod has an
 * IPv6 address outside lo (then IPv6 clients could reach the model directly); with IPv6 disabled it
 * is reported and skipped, because there is no IPv6 path to protect.
 */
export async function applyRedirects(redirects: Redirect[], opts: ApplyOptions = {}): Promise<ApplyReport> {
  const run = opts.run ?? runCommand;
  const log = opts.log ?? (() => {});
  const v4 = await applyFamily(opts.iptables ?? 'iptables', redirects, run);
  log(`ipv4: ${redirects.map((r) => `${r.modelPort} -> ${r.listenPort}`).join(', ')}`);
  try {
    const v6 = await applyFamily(opts.ip6tables ?? 'ip6tables', redirects, run);
    log(`ipv6: ${redirects.map((r) => `${r.modelPort} -> ${r.listenPort}`).join(', ')}`);
    return { ipv4: 'applied', ipv6: 'applied', rules: { ipv4: v4, ipv6: v6 } };
  } catch (err) {
    let inet6 = opts.ifInet6;
    if (inet6 === undefined) {
      try {
        inet6 = readFileSync('/proc/net/if_inet6', 'utf8');
      } catch {
        inet6 = ''; // no IPv6 in this kernel at all
      }
    }
    if (ipv6Active(inet6)) {
      throw new RedirectError(
        `${(err as Error).message}; IPv6 is enabled in this pod, so IPv6 clients would reach the model ports unguarded. ` +
          'Use an image with ip6tables (and the ip6table_nat module on the node), or disable IPv6 for the pod.',
      );
    }
    log(`ipv6: skipped, IPv6 is not enabled in this pod (${(err as Error).message})`);
    return { ipv4: 'applied', ipv6: 'skipped', rules: { ipv4: v4 } };
  }
}
