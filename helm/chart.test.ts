// Static checks of the Helm chart. There is no helm binary on the CI machine, so these tests read the
// chart the way helm would fail on it: values against the schema, template references against
// values.yaml, template delimiters and blocks, the YAML skeleton of every manifest, and the admission
// settings that keep pods from running unprotected.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { Ajv } from 'ajv';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHART = path.join(HERE, 'inferguard');
const TEMPLATES = path.join(CHART, 'templates');
const read = (p: string) => readFileSync(p, 'utf8');
const pkg = JSON.parse(read(path.join(HERE, '..', 'package.json'))) as { version: string };

const values = parse(read(path.join(CHART, 'values.yaml'))) as Record<string, any>;
const schema = JSON.parse(read(path.join(CHART, 'values.schema.json'))) as object;
const templateFiles = readdirSync(TEMPLATES).sort();
const templates = Object.fromEntries(templateFiles.map((f) => [f, read(path.join(TEMPLATES, f))]));
const manifests = templateFiles.filter((f) => f.endsWith('.yaml'));

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: true });
  return ajv.compile(schema);
}

function withOverride(patch: (v: any) => void): any {
  const copy = structuredClone(values);
  patch(copy);
  return copy;
}

/** every `{{ … }}` action with its text, in order */
function actions(src: string): string[] {
  return [...src.matchAll(/\{\{-?\s*([\s\S]*?)\s*-?\}\}/g)].map((m) => m[1]);
}

/**
 * The YAML a template leaves when its actions are taken out: lines that hold only actions disappear
 * (control flow, includes rendered with nindent), inline actions become a placeholder scalar. Both
 * branches of an if/else survive, so duplicate keys are allowed.
 */
function skeleton(src: string): any[] {
  const withoutComments = src.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, '');
  const lines = withoutComments
    .split('\n')
    .filter((line) => line.replace(/\{\{[\s\S]*?\}\}/g, '').trim() !== '' || line.trim() === '')
    .map((line) => line.replace(/\{\{[\s\S]*?\}\}/g, 'TPL'));
  const docs = parseAllDocuments(lines.join('\n'), { uniqueKeys: false });
  for (const d of docs) if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join('; '));
  return docs.map((d) => d.toJS()).filter((d) => d !== null && d !== undefined);
}

function get(obj: any, keys: string[]): unknown {
  return keys.reduce((o, k) => (o !== null && typeof o === 'object' && k in o ? o[k] : undefined), obj);
}

