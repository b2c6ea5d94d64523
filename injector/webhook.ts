// The admission webhook's I/O: HTTPS, admission.k8s.io/v1 AdmissionReview in, AdmissionReview out.
// All decisions come from mutate() (pods and pod templates) and the engine's validatePolicyText()
// (policy ConfigMaps); this file only translates. A request that cannot be read gets a clear answer
// and never takes the server down: with failurePolicy Fail a crash would block every opted-in pod.
//
// dryRun: both handlers are pure (no Events, no API writes, nothing remembered), so a dry-run
// request gets exactly the answer a real one would — which is what `kubectl apply --dry-run=server`
// users want to see — and `sideEffects: None` in the webhook configuration is true.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SecureContextOptions } from 'node:tls';
import jsonpatch from 'fast-json-patch';
import { Counter, Histogram, Registry, collectDefaultMetrics, Gauge } from 'prom-client';
import { checkPolicyConfigMap } from './policy-configmap.js';
import { denialMessage, describeObject, mutate, type InjectorSettings } from './mutate.js';

export { denialMessage };

export const DEFAULT_BODY_LIMIT = 10 * 1024 * 1024;

type Obj = Record<string, any>;

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason?: string; message: string };
  warnings?: string[];
}

export interface AdmissionOutcome {
  response: AdmissionResponse;
  /** metric labels: what happened and why (a stable snake_case code) */
  result: 'injected' | 'skipped' | 'denied' | 'allowed' | 'error';
  reason: string;
}

function review(response: AdmissionResponse): Obj {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

class BadReview extends Error {}

/** checks the envelope; returns the request (uid is a non-empty string) */
export function readReview(body: unknown): Obj {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadReview('body is not a JSON object');
  const b = body as Obj;
  if (b.kind !== 'AdmissionReview')
    throw new BadReview(`expected kind AdmissionReview, got ${JSON.stringify(b.kind)}`);
  if (b.apiVersion !== 'admission.k8s.io/v1') {
    throw new BadReview(
      `unsupported apiVersion ${JSON.stringify(b.apiVersion)}; only admission.k8s.io/v1 (set admissionReviewVersions: ["v1"])`,
    );
  }
  const req = b.request;
  if (typeof req !== 'object' || req === null) throw new BadReview('request is missing');
  if (typeof req.uid !== 'string' || req.uid === '') throw new BadReview('request.uid is missing');
  return req as Obj;
}

/**
 * A real pod or workload nests a few dozen levels at most. Thousands of levels made mutate() overflow the
 * stack and the webhook answered with an injector-internal error (found by
 * injector/admission-fuzz.test.ts); such an object is now a clear malformed_object denial. The walk is
 * iterative so it cannot overflow itself.
 */
const MAX_OBJECT_DEPTH = 100;

function nestedDeeperThan(root: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Object.values(v as Record<string, unknown>)) stack.push([child, depth + 1]);
  }
  return false;
}

