// The webhook over real HTTPS (real certificates from certs.ts) with real AdmissionReview bodies.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import jsonpatch from 'fast-json-patch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCertificates, type CertBundle } from './certs.js';
import { parseManifests } from './manifests.js';
import { mutate } from './mutate.js';
import { admissionReview, GOLDEN_SETTINGS, httpsRequest, podReview } from './testutil.js';
import { createWebhookServer, denialMessage, type WebhookServer } from './webhook.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata');
let certs: CertBundle;
let hook: WebhookServer;
let port: number;

beforeAll(async () => {
  certs = await generateCertificates({
    dnsNames: ['inferguard-injector.inferguard-system.svc'],
    ips: ['127.0.0.1'],
  });
  hook = createWebhookServer({ settings: GOLDEN_SETTINGS, tls: certs, bodyLimit: 256 * 1024 });
  await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
  port = (hook.server.address() as AddressInfo).port;
  hook.setReady(true);
});
afterAll(() => {
  hook.server.close();
  hook.server.closeAllConnections();
});

const post = (p: string, body: string | Buffer) =>
  httpsRequest(port, certs.ca, { method: 'POST', path: p, body });

async function review(p: string, body: string) {
  const r = await post(p, body);
  expect(r.status).toBe(200);
  const out = JSON.parse(r.body);
  expect(out).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
  return out.response;
}

describe('POST /mutate', () => {
  // every object of every golden input that the webhook could see
  const objects = readdirSync(DIR)
    .filter((f) => f.endsWith('.input.yaml'))
    .flatMap((f) => parseManifests(readFileSync(path.join(DIR, f), 'utf8')).map((o) => [f, o] as const));

  it('its JSON Patch, applied, equals `inferguard inject` output for every golden object', async () => {
    let injected = 0;
    for (const [file, object] of objects) {
      const body = podReview(object);
      const uid = JSON.parse(body).request.uid;
      const res = await review('/mutate', body);
      expect(res.uid).toBe(uid);
      expect(res.allowed).toBe(true);
      const expected = mutate(object, GOLDEN_SETTINGS, {
        namespace: (object as any).metadata?.namespace ?? 'models',
      });
      if (expected.outcome === 'injected') {
        injected += 1;
        expect(res.patchType).toBe('JSONPatch');
        const ops = JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8'));
        const patched = jsonpatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
        expect(patched, file).toEqual(expected.object);
      } else {
        expect(res.patch, file).toBeUndefined();
      }
    }
    expect(injected).toBeGreaterThanOrEqual(12);
  });

  it('denies a bad annotation with the same message `inferguard inject` prints', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: 'chat-',
        annotations: { 'inferguard.io/inject': 'true', 'inferguard.io/capture': 'ebpf' },
      },
      spec: { containers: [{ name: 'm', image: 'vllm', ports: [{ containerPort: 8000 }] }] },
    };
    const res = await review('/mutate', podReview(pod));
    expect(res.allowed).toBe(false);
    expect(res.status.code).toBe(403);
    expect(res.status.message).toBe(denialMessage(mutate(pod, GOLDEN_SETTINGS)));
    expect(res.status.message).toBe(
      'invalid_capture: invalid annotation inferguard.io/capture: "ebpf"; allowed: "redirect" or "port"',
    );
  });

  it('warns kubectl when a pod that asked for protection is skipped', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'h', annotations: { 'inferguard.io/inject': 'true' } },
      spec: { hostNetwork: true, containers: [{ name: 'm', image: 'vllm' }] },
    };
    const res = await review('/mutate', podReview(pod));
    expect(res).toMatchObject({ allowed: true });
    expect(res.patch).toBeUndefined();
    expect(res.warnings[0]).toMatch(/not injected \(host_network\)/);
  });

  it('uses the request namespace (pods from a ReplicaSet have none in metadata)', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'x-', annotations: { 'inferguard.io/inject': 'true' } },
      spec: { containers: [{ name: 'm', image: 'vllm', ports: [{ containerPort: 8000 }] }] },
    };
    expect((await review('/mutate', podReview(pod, { namespace: 'kube-system' }))).patch).toBeUndefined();
    expect((await review('/mutate', podReview(pod, { namespace: 'models' }))).patch).toBeDefined();
  });

  it('answers dry-run requests exactly like real ones (the handler has no side effects)', async () => {
    const [object] = parseManifests(readFileSync(path.join(DIR, 'pod-basic.input.yaml'), 'utf8'));
    const real = await review('/mutate', podReview(object, { uid: 'a' }));
    const dry = await review('/mutate', podReview(object, { uid: 'a', dryRun: true }));
    expect(dry).toEqual(real);
  });

  it('does not mutate pod UPDATEs (pod specs are immutable) or DELETEs', async () => {
    const [object] = parseManifests(readFileSync(path.join(DIR, 'pod-basic.input.yaml'), 'utf8'));
    for (const operation of ['UPDATE', 'DELETE']) {
      const res = await review('/mutate', podReview(object, { operation, uid: operation }));
      expect(res).toEqual({ uid: operation, allowed: true });
    }
  });

  it('answers malformed reviews with a clear 400 and keeps serving', async () => {
    const cases: [string | Buffer, RegExp][] = [
      ['{"apiVersion":', /body is not JSON/],
      ['[]', /body is not a JSON object/],
      [
        '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}',
        /only admission.k8s.io\/v1/,
      ],
      [
        '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}',
        /request.uid is missing/,
      ],
      ['{"apiVersion":"admission.k8s.io/v1","kind":"ConfigMap"}', /expected kind AdmissionReview/],
      [Buffer.from([0xff, 0xfe, 0x00]), /body is not JSON/],
    ];
    for (const [body, message] of cases) {
      const r = await post('/mutate', body);
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).error).toMatch(message);
    }
    // a well-formed review whose object is garbage: denied with a reason, not a crash
    const res = await review(
      '/mutate',
      admissionReview({
        uid: 'g',
        operation: 'CREATE',
        kind: { kind: 'Pod' },
        object: { kind: 'Pod', spec: 7 },
      }),
    );
    expect(res).toMatchObject({ uid: 'g', allowed: false });
    expect(res.status.message).toMatch(/^malformed_object: /);
    expect((await httpsRequest(port, certs.ca, { path: '/healthz' })).status).toBe(200);
  });

  it('refuses bodies over the limit with 413', async () => {
    const big = admissionReview({
      uid: 'big',
      operation: 'CREATE',
      object: { kind: 'Pod', pad: 'x'.repeat(300 * 1024) },
    });
    const r = await post('/mutate', big);
    expect(r.status).toBe(413);
    expect((await httpsRequest(port, certs.ca, { path: '/healthz' })).status).toBe(200);
  });

  it('rejects other methods and paths', async () => {
    expect((await httpsRequest(port, certs.ca, { path: '/mutate' })).status).toBe(405);
    expect((await post('/nope', '{}')).status).toBe(404);
  });
});

