// Renders the chart (helm/template-render.ts: the Go-template subset the chart uses) with the default
// values and with the other modes, parses every manifest strictly, validates the Kubernetes objects
// against their OpenAPI schemas (kubernetes-models), and checks that the names the objects use for
// each other line up: what a `helm install` would show only on a live cluster.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ClusterRole,
  ClusterRoleBinding,
  Role,
  RoleBinding,
} from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import {
  MutatingWebhookConfiguration,
  ValidatingWebhookConfiguration,
} from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { DEFAULT_SETTINGS } from '../injector/mutate.js';
import { ChartRenderer, type RenderContext } from './template-render.js';

const CHART = path.join(path.dirname(fileURLToPath(import.meta.url)), 'inferguard');
const chartYaml = parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8'));
const defaults = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, any>;
const files = Object.fromEntries(
  readdirSync(path.join(CHART, 'templates')).map((f) => [
    `templates/${f}`,
    readFileSync(path.join(CHART, 'templates', f), 'utf8'),
  ]),
);
const renderer = new ChartRenderer(files);

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': ValidatingWebhookConfiguration,
};

/** Helm's coalescing of user values over values.yaml: maps merge, lists and scalars replace, null deletes */
function merge(base: any, over: any): any {
  if (!over || typeof over !== 'object' || Array.isArray(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = merge(base?.[k], v);
  }
  return out;
}

interface Rendered {
  objects: any[];
  notes: string;
  find(kind: string, name?: string): any;
  all(kind: string): any[];
}

function render(
  overrides: Record<string, unknown> = {},
  release = { name: 'inferguard', namespace: 'inferguard' },
): Rendered {
  const ctx: RenderContext = {
    Values: merge(defaults, overrides),
    Release: {
      Name: release.name,
      Namespace: release.namespace,
      Service: 'Helm',
      IsInstall: true,
      IsUpgrade: false,
    },
    Chart: { Name: chartYaml.name, Version: chartYaml.version, AppVersion: chartYaml.appVersion },
  };
  const objects: any[] = [];
  for (const file of Object.keys(files).filter((f) => f.endsWith('.yaml'))) {
    const text = renderer.render(file, ctx);
    for (const doc of parseAllDocuments(text, { uniqueKeys: true, strict: true })) {
      if (doc.errors.length)
        throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}\n${text}`);
      const obj = doc.toJS();
      if (obj !== null && obj !== undefined) objects.push({ ...obj, __file: file });
    }
  }
  const notes = renderer.render('templates/NOTES.txt', ctx);
  const all = (kind: string) => objects.filter((o) => o.kind === kind);
  return {
    objects,
    notes,
    all,
    find(kind, name) {
      const hits = all(kind).filter((o) => name === undefined || o.metadata.name === name);
      expect(hits, `${kind} ${name ?? ''}`).toHaveLength(1);
      return hits[0];
    },
  };
}

function validateAll(r: Rendered): void {
  for (const o of r.objects) {
    const { __file, ...obj } = o;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const Model = MODELS[key];
    if (Model) {
      expect(() => new Model(obj).validate(), `${__file}: ${key} ${obj.metadata?.name}`).not.toThrow();
    } else {
      expect(
        ['cert-manager.io/v1/Issuer', 'cert-manager.io/v1/Certificate'],
        `${__file}: unexpected ${key}`,
      ).toContain(key);
    }
    expect(obj.metadata.name, key).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    expect(obj.metadata.labels?.['app.kubernetes.io/managed-by'], `${key} labels`).toBe('Helm');
  }
}

const injector = (r: Rendered) => {
  const hits = r
    .all('Deployment')
    .filter((d) => d.metadata.labels['app.kubernetes.io/component'] === 'injector');
  expect(hits).toHaveLength(1);
  return hits[0];
};
const injectorArgs = (r: Rendered) => injector(r).spec.template.spec.containers[0].args as string[];
const injectorEnv = (r: Rendered): Record<string, unknown> =>
  Object.fromEntries(
    injector(r).spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]),
  );

describe('rendered with the default values (self-signed certificates)', () => {
  const r = render();

  it('renders valid Kubernetes objects, one of each expected kind', () => {
    validateAll(r);
    expect(r.objects.map((o) => o.kind).sort()).toEqual(
      [
        'ClusterRole',
        'ClusterRoleBinding',
        'ConfigMap',
        'Deployment',
        'MutatingWebhookConfiguration',
        'PodDisruptionBudget',
        'Role',
        'RoleBinding',
        'Service',
        'ServiceAccount',
        'ValidatingWebhookConfiguration',
      ].sort(),
    );
  });

  it('the injector Deployment is hardened, spread, probed and sized', () => {
    const d = r.find('Deployment', 'inferguard');
    expect(d.spec.replicas).toBe(2);
    const pod = d.spec.template.spec;
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const c = pod.containers[0];
    expect(c.image).toBe(`inferguard/injector:${chartYaml.appVersion}`);
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.resources.limits).toEqual({ cpu: '500m', memory: '256Mi' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'https', scheme: 'HTTPS' });
    expect(c.ports).toEqual([{ name: 'https', containerPort: 8443, protocol: 'TCP' }]);
    const term =
      pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
    expect(term.labelSelector.matchLabels).toEqual(d.spec.selector.matchLabels);
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(r.find('PodDisruptionBudget').spec).toEqual({ minAvailable: 1, selector: d.spec.selector });
  });

  it('starts `inferguard injector` in self-signed mode naming the objects RBAC allows it to touch', () => {
    expect(injectorArgs(r)).toEqual([
      'injector',
      '--listen=:8443',
      '--log-level=info',
      '--self-signed',
      '--webhook-config=inferguard',
      '--validating-webhook-config=inferguard',
      '--service=inferguard',
      '--secret=inferguard-tls',
    ]);
    const cr = r.find('ClusterRole');
    expect(cr.rules).toEqual([
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
        resourceNames: ['inferguard'],
        verbs: ['get', 'patch'],
      },
    ]);
    expect(r.find('MutatingWebhookConfiguration').metadata.name).toBe('inferguard');
    expect(r.find('ValidatingWebhookConfiguration').metadata.name).toBe('inferguard');
    const role = r.find('Role');
    expect(role.metadata.namespace).toBe('inferguard');
    expect(role.rules[0]).toEqual({
      apiGroups: [''],
      resources: ['secrets'],
      resourceNames: ['inferguard-tls'],
      verbs: ['get', 'update'],
    });
    for (const b of [r.find('ClusterRoleBinding'), r.find('RoleBinding')]) {
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'inferguard', namespace: 'inferguard' }]);
    }
    expect(r.find('ClusterRoleBinding').roleRef.name).toBe(cr.metadata.name);
    expect(r.find('RoleBinding').roleRef.name).toBe(role.metadata.name);
    expect(r.find('Deployment').spec.template.spec.serviceAccountName).toBe(
      r.find('ServiceAccount').metadata.name,
    );
  });

  it('hands the sidecar defaults to the injector', () => {
    expect(injectorEnv(r)).toMatchObject({
      INFERGUARD_SIDECAR_IMAGE: `inferguard/sidecar:${chartYaml.appVersion}`,
      INFERGUARD_IMAGE_PULL_POLICY: 'IfNotPresent',
      INFERGUARD_SIDECAR_CPU: '250m',
      INFERGUARD_SIDECAR_MEMORY: '256Mi',
      INFERGUARD_SIDECAR_LOG_LEVEL: 'info',
      INFERGUARD_DEFAULT_CAPTURE: 'redirect',
      INFERGUARD_DEFAULT_FAIL: 'closed',
      INFERGUARD_DEFAULT_NATIVE_SIDECAR: 'true',
      INFERGUARD_OTEL_ENDPOINT: '',
      INFERGUARD_OTEL_PROTOCOL: 'grpc',
      INFERGUARD_OTEL_SERVICE_NAME: 'inferguard-sidecar',
      INFERGUARD_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
  });

  it("the chart's sidecar image is the injector's default, the Dockerfile's tag and the package version", () => {
    const image = `${defaults.sidecar.image.repository}:${chartYaml.appVersion}`;
    expect(DEFAULT_SETTINGS.image).toBe(image);
    expect(injectorEnv(r).INFERGUARD_SIDECAR_IMAGE).toBe(image);
    const pkg = JSON.parse(readFileSync(path.join(CHART, '..', '..', 'package.json'), 'utf8'));
    expect(chartYaml.appVersion).toBe(pkg.version);
    expect(readFileSync(path.join(CHART, '..', '..', 'Dockerfile.sidecar'), 'utf8')).toContain(
      `-t ${image} `,
    );
  });

  it('capture, fail and native-sidecar defaults are chart values', () => {
    const other = render({ sidecar: { capture: 'port', fail: 'open', nativeSidecar: false } });
    expect(injectorEnv(other)).toMatchObject({
      INFERGUARD_DEFAULT_CAPTURE: 'port',
      INFERGUARD_DEFAULT_FAIL: 'open',
      INFERGUARD_DEFAULT_NATIVE_SIDECAR: 'false',
    });
  });

  it('the pod webhook calls the Service, fails closed and only sees opted-in, non-system namespaces', () => {
    const hook = r.find('MutatingWebhookConfiguration').webhooks[0];
    const svc = r.find('Service', 'inferguard');
    expect(svc.spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }]);
    expect(svc.spec.selector).toEqual(r.find('Deployment').spec.selector.matchLabels);
    expect(hook).toMatchObject({
      name: 'inject.inferguard.io',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      timeoutSeconds: 5,
      reinvocationPolicy: 'IfNeeded',
      clientConfig: { service: { name: 'inferguard', namespace: 'inferguard', path: '/mutate', port: 443 } },
    });
    expect(hook.clientConfig.caBundle).toBeUndefined(); // the injector patches it
    expect(hook.namespaceSelector).toEqual({
      matchLabels: { 'inferguard.io/injection': 'enabled' },
      matchExpressions: [
        {
          key: 'kubernetes.io/metadata.name',
          operator: 'NotIn',
          values: ['kube-system', 'kube-public', 'kube-node-lease', 'inferguard'],
        },
      ],
    });
    expect(r.find('MutatingWebhookConfiguration').metadata.annotations).toBeUndefined();
  });

  it('the policy webhook validates only labelled ConfigMaps, and the chart policy carries the label', () => {
    const hook = r.find('ValidatingWebhookConfiguration').webhooks[0];
    expect(hook.objectSelector).toEqual({ matchLabels: { 'inferguard.io/policy': 'true' } });
    expect(hook.clientConfig.service).toMatchObject({
      name: 'inferguard',
      path: '/validate-policy',
      port: 443,
    });
    const cm = r.find('ConfigMap', 'inferguard-policy');
    expect(cm.metadata.labels['inferguard.io/policy']).toBe('true');
    expect(cm.metadata.namespace).toBe('inferguard');
    expect(parse(cm.data['policy.yaml'])).toEqual(parse(defaults.policy.content));
  });

  it('NOTES.txt renders the label and annotation commands for this release', () => {
    expect(r.notes).toContain('kubectl label namespace NAMESPACE inferguard.io/injection=enabled');
    expect(r.notes).toContain('kubectl -n inferguard rollout status deploy/inferguard');
    expect(r.notes).toContain('inferguard.io/inject: "true"');
    expect(r.notes).toContain('inferguard.io/policy: inferguard-policy');
    expect(r.notes).toContain('No tracing backend is set');
  });
});

describe('rendered with cert-manager, Jaeger and policy copies', () => {
  const r = render({
    certificates: { mode: 'cert-manager' },
    jaeger: { enabled: true },
    policy: { namespaces: ['models', 'inferguard'] },
    injector: { antiAffinity: 'required', extraArgs: ['--body-limit=2097152'] },
  });

  it('renders valid objects: Issuer and Certificate instead of RBAC, plus Jaeger', () => {
    validateAll(r);
    const kinds = r.objects.map((o) => o.kind);
    expect(kinds).not.toContain('ClusterRole');
    expect(kinds).not.toContain('Role');
    expect(kinds).toEqual(expect.arrayContaining(['Issuer', 'Certificate']));
    expect(
      r
        .all('Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(['inferguard', 'inferguard-jaeger']);
  });

  it('the Certificate covers the Service, lands in the mounted Secret, and the cainjector fills both caBundles', () => {
    const cert = r.find('Certificate');
    expect(cert.spec.dnsNames).toContain('inferguard.inferguard.svc');
    expect(cert.spec.issuerRef).toEqual({
      name: 'inferguard-selfsigned',
      kind: 'Issuer',
      group: 'cert-manager.io',
    });
    expect(r.find('Issuer').metadata.name).toBe('inferguard-selfsigned');
    const pod = r.find('Deployment', 'inferguard').spec.template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'certs').secret.secretName).toBe(cert.spec.secretName);
    expect(pod.containers[0].volumeMounts).toContainEqual({
      name: 'certs',
      mountPath: '/etc/inferguard/certs',
      readOnly: true,
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(injectorArgs(r)).toEqual([
      'injector',
      '--listen=:8443',
      '--log-level=info',
      '--cert-dir=/etc/inferguard/certs',
      '--body-limit=2097152',
    ]);
    for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
      expect(r.find(kind).metadata.annotations).toEqual({
        'cert-manager.io/inject-ca-from': 'inferguard/inferguard',
      });
    }
    expect(cert.metadata.name).toBe('inferguard');
  });

  it('the sidecars export to the chart Jaeger, which listens on OTLP 4317/4318 and serves the UI', () => {
    expect(injectorEnv(r).INFERGUARD_OTEL_ENDPOINT).toBe('http://inferguard-jaeger.inferguard.svc:4317');
    const j = r.find('Deployment', 'inferguard-jaeger');
    const c = j.spec.template.spec.containers[0];
    expect(c.image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    expect(c.ports.map((p: any) => p.containerPort)).toEqual([4317, 4318, 16686]);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    const svc = r.find('Service', 'inferguard-jaeger');
    expect(svc.spec.selector).toEqual(j.spec.selector.matchLabels);
    expect(svc.spec.ports.map((p: any) => p.port)).toEqual([4317, 4318, 16686]);
    expect(r.notes).toContain('port-forward svc/inferguard-jaeger 16686:16686');
  });

  it('http/protobuf goes to Jaeger 4318; an explicit endpoint wins over the chart Jaeger', () => {
    const http = render({ jaeger: { enabled: true }, sidecar: { otel: { protocol: 'http/protobuf' } } });
    expect(injectorEnv(http).INFERGUARD_OTEL_ENDPOINT).toBe('http://inferguard-jaeger.inferguard.svc:4318');
    const own = render({
      jaeger: { enabled: true },
      sidecar: { otel: { endpoint: 'http://collector.obs:4317' } },
    });
    expect(injectorEnv(own).INFERGUARD_OTEL_ENDPOINT).toBe('http://collector.obs:4317');
  });

  it('creates the policy ConfigMap once per namespace', () => {
    expect(r.all('ConfigMap').map((c) => c.metadata.namespace)).toEqual(['inferguard', 'models']);
  });

  it('required anti-affinity puts one injector per node', () => {
    const aa = r.find('Deployment', 'inferguard').spec.template.spec.affinity.podAntiAffinity;
    expect(aa.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('kubernetes.io/hostname');
    expect(aa.preferredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
  });
});

describe('rendered with other settings', () => {
  it('names objects after the release and excludes the release namespace', () => {
    const r = render({}, { name: 'prod', namespace: 'guard' });
    validateAll(r);
    expect(r.find('Deployment').metadata.name).toBe('prod-inferguard');
    const hook = r.find('MutatingWebhookConfiguration').webhooks[0];
    expect(hook.clientConfig.service).toMatchObject({ name: 'prod-inferguard', namespace: 'guard' });
    expect(hook.namespaceSelector.matchExpressions[0].values).toContain('guard');
    expect(injectorArgs(r)).toContain('--secret=prod-inferguard-tls');
  });

  it('a widened namespace selector still excludes system namespaces; extra exclusions and expressions add up', () => {
    const r = render({
      webhook: {
        requireNamespaceLabel: false,
        namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists' }] },
        excludeNamespaces: ['monitoring'],
        objectSelector: { matchLabels: { 'inferguard.io/model': 'true' } },
      },
    });
    validateAll(r);
    const hook = r.find('MutatingWebhookConfiguration').webhooks[0];
    expect(hook.namespaceSelector).toEqual({
      matchExpressions: [
        {
          key: 'kubernetes.io/metadata.name',
          operator: 'NotIn',
          values: ['kube-system', 'kube-public', 'kube-node-lease', 'inferguard', 'monitoring'],
        },
        { key: 'team', operator: 'Exists' },
      ],
    });
    expect(hook.objectSelector).toEqual({ matchLabels: { 'inferguard.io/model': 'true' } });
  });

  it('turning off the PDB, policy and policy validation removes them (and the validating flag)', () => {
    const r = render({
      injector: { podDisruptionBudget: { enabled: false } },
      policy: { create: false },
      webhook: { validatePolicies: false },
    });
    validateAll(r);
    const kinds = r.objects.map((o) => o.kind);
    for (const k of ['PodDisruptionBudget', 'ConfigMap', 'ValidatingWebhookConfiguration'])
      expect(kinds).not.toContain(k);
    expect(injectorArgs(r).some((a) => a.startsWith('--validating-webhook-config'))).toBe(false);
  });

  it('image tags and pull secrets come through', () => {
    const r = render({
      image: { tag: 'dev' },
      sidecar: { image: { repository: 'reg/sc', tag: 'x1' } },
      imagePullSecrets: [{ name: 'regcred' }],
      injector: { podAnnotations: { 'prometheus.io/scrape': 'true' }, podLabels: { team: 'platform' } },
    });
    validateAll(r);
    const pod = r.find('Deployment').spec.template.spec;
    expect(pod.containers[0].image).toBe('inferguard/injector:dev');
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    const meta = injector(r).spec.template.metadata;
    expect(meta.annotations).toEqual({ 'prometheus.io/scrape': 'true' });
    expect(meta.labels.team).toBe('platform');
    expect(render().find('Deployment').spec.template.metadata.annotations).toBeUndefined();
    expect(injectorEnv(r).INFERGUARD_SIDECAR_IMAGE).toBe('reg/sc:x1');
  });
});

describe('the renderer itself', () => {
  it('fails loudly on what it does not support, like helm on a broken template', () => {
    const bad = new ChartRenderer({
      'a.yaml': '{{ .Values.missing.deeper }}',
      'b.yaml': '{{ frobnicate . }}',
      'c.yaml': '{{ include "nope" . }}',
    });
    const ctx = { Values: {}, Release: {}, Chart: {} } as unknown as RenderContext;
    expect(() => bad.render('a.yaml', ctx)).toThrow(/nil pointer/);
    expect(() => bad.render('b.yaml', ctx)).toThrow(/unsupported function "frobnicate"/);
    expect(() => bad.render('c.yaml', ctx)).toThrow(/no template "nope"/);
    expect(() => new ChartRenderer({ 'd.yaml': '{{ if .x }}unclosed' })).toThrow(/unclosed \{\{ if \.x \}\}/);
    expect(() => new ChartRenderer({ 'e.yaml': '{{ end }}' })).toThrow(/unexpected \{\{ end \}\}/);
  });

  it('trims whitespace and evaluates pipelines like text/template', () => {
    const r = new ChartRenderer({
      'a.yaml':
        'a:\n  {{- with .Values.m }}\n  {{- toYaml . | nindent 2 }}\n  {{- end }}\nb: {{ .Values.s | default "d" | quote }}\n{{- range $i, $x := .Values.l }}\n- {{ $i }}={{ $x }}\n{{- end }}',
    });
    const ctx = {
      Values: { m: { z: 1, y: 'two' }, s: '', l: ['p', 'q'] },
      Release: {},
      Chart: {},
    } as unknown as RenderContext;
    expect(r.render('a.yaml', ctx)).toBe('a:\n  y: two\n  z: 1\nb: "d"\n- 0=p\n- 1=q');
  });
});
