// The admin listener (default 127.0.0.1:15020): what kubelet probes and Prometheus scrape.
//   GET /healthz  200 while the process serves (liveness: never fails during a drain)
//   GET /readyz   200 only when the policy is loaded, every listener is up and every upstream answers;
//                 503 otherwise. Both carry a JSON body saying why (docs/sidecar.md).
//   GET /startupz 200 once the policy is loaded and every listener is bound, without asking the
//                 upstream: the injected startupProbe. A native sidecar must pass it before the kubelet
//                 starts the model, so it cannot wait for the model (that would never start).
//   GET /metrics  Prometheus text
import http from 'node:http';
import type { Logger } from 'pino';
import type { HostPort, Listener } from './context.js';
import type { SidecarMetrics } from './telemetry/metrics.js';

export interface PolicyStatus {
  loaded: boolean;
  name?: string;
  hash?: string;
  /** the --policy path, or "built-in default" */
  source: string;
  /** ISO time the policy in force was loaded */
  loadedAt?: string;
  /** the last reload that failed while the previous policy stayed in force; cleared by a good reload */
  lastReloadError?: { at: string; message: string };
}

export interface ListenerStatus {
  protocol: 'grpc' | 'http';
  listen: HostPort;
  upstream: HostPort;
  /** undefined until it is bound */
  listener?: Listener;
}

export type Phase = 'starting' | 'serving' | 'draining';

export interface AdminSource {
  phase(): Phase;
  policy(): PolicyStatus;
  listeners(): ListenerStatus[];
}

export interface Readiness {
  ready: boolean;
  phase: Phase;
  policy: PolicyStatus;
  listeners: {
    protocol: 'grpc' | 'http';
    listen: string;
    upstream: string;
    bound: boolean;
    upstreamReady: boolean;
  }[];
}

export interface AdminServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

const UPSTREAM_CHECK_MS = 1_000;

const hp = (a: HostPort): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

async function upstreamReady(listener: Listener | undefined): Promise<boolean> {
  if (!listener) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), UPSTREAM_CHECK_MS);
  });
  try {
    return await Promise.race([listener.upstreamReady().catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function readiness(source: AdminSource): Promise<Readiness> {
  const phase = source.phase();
  const policy = source.policy();
  const listeners = await Promise.all(
    source.listeners().map(async (l) => ({
      protocol: l.protocol,
      listen: hp(l.listener?.address ?? l.listen),
      upstream: hp(l.upstream),
      bound: l.listener !== undefined,
      upstreamReady: await upstreamReady(l.listener),
    })),
  );
  const ready = phase === 'serving' && policy.loaded && listeners.every((l) => l.bound && l.upstreamReady);
  return { ready, phase, policy, listeners };
}

/** what /startupz reports: serving, the policy loaded and every listener bound; no upstream check */
export function started(source: AdminSource): Omit<Readiness, 'listeners'> & {
  listeners: Omit<Readiness['listeners'][number], 'upstreamReady'>[];
} {
  const phase = source.phase();
  const policy = source.policy();
  const listeners = source.listeners().map((l) => ({
    protocol: l.protocol,
    listen: hp(l.listener?.address ?? l.listen),
    upstream: hp(l.upstream),
    bound: l.listener !== undefined,
  }));
  const ready = phase === 'serving' && policy.loaded && listeners.every((l) => l.bound);
  return { ready, phase, policy, listeners };
}

export async function startAdmin(
  addr: HostPort,
  deps: { source: AdminSource; metrics: SidecarMetrics; log: Logger },
): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body) + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/healthz':
        return json(200, { status: 'ok', phase: deps.source.phase() });
      case '/startupz': {
        const s = started(deps.source);
        return json(s.ready ? 200 : 503, s);
      }
      case '/readyz':
        readiness(deps.source).then(
          (r) => json(r.ready ? 200 : 503, r),
          (err: unknown) =>
            json(503, { ready: false, error: err instanceof Error ? err.message : String(err) }),
        );
        return;
      case '/metrics':
        deps.metrics.text().then(
          (text) => {
            res.writeHead(200, { 'content-type': deps.metrics.contentType });
            res.end(text);
          },
          (err: unknown) => {
            deps.log.error(
              { err: err instanceof Error ? err.message : String(err) },
              'metrics collection failed',
            );
            json(500, { error: 'metrics collection failed' });
          },
        );
        return;
      default:
        return json(404, { error: 'not found', endpoints: ['/healthz', '/startupz', '/readyz', '/metrics'] });
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as { address: string; port: number };
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
