// Test helpers shared by the injector's tests (not part of the product surface).
import https from 'node:https';
import { DEFAULT_SETTINGS, type InjectorSettings } from './mutate.js';

// pinned so the goldens do not change with the package version (Linkerd pins its fixture version too)
export const GOLDEN_SETTINGS: InjectorSettings = {
  ...DEFAULT_SETTINGS,
  image: 'ghcr.io/inferguard/inferguard:golden',
  otelEndpoint: 'http://otel-collector.observability:4317',
  otelProtocol: 'grpc',
};

export interface HttpsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** one HTTPS request to 127.0.0.1:port trusting only `ca` */
export function httpsRequest(
  port: number,
  ca: string,
  opts: {
    method?: string;
    path: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    servername?: string;
  },
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path,
        ca,
        servername: opts.servername,
        agent: false,
        headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function admissionReview(request: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
}

let n = 0;
export function podReview(object: any, extra: Record<string, unknown> = {}): string {
  n += 1;
  return admissionReview({
    uid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    kind: {
      group: object.apiVersion?.includes('/') ? object.apiVersion.split('/')[0] : '',
      version: 'v1',
      kind: object.kind,
    },
    resource: { group: '', version: 'v1', resource: 'pods' },
    namespace: object.metadata?.namespace ?? 'models',
    operation: 'CREATE',
    userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
    object,
    oldObject: null,
    dryRun: false,
    ...extra,
  });
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}