/** POST /mutate: a Pod or pod-template workload → JSON Patch, skip, or denial */
export function admitMutation(req: Obj, settings: InjectorSettings): AdmissionOutcome {
  const uid = req.uid as string;
  const object = req.object;
  // Pods are immutable after creation (apart from a few fields): only CREATE is mutated; workloads
  // are mutated on UPDATE too so an edited template is re-injected.
  if (
    req.operation !== 'CREATE' &&
    (req.operation !== 'UPDATE' || req.kind?.kind === 'Pod' || object?.kind === 'Pod')
  ) {
    return { response: { uid, allowed: true }, result: 'allowed', reason: 'operation_not_mutated' };
  }
  if (object === null || typeof object !== 'object') {
    return {
      response: {
        uid,
        allowed: false,
        status: { code: 400, reason: 'BadRequest', message: 'malformed_object: request.object is missing' },
      },
      result: 'denied',
      reason: 'malformed_object',
    };
  }
  if (nestedDeeperThan(object, MAX_OBJECT_DEPTH)) {
    return {
      response: {
        uid,
        allowed: false,
        status: {
          code: 400,
          reason: 'BadRequest',
          message: `malformed_object: request.object is nested deeper than ${MAX_OBJECT_DEPTH} levels`,
        },
      },
      result: 'denied',
      reason: 'malformed_object',
    };
  }
  // objects in admission requests may lack kind/apiVersion only in broken clients; fill from request.kind
  const subject = object.kind ? object : { ...object, kind: req.kind?.kind };
  const r = mutate(subject, settings, {
    namespace: typeof req.namespace === 'string' ? req.namespace : undefined,
  });
  if (r.outcome === 'denied') {
    return {
      response: {
        uid,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: denialMessage(r) },
      },
      result: 'denied',
      reason: r.reason,
    };
  }
  const response: AdmissionResponse = { uid, allowed: true };
  if (r.warnings.length > 0) response.warnings = r.warnings;
  if (r.outcome === 'injected') {
    const ops = jsonpatch.compare(subject, r.object as Obj);
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(ops)).toString('base64');
  }
  return { response, result: r.outcome, reason: r.reason };
}

/** POST /validate-policy: a ConfigMap labelled inferguard.io/policy: "true" must hold a valid policy */
export function admitPolicy(req: Obj): AdmissionOutcome {
  const uid = req.uid as string;
  const cm = req.object;
  if (req.operation === 'DELETE' || cm === null || typeof cm !== 'object') {
    return { response: { uid, allowed: true }, result: 'allowed', reason: 'nothing_to_validate' };
  }
  const check = checkPolicyConfigMap(cm);
  if (check.ok) return { response: { uid, allowed: true }, result: 'allowed', reason: check.reason };
  const code = check.reason === 'validation_error' ? 500 : 422;
  return {
    response: {
      uid,
      allowed: false,
      status: { code, reason: code === 422 ? 'Invalid' : 'InternalError', message: check.message },
    },
    result: code === 422 ? 'denied' : 'error',
    reason: check.reason,
  };
}

// ---------------------------------------------------------------------------------------------
// Metrics

export interface WebhookMetrics {
  registry: Registry;
  requests: Counter<'webhook' | 'result' | 'reason'>;
  duration: Histogram<'webhook'>;
  ready: Gauge;
  certExpiry: Gauge;
}