describe('POST /validate-policy', () => {
  const cm = (
    data: Record<string, string> | undefined,
    labels: Record<string, string> = { 'inferguard.io/policy': 'true' },
  ) =>
    admissionReview({
      uid: 'cm-1',
      kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      namespace: 'models',
      operation: 'CREATE',
      object: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'acme-chat', namespace: 'models', labels },
        data,
      },
    });
  const valid = [
    'apiVersion: inferguard.io/v1alpha1',
    'kind: GuardPolicy',
    'metadata: { name: acme-chat }',
    'spec:',
    '  rules:',
    "    - { id: acme.codename, pattern: '(?i)bluebird', action: block }",
    '',
  ].join('\n');

  it('admits a valid policy', async () => {
    expect(await review('/validate-policy', cm({ 'policy.yaml': valid }))).toEqual({
      uid: 'cm-1',
      allowed: true,
    });
  });

  it('rejects an invalid policy with policy.yaml:LINE:COL: message', async () => {
    const broken = valid.replace("'(?i)bluebird'", "'(a'");
    const res = await review('/validate-policy', cm({ 'policy.yaml': broken }));
    expect(res.allowed).toBe(false);
    expect(res.status.code).toBe(422);
    expect(res.status.message).toMatch(/^policy\.yaml:6:\d+: /);
  });

  it('rejects a policy ConfigMap without the policy.yaml key', async () => {
    const res = await review('/validate-policy', cm({ 'policy.yml': valid }));
    expect(res.allowed).toBe(false);
    expect(res.status.message).toMatch(/^policy\.yaml:1:1: .*data\."policy\.yaml"/);
  });

  it('lets unlabelled ConfigMaps through untouched', async () => {
    expect(await review('/validate-policy', cm({ 'policy.yaml': 'not: [valid' }, {}))).toEqual({
      uid: 'cm-1',
      allowed: true,
    });
  });
});

describe('health and metrics', () => {
  it('counts requests by result and reason and records latency', async () => {
    const text = (await httpsRequest(port, certs.ca, { path: '/metrics' })).body;
    expect(text).toMatch(
      /inferguard_injector_admission_requests_total\{webhook="mutate",result="injected",reason="injected"\} \d+/,
    );
    expect(text).toMatch(
      /inferguard_injector_admission_requests_total\{webhook="mutate",result="denied",reason="invalid_capture"\} 1/,
    );
    expect(text).toMatch(
      /inferguard_injector_admission_requests_total\{webhook="mutate",result="error",reason="malformed_review"\} 6/,
    );
    expect(text).toMatch(
      /inferguard_injector_admission_duration_seconds_bucket\{le="0.005",webhook="mutate"\} \d+/,
    );
  });

  it('/readyz follows setReady', async () => {
    hook.setReady(false);
    expect((await httpsRequest(port, certs.ca, { path: '/readyz' })).status).toBe(503);
    hook.setReady(true);
    expect((await httpsRequest(port, certs.ca, { path: '/readyz' })).status).toBe(200);
  });
});