describe('Chart.yaml and values', () => {
  it('Chart.yaml is a v2 chart whose appVersion is the package version', () => {
    const chart = parse(read(path.join(CHART, 'Chart.yaml')));
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'inferguard', type: 'application' });
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('values.yaml validates against values.schema.json (draft-07)', () => {
    expect((schema as any).$schema).toBe('http://json-schema.org/draft-07/schema#');
    const validate = validator();
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
  });

  it('the schema refuses typos, unknown modes and bad enums', () => {
    const validate = validator();
    const bad = [
      withOverride((v) => (v.sidecarr = {})),
      withOverride((v) => (v.certificates.mode = 'vault')),
      withOverride((v) => (v.sidecar.otel.protocol = 'zipkin')),
      withOverride((v) => (v.webhook.failurePolicy = 'Maybe')),
      withOverride((v) => (v.webhook.timeoutSeconds = 60)),
      withOverride((v) => (v.sidecar.resources.cpu = 'lots')),
      withOverride((v) => (v.sidecar.otel.endpoint = 'jaeger:4317')),
      withOverride((v) => (v.jaeger.image.unknown = true)),
      withOverride((v) => (v.sidecar.capture = 'tproxy')),
      withOverride((v) => (v.sidecar.fail = 'sometimes')),
      withOverride((v) => (v.sidecar.nativeSidecar = 'yes')),
    ];
    for (const v of bad) expect(validate(v)).toBe(false);
    // and accepts what docs/install.md shows
    const good = withOverride((v) => {
      v.certificates.mode = 'cert-manager';
      v.certificates.certManager.issuerRef = { name: 'corp-ca', kind: 'ClusterIssuer' };
      v.jaeger.enabled = true;
      v.sidecar.resources = { cpu: '500m', memory: '512Mi' };
      v.sidecar.otel.endpoint = 'http://otel-collector.observability:4317';
      v.webhook.requireNamespaceLabel = false;
      v.webhook.namespaceSelector = { matchLabels: { team: 'ml' } };
      v.policy.namespaces = ['models'];
      v.sidecar.capture = 'port';
      v.sidecar.fail = 'open';
      v.sidecar.nativeSidecar = false;
    });
    expect(validate(good), JSON.stringify(validate.errors)).toBe(true);
  });

  it('image tags default to the appVersion (empty tag in values)', () => {
    expect(values.image.tag).toBe('');
    expect(values.sidecar.image.tag).toBe('');
    expect(templates['_helpers.tpl']).toContain('(default .Chart.AppVersion .Values.image.tag)');
    expect(templates['_helpers.tpl']).toContain('(default .Chart.AppVersion .Values.sidecar.image.tag)');
  });

  it('Jaeger is v2 with a pinned tag', () => {
    expect(values.jaeger.image.repository).toBe('jaegertracing/jaeger');
    expect(values.jaeger.image.tag).toMatch(/^2\.\d+\.\d+$/);
  });

  it('the default policy is a GuardPolicy document', () => {
    const policy = parse(values.policy.content);
    expect(policy).toMatchObject({ apiVersion: 'inferguard.io/v1alpha1', kind: 'GuardPolicy' });
    expect(policy.spec.packs).toEqual(expect.arrayContaining(['prompt-injection', 'secrets']));
  });
});

