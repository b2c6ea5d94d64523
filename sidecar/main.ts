// `inferguard sidecar`: wires config, telemetry, policy (with hot reload), the protocol listeners and
// the admin endpoints together, and drains on SIGTERM/SIGINT. docs/sidecar.md describes the behaviour.
//
// Start-up order matters:
//   1. telemetry first, so the SDK exports everything the servers do;
//   2. the admin listener, so probes get a JSON answer ("starting") instead of connection refused;
//   3. the policy: a policy that does not load is fatal at start-up (exit 2, problems on stderr), since
//      serving unguarded or with a guessed policy would be worse than not starting;
//   4. the listeners; /readyz turns 200 once all are bound and every upstream answers.
import { existsSync, readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import {
  PolicyLoadError,
  defaultPolicy,
  formatProblem,
  loadPolicy,
  withMode,
  type CompiledPolicy,
} from '../policy/index.js';
import { startAdmin, type AdminServer, type ListenerStatus, type Phase, type PolicyStatus } from './admin.js';
import { parseConfig, USAGE, UsageError, type SidecarConfig } from './config.js';
import type { Listener, SidecarContext, StartListener } from './context.js';
import { createLogger } from './log.js';
import { PolicyWatcher } from './reload.js';
import { startTelemetry, type SidecarTelemetry } from './telemetry/index.js';

/** adapters load lazily: a gRPC-only sidecar never pays for the HTTP stack and vice versa */
const ADAPTERS: Record<'grpc' | 'http', () => Promise<StartListener>> = {
  grpc: async () => (await import('./grpc/index.js')).startGrpcListener,
  http: async () => (await import('./http/index.js')).startHttpListener,
};

function packageVersion(): string | undefined {
  for (const rel of ['../package.json', '../../package.json']) {
    const url = new URL(rel, import.meta.url);
    if (!existsSync(url)) continue;
    try {
      return (JSON.parse(readFileSync(url, 'utf8')) as { name?: string; version?: string }).version;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** the container's memory limit (cgroup v2, then v1), undefined when there is none */
function containerMemoryLimit(): number | undefined {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const n = Number(readFileSync(file, 'utf8').trim());
      // "max", or v1's "no limit" (a page-rounded 2^63)
      if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    } catch {
      /* not this cgroup version */
    }
  }
  return undefined;
}

/**
 * The V8 heap limit next to the container's memory limit, for the start-up line; a warning when the
 * heap may grow into memory the process needs for code, RE2 and buffers (docs/sidecar.md "Memory"):
 * then the kernel kills the container before V8 collects harder near its own limit.
 */
function memoryInfo(): { info: { heapLimitMiB: number; containerLimitMiB?: number }; warning?: string } {
  const MiB = 2 ** 20;
  const heap = getHeapStatistics().heap_size_limit;
  const limit = containerMemoryLimit();
  const info = {
    heapLimitMiB: Math.round(heap / MiB),
    ...(limit ? { containerLimitMiB: Math.round(limit / MiB) } : {}),
  };
  const NATIVE = 64 * MiB;
  if (limit && heap + NATIVE > limit) {
    const fit = Math.max(32, Math.floor((limit - NATIVE - 16 * MiB) / MiB));
    return {
      info,
      warning: `the V8 heap limit leaves less than 64 MiB of the container's memory limit for code and native memory; set NODE_OPTIONS="--max-old-space-size=${fit} --max-semi-space-size=4" or raise the limit`,
    };
  }
  return { info };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function problemsOf(err: unknown): string[] {
  return err instanceof PolicyLoadError ? err.problems.map(formatProblem) : [errorText(err)];
}

/**
 * The policy with `--allow-path` routes added to its http.allowPaths. A new frozen object sharing the
 * compiled engine (like withMode): the loaded policy is not touched, and the hash stays the policy's
 * own, so /readyz and the policy-hash metric still name what the operator wrote.
 */
export function withAllowPaths(p: CompiledPolicy, extra: readonly string[]): CompiledPolicy {
  const add = extra.filter((e) => !p.http.allowPaths.includes(e));
  if (add.length === 0) return p;
  return Object.freeze({
    ...p,
    http: Object.freeze({ allowPaths: Object.freeze([...p.http.allowPaths, ...add]) }),
  });
}

export async function run(args: string[]): Promise<number> {
  let cfg: SidecarConfig | 'help';
  try {
    cfg = parseConfig(args, process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(
      `inferguard sidecar: ${err.message}\nRun 'inferguard sidecar --help' for the flags.\n`,
    );
    return 2;
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = cfg;

  // listen for SIGTERM/SIGINT from the start: a signal during start-up drains once start-up is done,
  // instead of killing the process half-initialised
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

  const pod = { name: process.env.POD_NAME || undefined, namespace: process.env.POD_NAMESPACE || undefined };
  const log = createLogger({ level: config.logLevel, base: { pod: pod.name, namespace: pod.namespace } });
  const telemetry: SidecarTelemetry = startTelemetry({ log, pod, serviceVersion: packageVersion() });

  let phase: Phase = 'starting';
  let policy: CompiledPolicy | undefined;
  let policyStatus: PolicyStatus = { loaded: false, source: config.policy ?? 'built-in default' };
  const listeners: ListenerStatus[] = config.listeners.map((l) => ({
    protocol: l.protocol,
    listen: l.listen,
    upstream: l.upstream,
  }));
  let watcher: PolicyWatcher | undefined;
  let admin: AdminServer | undefined;

  const stopAll = async (graceMs: number): Promise<void> => {
    watcher?.close();
    await Promise.all(
      listeners.map((l) =>
        l.listener?.close(graceMs).catch((err: unknown) => {
          log.warn({ protocol: l.protocol, err: errorText(err) }, 'listener did not close cleanly');
        }),
      ),
    );
    await telemetry.shutdown();
    await admin?.close();
  };

  try {
    admin = await startAdmin(config.admin, {
      source: { phase: () => phase, policy: () => policyStatus, listeners: () => listeners },
      metrics: telemetry.metrics,
      log,
    });
  } catch (err) {
    log.fatal({ admin: config.admin, err: errorText(err) }, 'cannot start the admin listener');
    await stopAll(0);
    return 1;
  }

  const load = async (): Promise<CompiledPolicy> => {
    const p = config.policy ? await loadPolicy(config.policy) : defaultPolicy();
    return withAllowPaths(config.mode ? withMode(p, config.mode) : p, config.allowPaths);
  };
  const adopt = (p: CompiledPolicy): void => {
    policy = p;
    policyStatus = {
      loaded: true,
      name: p.name,
      hash: p.hash,
      source: policyStatus.source,
      loadedAt: new Date().toISOString(),
    };
    telemetry.setPolicy(p.name, p.hash);
  };

  if (config.policy) {
    watcher = new PolicyWatcher({
      path: config.policy,
      load,
      log,
      pollMs: config.pollSeconds * 1000,
      onReload: (p) => {
        const from = policy?.hash;
        if (p.hash === from && !policyStatus.lastReloadError) {
          // the files changed but not the effective policy (comments, formatting): nothing to swap
          log.debug({ policy: p.name, hash: p.hash }, 'policy files changed; effective policy unchanged');
          return;
        }
        adopt(p);
        telemetry.policyReloaded(true, p.hash);
        log.info({ policy: p.name, hash: p.hash, previous: from, rules: p.ruleCount }, 'policy reloaded');
      },
      onError: (err) => {
        const problems = problemsOf(err);
        policyStatus = {
          ...policyStatus,
          lastReloadError: { at: new Date().toISOString(), message: problems.join('\n') },
        };
        telemetry.policyReloaded(false, undefined);
        log.error(
          { problems, enforcing: policy?.hash },
          'policy reload failed; the last good policy stays in force',
        );
      },
    });
    // fingerprint before loading, so a change while we load is still noticed
    await watcher.prime();
  }

  try {
    adopt(await load());
  } catch (err) {
    const problems = problemsOf(err);
    for (const p of problems) process.stderr.write(`${p}\n`);
    log.fatal({ source: policyStatus.source, problems }, 'cannot load the policy');
    await stopAll(0);
    return 2;
  }
  await watcher?.start();

  const ctx: SidecarContext = {
    policy: () => policy as CompiledPolicy,
    fail: config.fail,
    telemetry,
    log,
    pod,
  };

  for (const l of listeners) {
    let listener: Listener;
    try {
      const start = await ADAPTERS[l.protocol]();
      listener = await start(ctx, {
        listen: l.listen,
        upstream: l.upstream,
        maxConnections: config.maxConnections,
        ...(l.protocol === 'grpc'
          ? {
              maxMessageBytes: config.grpcMaxMessageBytes,
              maxConcurrentStreams: config.maxConcurrentStreams,
              maxMetadataBytes: config.grpcMaxMetadataBytes,
            }
          : {
              headersTimeoutMs: config.httpHeadersTimeoutSeconds * 1000,
              requestTimeoutMs: config.httpRequestTimeoutSeconds * 1000,
            }),
      });
    } catch (err) {
      log.fatal({ protocol: l.protocol, listen: l.listen, err: errorText(err) }, 'cannot start a listener');
      await stopAll(0);
      return 1;
    }
    l.listener = listener;
  }
  phase = 'serving';
  const memory = memoryInfo();
  if (memory.warning) log.warn(memory.info, memory.warning);
  log.info(
    {
      admin: admin.address,
      listeners: listeners.map((l) => ({
        protocol: l.protocol,
        listen: l.listener?.address,
        upstream: l.upstream,
      })),
      policy: { name: policyStatus.name, hash: policyStatus.hash, source: policyStatus.source },
      mode: policy?.mode,
      fail: config.fail,
      ...(config.allowPaths.length > 0 ? { allowPaths: config.allowPaths } : {}),
      ...(config.listeners.some((l) => l.protocol === 'grpc')
        ? { grpcMaxMessageBytes: config.grpcMaxMessageBytes }
        : {}),
      exporters: telemetry.exporters,
      memory: memory.info,
    },
    'inferguard sidecar started',
  );

  const signal = await stopSignal;
  phase = 'draining';
  log.info({ signal, drainSeconds: config.drainSeconds }, 'draining: no new calls, finishing in-flight ones');
  const again = (s: NodeJS.Signals): void => {
    log.warn({ signal: s }, 'second signal: exiting without finishing the drain');
    process.exit(1);
  };
  process.once('SIGTERM', again);
  process.once('SIGINT', again);

  await stopAll(config.drainSeconds * 1000);
  log.info('stopped');
  // everything is closed; if a stray handle (a keep-alive socket, an SDK timer) still holds the event
  // loop, do not let it turn a clean drain into a SIGKILL
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
