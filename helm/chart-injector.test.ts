// The chart and the injector agree: the real `inferguard injector` process is started with exactly the
// args and env the chart renders (the container's mount path and listen port mapped to this machine),
// against a fake kube-apiserver seeded with the chart's own webhook configurations. Proves the names
// line up (Secret, Service DNS name, webhook configurations), that the rendered RBAC allows every API
// call the injector makes and nothing more is needed, and that the sidecar defaults from values.yaml
// reach injected pods.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { spawnCli } from '../testing/cli.js';
import { generateCertificates } from '../injector/certs.js';
import { FakeApiServer, type Recorded } from '../injector/fake-apiserver.js';
import { admissionReview, httpsRequest, podReview, waitFor } from '../injector/testutil.js';
import { ChartRenderer, type RenderContext } from './template-render.js';

const CHART = path.join(path.dirname(fileURLToPath(import.meta.url)), 'inferguard');
const chartYaml = parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8'));
const defaults = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));
const renderer = new ChartRenderer(
  Object.fromEntries(
    readdirSync(path.join(CHART, 'templates')).map((f) => [
      `templates/${f}`,
      readFileSync(path.join(CHART, 'templates', f), 'utf8'),
    ]),
  ),
);
const NS = 'inferguard';

function merge(base: any, over: any): any {
  if (!over || typeof over !== 'object' || Array.isArray(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base?.[k], v);
  return out;
}

function render(overrides: Record<string, unknown>): any[] {
  const ctx: RenderContext = {
    Values: merge(defaults, overrides),
    Release: { Name: 'inferguard', Namespace: NS, Service: 'Helm', IsInstall: true, IsUpgrade: false },
    Chart: { Name: chartYaml.name, Version: chartYaml.version, AppVersion: chartYaml.appVersion },
  };
  return readdirSync(path.join(CHART, 'templates'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(renderer.render(`templates/${f}`, ctx)).map((d) => d.toJS()))
    .filter(Boolean);
}

const cleanup: (() => void)[] = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

/** the injector container as rendered, started here: env from the manifest plus the downward API */
async function startRendered(
  objects: any[],
  mapPath: (arg: string) => string,
  extraEnv: NodeJS.ProcessEnv,
): Promise<{ port: number; child: ChildProcess; logs: () => string }> {
  const deploy = objects.find(
    (o) => o.kind === 'Deployment' && o.metadata.labels['app.kubernetes.io/component'] === 'injector',
  );
  const container = deploy.spec.template.spec.containers[0];
  const env: NodeJS.ProcessEnv = {};
  for (const e of container.env) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = NS;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = 'inferguard-5d9c7-x2x4q';
    else throw new Error(`unexpected env source for ${e.name}`);
  }
  const [command, ...args] = container.args as string[];
  expect(command).toBe('injector');
  // the container listens on :8443 behind the Service; here any free loopback port
  const mapped = args.map((a) => (a.startsWith('--listen=') ? '--listen=127.0.0.1:0' : mapPath(a)));
  const child = spawnCli(['injector', ...mapped], { env: { ...env, ...extraEnv } });
  cleanup.push(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const port = await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`injector exited ${child.exitCode}: ${out}`);
      const line = out.split('\n').find((l) => l.includes('injector listening'));
      return line ? Number(String(JSON.parse(line).listen).split(':').pop()) : undefined;
    },
    'the injector to listen',
    25_000,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\n${out}`);
  });
  return { port, child, logs: () => out };
}

const VERBS: Record<string, string> = {
  GET: 'get',
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

/** is this API request allowed by the rendered ClusterRoles/Roles bound to the injector? */
function allowedByRbac(objects: any[], r: Recorded): boolean {
  const p = r.path.split('?')[0];
  let m = /^\/api\/v1\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?$/.exec(p);
  let req: { group: string; resource: string; namespace?: string; name?: string };
  if (m) req = { group: '', namespace: m[1], resource: m[2], name: m[3] };
  else if ((m = /^\/apis\/([^/]+)\/v1\/([^/]+)(?:\/([^/]+))?$/.exec(p))) {
    req = { group: m[1], resource: m[2], name: m[3] };
  } else return false;
  const verb = VERBS[r.method];
  const matches = (rule: any) =>
    rule.apiGroups.includes(req.group) &&
    rule.resources.includes(req.resource) &&
    rule.verbs.includes(verb) &&
    (!rule.resourceNames || (req.name !== undefined && rule.resourceNames.includes(req.name)));
  const clusterRoles = objects.filter((o) => o.kind === 'ClusterRole');
  const roles = objects.filter((o) => o.kind === 'Role' && o.metadata.namespace === req.namespace);
  return [...clusterRoles, ...roles].some((role) => role.rules.some(matches));
}

const modelPod = (namespace: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'vllm-0',
    namespace,
    annotations: { 'inferguard.io/inject': 'true', 'inferguard.io/ports': '8000=http' },
  },
  spec: {
    containers: [{ name: 'vllm', image: 'vllm/vllm-openai', ports: [{ name: 'http', containerPort: 8000 }] }],
  },
});

function patchOf(body: string): any[] {
  const res = JSON.parse(body).response;
  return res.patch ? JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8')) : [];
}

describe('the chart starts the real injector', () => {
  it(
    'self-signed: certificate in the chart-named Secret, caBundle on the chart webhooks, within the chart RBAC',
    { timeout: 60_000 },
    async () => {
      const objects = render({ jaeger: { enabled: true } });
      const api = await new FakeApiServer().start();
      cleanup.push(() => api.close());
      for (const o of objects) {
        if (o.kind === 'MutatingWebhookConfiguration')
          api.mutating.set(o.metadata.name, { ...o, metadata: { ...o.metadata, resourceVersion: '1' } });
        if (o.kind === 'ValidatingWebhookConfiguration')
          api.validating.set(o.metadata.name, { ...o, metadata: { ...o.metadata, resourceVersion: '1' } });
      }
      const dir = mkdtempSync(path.join(tmpdir(), 'ig-chart-'));
      cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
      writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());

      const { port } = await startRendered(objects, (a) => a, {
        KUBECONFIG: path.join(dir, 'kubeconfig'),
        KUBERNETES_SERVICE_HOST: '',
      });

      // the Secret the Role names, holding a CA the Service's DNS name verifies against
      const secret = api.secrets.get(`${NS}/inferguard-tls`);
      expect(secret, [...api.secrets.keys()].join()).toBeDefined();
      const ca = Buffer.from(secret!.data['ca.crt'], 'base64').toString();
      const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'inferguard');
      const servername = `${service.metadata.name}.${NS}.svc`;
      await waitFor(
        async () =>
          (await httpsRequest(port, ca, { path: '/readyz', servername })).status === 200 ? true : undefined,
        'readiness',
        20_000,
      );
      expect((await httpsRequest(port, ca, { path: '/healthz', servername })).status).toBe(200);
      const caBundle = Buffer.from(ca).toString('base64');
      for (const cfg of [api.mutating.get('inferguard'), api.validating.get('inferguard')]) {
        for (const hook of cfg!.webhooks) expect(hook.clientConfig.caBundle, hook.name).toBe(caBundle);
      }
      // every call the injector made is one the chart's RBAC grants
      expect(api.requests.length).toBeGreaterThan(0);
      for (const r of api.requests) expect(allowedByRbac(objects, r), `${r.method} ${r.path}`).toBe(true);
      // and the checker is not a rubber stamp
      expect(
        allowedByRbac(objects, { method: 'GET', path: '/api/v1/namespaces/inferguard/secrets/other' }),
      ).toBe(false);
      expect(
        allowedByRbac(objects, {
          method: 'PATCH',
          path: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio',
        }),
      ).toBe(false);

      // a pod in a labelled namespace gets the sidecar with the chart's defaults
      const injected = patchOf(
        (
          await httpsRequest(port, ca, {
            method: 'POST',
            path: '/mutate',
            body: podReview(modelPod('models')),
            servername,
          })
        ).body,
      );
      const text = JSON.stringify(injected);
      expect(text).toContain(`"image":"inferguard/sidecar:${chartYaml.appVersion}"`);
      expect(text).toContain('"cpu":"250m"');
      expect(text).toContain('"memory":"256Mi"');
      expect(text).toContain(
        '{"name":"OTEL_EXPORTER_OTLP_ENDPOINT","value":"http://inferguard-jaeger.inferguard.svc:4317"}',
      );
      expect(text).toContain('{"name":"OTEL_EXPORTER_OTLP_PROTOCOL","value":"grpc"}');
      expect(text).toContain('{"name":"OTEL_SERVICE_NAME","value":"inferguard-sidecar"}');
      // the release namespace is never injected (INFERGUARD_NAMESPACE from the downward API)
      const own = await httpsRequest(port, ca, {
        method: 'POST',
        path: '/mutate',
        body: podReview(modelPod(NS)),
        servername,
      });
      expect(JSON.parse(own.body).response.allowed).toBe(true);
      expect(patchOf(own.body)).toEqual([]);

      // the chart's policy ConfigMap passes its own validating webhook; a broken one is refused with a position
      const cm = objects.find((o) => o.kind === 'ConfigMap');
      const review = (object: any) =>
        admissionReview({
          uid: '00000000-0000-4000-8000-00000000c0de',
          kind: { group: '', version: 'v1', kind: 'ConfigMap' },
          resource: { group: '', version: 'v1', resource: 'configmaps' },
          namespace: NS,
          operation: 'CREATE',
          object,
        });
      const ok = await httpsRequest(port, ca, {
        method: 'POST',
        path: '/validate-policy',
        body: review(cm),
        servername,
      });
      expect(JSON.parse(ok.body).response, ok.body).toMatchObject({ allowed: true });
      const broken = {
        ...cm,
        data: { 'policy.yaml': cm.data['policy.yaml'].replace('mode: enforce', 'mode: maybe') },
      };
      const bad = await httpsRequest(port, ca, {
        method: 'POST',
        path: '/validate-policy',
        body: review(broken),
        servername,
      });
      const res = JSON.parse(bad.body).response;
      expect(res.allowed).toBe(false);
      expect(res.status.message).toMatch(/policy\.yaml:\d+:\d+/);
    },
  );

  it(
    'cert-manager: serves the mounted certificate and never calls the API server',
    { timeout: 60_000 },
    async () => {
      const objects = render({ certificates: { mode: 'cert-manager' }, sidecar: { fail: 'open' } });
      const cert = objects.find((o) => o.kind === 'Certificate');
      const deploy = objects.find((o) => o.kind === 'Deployment');
      const mount = deploy.spec.template.spec.containers[0].volumeMounts.find(
        (m: any) => m.name === 'certs',
      ).mountPath;
      // what cert-manager would write into the Secret the volume mounts
      const dir = mkdtempSync(path.join(tmpdir(), 'ig-chart-certs-'));
      cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
      const pair = await generateCertificates({ dnsNames: cert.spec.dnsNames });
      writeFileSync(path.join(dir, 'tls.crt'), pair.cert);
      writeFileSync(path.join(dir, 'tls.key'), pair.key);
      const api = await new FakeApiServer().start();
      cleanup.push(() => api.close());
      writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());

      const { port } = await startRendered(objects, (a) => a.replace(mount, dir), {
        KUBECONFIG: path.join(dir, 'kubeconfig'),
        KUBERNETES_SERVICE_HOST: '',
      });
      const servername = cert.spec.dnsNames.find((n: string) => n.endsWith('.svc'));
      const ready = await httpsRequest(port, pair.ca, { path: '/readyz', servername });
      expect(ready.status).toBe(200);
      const r = await httpsRequest(port, pair.ca, {
        method: 'POST',
        path: '/mutate',
        body: podReview(modelPod('models')),
        servername,
      });
      const patch = JSON.stringify(patchOf(r.body));
      expect(patch).toContain(`inferguard/sidecar:${chartYaml.appVersion}`);
      // the chart's sidecar.fail reached the pod; no OTLP endpoint configured, so no trace export
      expect(patch).toContain('"--fail","open"');
      expect(patch).toContain('{"name":"OTEL_TRACES_EXPORTER","value":"none"}');
      expect(api.requests).toEqual([]);
    },
  );
});