describe('templates', () => {
  it('has the expected templates', () => {
    expect(templateFiles).toEqual(
      expect.arrayContaining([
        '_helpers.tpl',
        'NOTES.txt',
        'deployment.yaml',
        'service.yaml',
        'poddisruptionbudget.yaml',
        'webhooks.yaml',
        'rbac.yaml',
        'certificate.yaml',
        'policy-configmap.yaml',
        'jaeger.yaml',
      ]),
    );
  });

  it('every .Values reference exists in values.yaml', () => {
    const missing: string[] = [];
    for (const [file, src] of Object.entries(templates)) {
      for (const m of src.matchAll(/\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        const keys = m[1].slice(1).split('.');
        if (get(values, keys) === undefined) missing.push(`${file}: .Values.${keys.join('.')}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('every value in values.yaml is used by some template (no dead knobs)', () => {
    const all = Object.values(templates).join('\n');
    const unused: string[] = [];
    const walk = (o: any, prefix: string[]) => {
      for (const [k, v] of Object.entries(o)) {
        const p = [...prefix, k];
        const ref = `.Values.${p.join('.')}`;
        // a map passed whole (toYaml, range) counts for its children
        if (all.includes(ref)) continue;
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, p);
        else unused.push(ref);
      }
    };
    walk(values, []);
    expect(unused).toEqual([]);
  });

  it('docs/install.md documents every value (a key or the map holding it)', () => {
    const docs = readFileSync(path.join(HERE, '..', 'docs', 'install.md'), 'utf8');
    // keys appear in the values table as `a.b.c`, or as `a.b` / `.c` when a row covers siblings
    const documented = (keys: string[]) =>
      keys.some(
        (_, i) =>
          (keys.length - i >= 2 || keys.length === 1) &&
          docs.includes('`' + keys.slice(0, keys.length - i).join('.') + '`'),
      ) || docs.includes('`.' + keys.at(-1) + '`');
    const missing: string[] = [];
    const walk = (o: any, prefix: string[]) => {
      for (const [k, v] of Object.entries(o)) {
        const p = [...prefix, k];
        if (
          v &&
          typeof v === 'object' &&
          !Array.isArray(v) &&
          Object.keys(v).length > 0 &&
          !docs.includes('`' + p.join('.') + '`')
        ) {
          walk(v, p);
        } else if (!documented(p)) missing.push(p.join('.'));
      }
    };
    walk(values, []);
    expect(missing).toEqual([]);
  });

  it('every include names a defined template', () => {
    const defined = new Set([...templates['_helpers.tpl'].matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
    for (const [file, src] of Object.entries(templates)) {
      for (const m of src.matchAll(/include "([^"]+)"/g))
        expect(defined.has(m[1]), `${file}: ${m[1]}`).toBe(true);
    }
  });

  it('delimiters and blocks balance in every template', () => {
    for (const [file, src] of Object.entries(templates)) {
      expect(src.split('{{').length, `${file}: {{ vs }}`).toBe(src.split('}}').length);
      const depth = { n: 0 };
      for (const a of actions(src)) {
        if (a.startsWith('/*')) continue;
        if (/^(if|with|range|define)\b/.test(a)) depth.n++;
        else if (a === 'end') depth.n--;
        expect(depth.n, `${file}: stray end`).toBeGreaterThanOrEqual(0);
      }
      expect(depth.n, `${file}: unclosed block`).toBe(0);
    }
  });

  it('every manifest has a plausible YAML skeleton: apiVersion, kind, metadata.name, namespaced where needed', () => {
    const clusterScoped = new Set([
      'ClusterRole',
      'ClusterRoleBinding',
      'MutatingWebhookConfiguration',
      'ValidatingWebhookConfiguration',
    ]);
    const kinds: string[] = [];
    for (const file of manifests) {
      const docs = skeleton(templates[file]);
      expect(docs.length, file).toBeGreaterThan(0);
      for (const doc of docs) {
        expect(doc.apiVersion, file).toMatch(/^[a-z0-9.-]*\/?v\d/);
        expect(doc.kind, file).toMatch(/^[A-Z][A-Za-z]+$/);
        expect(doc.metadata?.name, `${file} ${doc.kind}`).toBeTruthy();
        if (!clusterScoped.has(doc.kind)) expect(doc.metadata.namespace, `${file} ${doc.kind}`).toBeTruthy();
        kinds.push(doc.kind);
      }
    }
    expect(kinds.sort()).toEqual(
      [
        'Certificate',
        'ClusterRole',
        'ClusterRoleBinding',
        'ConfigMap',
        'Deployment',
        'Deployment',
        'Issuer',
        'MutatingWebhookConfiguration',
        'PodDisruptionBudget',
        'Role',
        'RoleBinding',
        'Service',
        'Service',
        'ServiceAccount',
        'ValidatingWebhookConfiguration',
      ].sort(),
    );
  });
});

describe('admission webhooks', () => {
  const [mutating, validating] = skeleton(templates['webhooks.yaml']);

  it('the pod webhook fails closed, has no side effects, a short timeout and is reinvoked', () => {
    expect(mutating.kind).toBe('MutatingWebhookConfiguration');
    const hook = mutating.webhooks[0];
    expect(hook).toMatchObject({
      sideEffects: 'None',
      reinvocationPolicy: 'IfNeeded',
      admissionReviewVersions: ['v1'],
    });
    expect(templates['webhooks.yaml']).toContain('failurePolicy: {{ .Values.webhook.failurePolicy }}');
    expect(templates['webhooks.yaml']).toContain('timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}');
    expect(values.webhook.failurePolicy).toBe('Fail');
    expect(values.webhook.timeoutSeconds).toBe(5);
    expect(hook.rules).toEqual([
      {
        operations: ['CREATE'],
        apiGroups: [''],
        apiVersions: ['v1'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ]);
    expect(hook.clientConfig.service).toMatchObject({ path: '/mutate', port: 443 });
  });

  it('the pod webhook is scoped by the namespace label and excludes system namespaces', () => {
    expect(values.webhook.requireNamespaceLabel).toBe(true);
    expect(templates['webhooks.yaml']).toMatch(
      /\{\{- if \.Values\.webhook\.requireNamespaceLabel \}\}\n\s+inferguard\.io\/injection: enabled/,
    );
    const sel = mutating.webhooks[0].namespaceSelector;
    expect(sel.matchExpressions[0]).toMatchObject({ key: 'kubernetes.io/metadata.name', operator: 'NotIn' });
    const excluded = templates['_helpers.tpl']
      .split('define "inferguard.excludedNamespaces"')[1]
      .split('{{- end -}}')[0];
    for (const ns of ['kube-system', 'kube-public', 'kube-node-lease', '{{ .Release.Namespace }}']) {
      expect(excluded).toContain(`- ${ns}`);
    }
    expect(templates['webhooks.yaml']).toMatch(
      /values:\s*\n\s*\{\{- include "inferguard.excludedNamespaces" \. \| nindent 12 \}\}/,
    );
  });

  it('the policy webhook only sees ConfigMaps labelled inferguard.io/policy: "true"', () => {
    expect(validating.kind).toBe('ValidatingWebhookConfiguration');
    const hook = validating.webhooks[0];
    expect(hook).toMatchObject({ sideEffects: 'None', admissionReviewVersions: ['v1'] });
    expect(hook.objectSelector).toEqual({ matchLabels: { 'inferguard.io/policy': 'true' } });
    expect(hook.rules[0]).toMatchObject({ operations: ['CREATE', 'UPDATE'], resources: ['configmaps'] });
    expect(hook.clientConfig.service).toMatchObject({ path: '/validate-policy', port: 443 });
  });

  it('cert-manager mode asks the cainjector for the caBundle of both configurations', () => {
    const n = templates['webhooks.yaml'].match(/cert-manager\.io\/inject-ca-from: /g)?.length;
    expect(n).toBe(2);
  });
});

describe('injector Deployment and RBAC', () => {
  const [deploy] = skeleton(templates['deployment.yaml']);
  const pod = deploy.spec.template.spec;
  const container = pod.containers[0];

  it('runs hardened: non-root, read-only root fs, no capabilities, RuntimeDefault seccomp', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    const sc = templates['_helpers.tpl'].split('define "inferguard.containerSecurityContext"')[1];
    for (const s of [
      'readOnlyRootFilesystem: true',
      'runAsNonRoot: true',
      'allowPrivilegeEscalation: false',
      'drop: [ALL]',
      'type: RuntimeDefault',
    ]) {
      expect(sc).toContain(s);
    }
    expect(templates['deployment.yaml']).toContain(
      '{{- include "inferguard.containerSecurityContext" . | nindent 12 }}',
    );
  });

  it('has two replicas, anti-affinity and a PodDisruptionBudget', () => {
    expect(values.injector.replicas).toBe(2);
    expect(pod.affinity.podAntiAffinity).toBeTruthy();
    const [pdb] = skeleton(templates['poddisruptionbudget.yaml']);
    expect(pdb.kind).toBe('PodDisruptionBudget');
    expect(values.injector.podDisruptionBudget).toEqual({ enabled: true, minAvailable: 1 });
  });

  it('probes /healthz and /readyz over HTTPS on the webhook port; the Service maps 443 to it', () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'https', scheme: 'HTTPS' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    expect(container.ports[0].name).toBe('https');
    expect(values.injector.port).toBe(8443);
    const [svc] = skeleton(templates['service.yaml']);
    expect(svc.spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }]);
  });

  it('passes the sidecar defaults to the injector as its INFERGUARD_* settings', () => {
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    for (const name of [
      'INFERGUARD_SIDECAR_IMAGE',
      'INFERGUARD_IMAGE_PULL_POLICY',
      'INFERGUARD_SIDECAR_CPU',
      'INFERGUARD_SIDECAR_MEMORY',
      'INFERGUARD_SIDECAR_LOG_LEVEL',
      'INFERGUARD_OTEL_ENDPOINT',
      'INFERGUARD_OTEL_PROTOCOL',
      'INFERGUARD_OTEL_SERVICE_NAME',
    ]) {
      expect(env[name], name).toBe('TPL');
    }
    expect(env.INFERGUARD_NAMESPACE).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
    // the injector reads exactly these names: keep the chart and injector/settings.ts in step
    const settings = readFileSync(path.join(HERE, '..', 'injector', 'settings.ts'), 'utf8');
    for (const name of Object.keys(env).filter((n) => n.startsWith('INFERGUARD_'))) {
      expect(settings, name).toContain(`'${name}'`);
    }
  });

  it('starts the webhook server with flags the injector accepts, for either certificate mode', () => {
    const args: string[] = container.args;
    expect(args[0]).toBe('injector');
    const flags = args
      .slice(1)
      .filter((a) => a !== 'TPL') // injector.extraArgs
      .map((a) => a.split('=')[0]);
    for (const flag of [
      '--listen',
      '--self-signed',
      '--webhook-config',
      '--validating-webhook-config',
      '--service',
      '--secret',
      '--cert-dir',
    ]) {
      expect(flags, flag).toContain(flag);
    }
    // every flag the chart passes is one `inferguard injector` parses (parseArgs is strict)
    const main = readFileSync(path.join(HERE, '..', 'injector', 'main.ts'), 'utf8');
    const options = main.slice(main.indexOf('options: {'), main.indexOf('...settingOptions()'));
    for (const flag of flags) {
      const name = flag.slice(2);
      expect(options.includes(`'${name}':`) || options.includes(`${name}:`), flag).toBe(true);
    }
    // the Secret and Service names the injector uses are the ones RBAC and the webhooks name
    expect(templates['deployment.yaml']).toContain('--secret={{ include "inferguard.tlsSecretName" . }}');
    expect(templates['deployment.yaml']).toContain('--service={{ include "inferguard.fullname" . }}');
    expect(templates['service.yaml']).toContain('name: {{ include "inferguard.fullname" . }}');
  });

  it('RBAC: self-signed mode gets only get/patch on the two named webhook configs and one Secret', () => {
    const docs = skeleton(templates['rbac.yaml']);
    expect(templates['rbac.yaml']).toMatch(/^\{\{- if eq \.Values\.certificates\.mode "self-signed" \}\}/m);
    const cr = docs.find((d) => d.kind === 'ClusterRole');
    expect(cr.rules).toHaveLength(1);
    expect(cr.rules[0]).toMatchObject({
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
      verbs: ['get', 'patch'],
    });
    expect(cr.rules[0].resourceNames).toHaveLength(1);
    const role = docs.find((d) => d.kind === 'Role');
    expect(role.rules[0]).toMatchObject({ resources: ['secrets'], verbs: ['get', 'update'] });
    expect(role.rules[0].resourceNames).toHaveLength(1);
    expect(role.rules[1]).toEqual({ apiGroups: [''], resources: ['secrets'], verbs: ['create'] });
    // nothing else anywhere: no wildcards, no pods/configmaps access
    for (const d of docs)
      for (const r of d.rules ?? []) expect(JSON.stringify(r)).not.toMatch(/\*|pods|configmaps/);
  });

  it('the sidecars export OTLP to the chart Jaeger when it is enabled', () => {
    const [jaegerDeploy, jaegerSvc] = skeleton(templates['jaeger.yaml']);
    expect(jaegerDeploy.spec.template.spec.containers[0].ports.map((p: any) => p.containerPort)).toEqual([
      4317, 4318, 16686,
    ]);
    expect(jaegerSvc.spec.ports.map((p: any) => p.port)).toEqual([4317, 4318, 16686]);
    const helper = templates['_helpers.tpl']
      .split('define "inferguard.otelEndpoint"')[1]
      .split('{{- end -}}\n\n')[0];
    expect(helper).toContain('.Values.jaeger.enabled');
    expect(helper).toContain(':4317');
    expect(templates['deployment.yaml']).toMatch(
      /name: INFERGUARD_OTEL_ENDPOINT\n\s+value: {{ include "inferguard.otelEndpoint" \. \| quote }}/,
    );
  });

  it('NOTES.txt tells the user how to label a namespace and annotate a pod', () => {
    expect(templates['NOTES.txt']).toContain(
      'kubectl label namespace NAMESPACE inferguard.io/injection=enabled',
    );
    expect(templates['NOTES.txt']).toContain('inferguard.io/inject: "true"');
  });
});
