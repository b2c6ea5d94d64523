// Hostile AdmissionReviews against the real webhook server over HTTPS (injector/fuzz.test.ts covers
// mutate() on generated valid pods): broken envelopes, wrong types anywhere in the pod, huge and deep
// values, random bytes, and policy ConfigMaps holding mutated policies. Properties:
//   - every review gets an answer: 200 with an AdmissionReview response for the same uid, or 400 for a
//     body that is not a review; never a dropped connection, never an injector-internal error;
//   - a pod that asked for protection (inferguard.io/inject: "true", outside the skipped namespaces,
//     not hostNetwork) is never admitted without the sidecar: it is injected or denied;
//   - a labelled policy ConfigMap is admitted exactly when the sidecar could load its policy.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPolicyText } from '../policy/index.js';
import { generateCertificates, type CertBundle } from './certs.js';
import { admissionReview, GOLDEN_SETTINGS, httpsRequest } from './testutil.js';
import { SIDECAR_NAME } from './mutate.js';
import { createWebhookServer, type WebhookServer } from './webhook.js';

let certs: CertBundle;
let hook: WebhookServer;
let port: number;
const reasons = new Map<string, string>();

beforeAll(async () => {
  certs = await generateCertificates({ dnsNames: ['inferguard.inferguard.svc'], ips: ['127.0.0.1'] });
  hook = createWebhookServer({
    settings: GOLDEN_SETTINGS,
    tls: certs,
    bodyLimit: 256 * 1024,
    onReview: (r) => void reasons.set(r.uid ?? '', r.reason),
  });
  await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
  port = (hook.server.address() as AddressInfo).port;
  hook.setReady(true);
});
afterAll(() => {
  hook.server.close();
  hook.server.closeAllConnections();
});

interface Answer {
  status: number;
  response?: {
    uid: string;
    allowed: boolean;
    patch?: string;
    status?: { code: number; reason: string; message: string };
  };
}

async function send(path: string, body: string | Buffer): Promise<Answer> {
  const r = await httpsRequest(port, certs.ca, { method: 'POST', path, body });
  expect([200, 400, 413], r.body).toContain(r.status);
  if (r.status !== 200) {
    expect((JSON.parse(r.body) as { error: string }).error.length).toBeGreaterThan(0);
    return { status: r.status };
  }
  const out = JSON.parse(r.body) as { apiVersion: string; kind: string; response: Answer['response'] };
  expect(out).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
  // an internal error means a hostile object reached code that threw: a bug even though it fails closed
  expect(out.response?.status?.reason, out.response?.status?.message).not.toBe('InternalError');
  return { status: 200, response: out.response };
}

let n = 0;
const uid = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;

