// Network namespaces for end-to-end tests (root only). `createLink()` makes two namespaces joined by
// a veth pair — a "pod" and a "client" — with addresses from 192.0.2.0/24 (TEST-NET-1) and nothing
// in the host's namespace, so concurrent runs and the host's routing never interfere. Names are
// unique per call; `cleanup()` deletes the namespaces (which removes the veth and kills nothing else)
// and is safe to call twice. Processes started with `spawn()` are killed by cleanup as well.
import { execFile, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

export interface Netns {
  readonly name: string;
  /** run a command inside the namespace to completion */
  run(
    cmd: string[],
    opts?: { input?: string; env?: NodeJS.ProcessEnv },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** start a long-running process inside the namespace (killed by cleanup) */
  spawn(cmd: string[], opts?: SpawnOptions): ChildProcess;
}

export interface Link {
  pod: Netns;
  client: Netns;
  podIp: string;
  clientIp: string;
  /**
   * A further namespace joined to the pod namespace by its own veth pair, with a random /30 from
   * 198.51.100.0/24 (TEST-NET-2), e.g. an "observability" namespace for an OTLP receiver the pod
   * exports to. `ip` is the new namespace's address, `podSideIp` the pod namespace's end. Deleted
   * (and its processes killed) by `cleanup()`.
   */
  attach(label: string): Promise<{ ns: Netns; ip: string; podSideIp: string }>;
  cleanup(): Promise<void>;
}

/** why namespaces cannot be used here, or undefined when they can */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network-namespace tests need root';
  if (!['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].some((p) => existsSync(p)))
    return 'iproute2 (ip) is not installed';
  return undefined;
}

function sh(
  cmd: string[],
  input?: string,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd[0],
      cmd.slice(1),
      { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : -1
          : 0;
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr) || (err && code === -1 ? err.message : ''),
        });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function must(cmd: string[]): Promise<void> {
  const r = await sh(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

function netns(name: string, children: ChildProcess[]): Netns {
  return {
    name,
    run: (cmd, opts = {}) => sh(['ip', 'netns', 'exec', name, ...cmd], opts.input, opts.env),
    spawn(cmd, opts = {}) {
      const child = spawnChild('ip', ['netns', 'exec', name, ...cmd], { stdio: 'pipe', ...opts });
      children.push(child);
      return child;
    },
  };
}

/**
 * Two namespaces joined by a veth pair. The /30 inside 192.0.2.0/24 is random so two runs on one
 * machine do not share addresses (they are isolated anyway: nothing lives in the host namespace).
 */
export async function createLink(): Promise<Link> {
  const id = randomBytes(3).toString('hex');
  const podName = `ig-pod-${id}`;
  const clientName = `ig-cli-${id}`;
  const vethPod = `igp${id}`;
  const vethClient = `igc${id}`;
  const base = 4 * (1 + (randomBytes(1)[0] % 62)); // 192.0.2.4 … 192.0.2.248
  const podIp = `192.0.2.${base + 1}`;
  const clientIp = `192.0.2.${base + 2}`;
  const children: ChildProcess[] = [];
  const extra: string[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(
      children.map((c) =>
        c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined,
      ),
    );
    // deleting a namespace deletes the veth end inside it, and with it the peer
    await sh(['ip', 'netns', 'del', podName]);
    await sh(['ip', 'netns', 'del', clientName]);
    for (const name of extra) await sh(['ip', 'netns', 'del', name]);
  };
  const attach = async (label: string) => {
    if (cleaned) throw new Error('attach after cleanup');
    const n = extra.length;
    const name = `ig-${label.slice(0, 6)}-${id}-${n}`;
    const vethPod = `igx${id}${n}`;
    const vethOther = `igy${id}${n}`;
    const sub = 4 * (1 + (randomBytes(1)[0] % 62)); // 198.51.100.4 … 198.51.100.248
    const podSideIp = `198.51.100.${sub + 1}`;
    const ip = `198.51.100.${sub + 2}`;
    extra.push(name); // before creating it, so cleanup deletes it whatever fails below
    await must(['ip', 'netns', 'add', name]);
    // prettier-ignore
    await must(['ip', 'link', 'add', vethPod, 'netns', podName, 'type', 'veth', 'peer', 'name', vethOther, 'netns', name]);
    for (const [ns, dev, addr] of [
      [podName, vethPod, podSideIp],
      [name, vethOther, ip],
    ]) {
      await must(['ip', '-n', ns, 'addr', 'add', `${addr}/30`, 'dev', dev]);
      await must(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    return { ns: netns(name, children), ip, podSideIp };
  };
  try {
    await must(['ip', 'netns', 'add', podName]);
    await must(['ip', 'netns', 'add', clientName]);
    await must([
      'ip',
      'link',
      'add',
      vethPod,
      'netns',
      podName,
      'type',
      'veth',
      'peer',
      'name',
      vethClient,
      'netns',
      clientName,
    ]);
    for (const [ns, dev, ip] of [
      [podName, vethPod, podIp],
      [clientName, vethClient, clientIp],
    ]) {
      await must(['ip', '-n', ns, 'addr', 'add', `${ip}/30`, 'dev', dev]);
      await must(['ip', '-n', ns, 'link', 'set', dev, 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  return {
    pod: netns(podName, children),
    client: netns(clientName, children),
    podIp,
    clientIp,
    attach,
    cleanup,
  };
}