export function createMetrics(): WebhookMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'inferguard_injector_' });
  return {
    registry,
    requests: new Counter({
      name: 'inferguard_injector_admission_requests_total',
      help: 'AdmissionReview requests by webhook, result (injected|skipped|denied|allowed|error) and reason code',
      labelNames: ['webhook', 'result', 'reason'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'inferguard_injector_admission_duration_seconds',
      help: 'time to answer an AdmissionReview, from the last request byte to the response (p99 budget 5 ms)',
      labelNames: ['webhook'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
    ready: new Gauge({
      name: 'inferguard_injector_ready',
      help: '1 once certificates are loaded (and, with --self-signed, the caBundle is patched)',
      registers: [registry],
    }),
    certExpiry: new Gauge({
      name: 'inferguard_injector_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the serving certificate in use (Unix seconds)',
      registers: [registry],
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Server

export interface WebhookServerOptions {
  settings: InjectorSettings;
  tls: SecureContextOptions;
  bodyLimit?: number;
  metrics?: WebhookMetrics;
  /** called once per answered review (logging); never with request bodies */
  onReview?: (e: {
    webhook: string;
    uid: string;
    object: string;
    result: string;
    reason: string;
    dryRun: boolean;
  }) => void;
}

export interface WebhookServer {
  server: https.Server;
  metrics: WebhookMetrics;
  setReady(ready: boolean): void;
  /** swap the serving certificate for new connections (cert-dir reload) */
  setCertificate(tls: SecureContextOptions): void;
}

function send(res: ServerResponse, code: number, body: string, type = 'application/json'): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function createWebhookServer(opts: WebhookServerOptions): WebhookServer {
  const metrics = opts.metrics ?? createMetrics();
  const limit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  let ready = false;
  metrics.ready.set(0);

  const handlers: Record<string, (req: Obj) => AdmissionOutcome> = {
    '/mutate': (req) => admitMutation(req, opts.settings),
    '/validate-policy': (req) => admitPolicy(req),
  };

  const server = https.createServer({ ...opts.tls, minVersion: 'TLSv1.2' }, (req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/healthz') return send(res, 200, 'ok\n', 'text/plain');
    if (req.method === 'GET' && url === '/readyz')
      return send(res, ready ? 200 : 503, ready ? 'ready\n' : 'not ready\n', 'text/plain');
    if (req.method === 'GET' && url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => send(res, 200, text, metrics.registry.contentType),
        () => send(res, 500, 'metrics unavailable\n', 'text/plain'),
      );
      return;
    }
    const handler = handlers[url];
    if (!handler) return send(res, 404, JSON.stringify({ error: `no such endpoint ${url}` }));
    if (req.method !== 'POST') return send(res, 405, JSON.stringify({ error: `${url} accepts POST only` }));
    handleReview(req, res, url.slice(1), handler);
  });
  // slow or stuck clients must not pin sockets: the API server's own webhook timeout is ≤ 30 s
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  function handleReview(
    req: IncomingMessage,
    res: ServerResponse,
    webhook: string,
    handler: (r: Obj) => AdmissionOutcome,
  ): void {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      metrics.requests.inc({ webhook, result: 'error', reason: 'body_too_large' });
      res.setHeader('connection', 'close');
      return send(res, 413, JSON.stringify({ error: `request body over ${limit} bytes` }));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on('data', (chunk: Buffer) => {
      if (aborted) return;
      size += chunk.length;
      if (size > limit) {
        aborted = true;
        metrics.requests.inc({ webhook, result: 'error', reason: 'body_too_large' });
        res.setHeader('connection', 'close');
        send(res, 413, JSON.stringify({ error: `request body over ${limit} bytes` }));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => {
      aborted = true;
    });
    req.on('end', () => {
      if (aborted) return;
      const started = process.hrtime.bigint();
      let request: Obj;
      try {
        request = readReview(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        const message =
          err instanceof BadReview ? err.message : `body is not JSON: ${(err as Error).message}`;
        metrics.requests.inc({ webhook, result: 'error', reason: 'malformed_review' });
        return send(res, 400, JSON.stringify({ error: `malformed AdmissionReview: ${message}` }));
      }
      let outcome: AdmissionOutcome;
      try {
        outcome = handler(request);
      } catch (err) {
        // a bug of ours: answer (deny, fail closed) rather than drop the connection
        outcome = {
          response: {
            uid: request.uid,
            allowed: false,
            status: {
              code: 500,
              reason: 'InternalError',
              message: `inferguard injector error: ${(err as Error).message}`,
            },
          },
          result: 'error',
          reason: 'internal_error',
        };
      }
      send(res, 200, JSON.stringify(review(outcome.response)));
      metrics.duration.observe({ webhook }, Number(process.hrtime.bigint() - started) / 1e9);
      metrics.requests.inc({ webhook, result: outcome.result, reason: outcome.reason });
      opts.onReview?.({
        webhook,
        uid: request.uid,
        object: describeObject({
          ...(request.object ?? {}),
          metadata: { ...(request.object?.metadata ?? {}), namespace: request.namespace },
        }),
        result: outcome.result,
        reason: outcome.reason,
        dryRun: request.dryRun === true,
      });
    });
  }

  return {
    server,
    metrics,
    setReady(value: boolean) {
      ready = value;
      metrics.ready.set(value ? 1 : 0);
    },
    setCertificate(tls: SecureContextOptions) {
      server.setSecureContext({ ...tls, minVersion: 'TLSv1.2' });
    },
  };
}