const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 2 }),
);
/** reviews whose every field is `w(valid shape)`: hostile (sometimes anything) or clean (always valid) */
function reviews(hostile: boolean) {
  const w = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
    hostile ? fc.oneof({ weight: 8, arbitrary: valid }, { weight: 1, arbitrary: anyValue }) : valid;

  const annotations = fc.dictionary(
    fc.constantFrom(
      'inferguard.io/inject',
      'inferguard.io/ports',
      'inferguard.io/capture',
      'inferguard.io/policy',
      'inferguard.io/mode',
      'inferguard.io/fail',
      'inferguard.io/native-sidecar',
      'inferguard.io/image',
      'inferguard.io/cpu',
      'inferguard.io/memory',
      'inferguard.io/log-level',
      'other.io/x',
    ),
    w(
      fc.constantFrom(
        'true',
        'false',
        '8000=http',
        '8001=grpc',
        'port',
        'redirect',
        'open',
        'monitor',
        '1Gi',
        'x'.repeat(300),
        '',
      ),
    ),
    { maxKeys: 6 },
  );
  const container = fc.record(
    {
      name: w(fc.constantFrom('model', 'helper', 'inferguard', '')),
      image: w(fc.constant('vllm/vllm-openai:v0.9.0')),
      ports: w(
        fc.array(
          fc.record(
            {
              containerPort: w(fc.constantFrom(8000, 8001, 15001, 15020, 0, 70000)),
              name: w(fc.constantFrom('http', 'grpc', 'x')),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
      ),
      env: w(
        fc.array(fc.record({ name: anyValue, value: anyValue }, { requiredKeys: [] }), { maxLength: 2 }),
      ),
      readinessProbe: w(
        fc.constantFrom({ httpGet: { path: '/health', port: 8000 } }, { exec: { command: ['true'] } }),
      ),
    },
    { requiredKeys: ['name'] },
  );
  const pod = fc.record({
    apiVersion: w(fc.constant('v1')),
    kind: w(fc.constantFrom('Pod', 'Pod', 'Pod', 'Deployment', 'CronJob', 'Job', 'Service')),
    metadata: w(
      fc.record(
        {
          name: w(fc.constant('p')),
          namespace: w(fc.constantFrom('models', 'kube-system')),
          annotations: w(
            fc
              .tuple(fc.constantFrom('true', 'true', 'false', 'TRUE'), annotations)
              .map(([inject, rest]) => ({ ...rest, 'inferguard.io/inject': inject })),
          ),
          labels: w(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 })),
        },
        { requiredKeys: [] },
      ),
    ),
    spec: w(
      fc.record(
        {
          containers: w(fc.array(container, { maxLength: 3 })),
          initContainers: w(fc.array(container, { maxLength: 2 })),
          hostNetwork: w(fc.boolean()),
          template: anyValue,
          volumes: w(fc.array(fc.record({ name: anyValue }), { maxLength: 2 })),
        },
        { requiredKeys: [] },
      ),
    ),
  });
  return fc.record(
    {
      uid: fc.constant(''), // replaced per run
      kind: w(
        fc.record({
          group: fc.constant(''),
          version: fc.constant('v1'),
          kind: w(fc.constantFrom('Pod', 'Deployment')),
        }),
      ),
      namespace: w(fc.constantFrom('models', 'models', 'kube-system', 'inferguard')),
      operation: w(fc.constantFrom('CREATE', 'CREATE', 'CREATE', 'UPDATE', 'DELETE', 'CONNECT')),
      object: w(pod),
      dryRun: w(fc.boolean()),
    },
    { requiredKeys: ['uid'] },
  );
}
// clean reviews steered to the case that matters most: a Pod CREATE that asked for protection
const protectedPod = reviews(false).map((r) => {
  const o = { ...(r.object as Record<string, any> | undefined) };
  o.kind = 'Pod';
  o.metadata = { ...o.metadata, annotations: { ...o.metadata?.annotations, 'inferguard.io/inject': 'true' } };
  o.spec = { ...o.spec, hostNetwork: false };
  return { ...r, object: o, operation: 'CREATE', namespace: 'models' };
});
const review = fc.oneof(reviews(true), reviews(false), protectedPod);

const SKIPPED_NS = new Set(['kube-system', 'kube-public', 'kube-node-lease', 'inferguard']);

/** a Pod CREATE that asked for protection and may not be skipped */
function mustBeGuarded(req: Record<string, any>): boolean {
  const o = req.object;
  if (req.operation !== 'CREATE' || typeof o !== 'object' || o === null || o.kind !== 'Pod') return false;
  const ns = typeof req.namespace === 'string' ? req.namespace : undefined;
  if (ns === undefined || SKIPPED_NS.has(ns)) return false;
  if (o.spec?.hostNetwork === true) return false;
  return o.metadata?.annotations?.['inferguard.io/inject'] === 'true';
}

describe('POST /mutate under hostile reviews', { timeout: 60_000 }, () => {
  it('broken envelopes and random bodies: 400 with a reason', async () => {
    for (const body of [
      '',
      'null',
      '[]',
      '{"kind":"AdmissionReview"}',
      '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}',
      admissionReview({}),
      admissionReview({ uid: 7 }),
      '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":',
      Buffer.from([0xff, 0xfe, 0x00]),
    ]) {
      expect((await send('/mutate', body)).status).toBe(400);
    }
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ maxLength: 100 })), async (body) => {
        await send('/mutate', body);
      }),
      { numRuns: 60, interruptAfterTimeLimit: 5_000 },
    );
  });

  it('hostile pods: an answer for the same uid; a pod that asked for protection is never admitted without it', async () => {
    let admitted = 0;
    await fc.assert(
      fc.asyncProperty(review, async (r) => {
        const req = { ...r, uid: uid() } as Record<string, any>;
        const a = await send('/mutate', admissionReview(req));
        expect(a.status).toBe(200);
        expect(a.response!.uid).toBe(req.uid);
        if (!mustBeGuarded(req) || !a.response!.allowed) return;
        admitted++;
        // admitted: injected (a patch that adds our container) — or already carrying it
        if (reasons.get(req.uid) === 'already_injected') return;
        expect(a.response!.patch, `admitted without injection: ${reasons.get(req.uid)}`).toBeDefined();
        const ops = JSON.parse(Buffer.from(a.response!.patch!, 'base64').toString()) as jsonpatch.Operation[];
        const out = jsonpatch.applyPatch(structuredClone(req.object), ops, true, false).newDocument as any;
        const names = [...(out.spec.initContainers ?? []), ...(out.spec.containers ?? [])].map(
          (c: any) => c.name,
        );
        expect(names).toContain(SIDECAR_NAME);
      }),
      { numRuns: 300, interruptAfterTimeLimit: 15_000 },
    );
    // the generator reaches pods that asked for protection and were admitted (so the patch was checked)
    expect(admitted).toBeGreaterThan(0);
  });

  it('huge and deep objects: 413 over the body limit, an answer under it', async () => {
    expect(
      (await send('/mutate', admissionReview({ uid: uid(), object: { x: 'a'.repeat(300_000) } }))).status,
    ).toBe(413);
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    const body = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"${uid()}","operation":"CREATE","namespace":"models","object":{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"inferguard.io/inject":"true"}},"spec":{"containers":[{"name":"m","image":"i","env":${deep}}]}}}}`;
    // a clear denial, not an injector-internal error (was a stack overflow in mutate)
    const a = await send('/mutate', body);
    expect(a.status).toBe(200);
    expect(a.response!.allowed).toBe(false);
    expect(a.response!.status!.message).toBe(
      'malformed_object: request.object is nested deeper than 100 levels',
    );
  });
});

describe('POST /validate-policy under mutated policies', { timeout: 60_000 }, () => {
  const VALID = readFileSync(new URL('../policy/default-policy.yaml', import.meta.url), 'utf8');
  const cm = (text: unknown) =>
    admissionReview({
      uid: uid(),
      operation: 'CREATE',
      namespace: 'models',
      kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      object: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'acme', namespace: 'models', labels: { 'inferguard.io/policy': 'true' } },
        data: { 'policy.yaml': text },
      },
    });

  it('admitted exactly when the sidecar could load the policy', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.nat(),
        fc.constantFrom('', '(', ']', ': x', '\t', '- ', '"', '*'),
        async (line, col, ins) => {
          const lines = VALID.split('\n');
          const i = line % lines.length;
          const k = col % (lines[i].length + 1);
          lines[i] = lines[i].slice(0, k) + ins + lines[i].slice(k);
          const text = lines.join('\n');
          let loads = true;
          try {
            loadPolicyText(text, 'policy.yaml');
          } catch {
            loads = false;
          }
          const a = await send('/validate-policy', cm(text));
          expect(a.response!.allowed).toBe(loads);
          if (!loads) expect(a.response!.status!.message).toMatch(/^policy\.yaml:\d+:\d+: /);
        },
      ),
      { numRuns: 30, interruptAfterTimeLimit: 6_000 },
    );
    for (const wrong of [42, null, ['x'], { a: 1 }])
      expect((await send('/validate-policy', cm(wrong))).response!.allowed).toBe(false);
  });
});

describe('POST /validate-policy with more than one policy key', { timeout: 30_000 }, () => {
  // the sidecar mounts the whole ConfigMap and loads every *.yaml/*.yml key: all are checked, merged
  const doc = (name: string, rules: string) =>
    `apiVersion: inferguard.io/v1alpha1\nkind: GuardPolicy\nmetadata: { name: ${name} }\nspec:\n  packs: []\n  rules:\n${rules}\n`;
  const RULE = "    - { id: acme.codename, pattern: '(?i)project bluebird', action: block }";
  const review = (data: Record<string, string>, binaryData?: Record<string, string>) =>
    admissionReview({
      uid: uid(),
      operation: 'CREATE',
      namespace: 'models',
      kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      object: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'acme', namespace: 'models', labels: { 'inferguard.io/policy': 'true' } },
        data,
        ...(binaryData ? { binaryData } : {}),
      },
    });

  it('a broken second key is refused with its own file:line:col; other files are ignored like the loader does', async () => {
    const broken = await send(
      '/validate-policy',
      review({
        'policy.yaml': doc('a', RULE),
        'zz-extra.yaml': doc('b', "    - { id: x, pattern: '(', action: block }"),
      }),
    );
    expect(broken.response!.allowed).toBe(false);
    expect(broken.response!.status!.message).toMatch(/^zz-extra\.yaml:7:\d+: /);
    // the same rule id in two keys is a merge error, as it would be in the sidecar
    const dup = await send(
      '/validate-policy',
      review({ 'policy.yaml': doc('a', RULE), 'b.yml': doc('b', RULE) }),
    );
    expect(dup.response!.allowed).toBe(false);
    expect(dup.response!.status!.message).toContain('acme.codename');
    // README.md and dot-files are not policy files
    const ok = await send(
      '/validate-policy',
      review({ 'policy.yaml': doc('a', RULE), 'README.md': '# not yaml: (', '..data': 'x' }),
    );
    expect(ok.response!.allowed).toBe(true);
    // a policy file hidden in binaryData would be loaded unchecked: refused
    const bin = await send(
      '/validate-policy',
      review({ 'policy.yaml': doc('a', RULE) }, { 'extra.yaml': Buffer.from('x').toString('base64') }),
    );
    expect(bin.response!.allowed).toBe(false);
    expect(bin.response!.status!.message).toMatch(/^extra\.yaml:1:1: policy files belong under data/);
  });
});
