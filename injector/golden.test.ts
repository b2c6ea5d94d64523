// Golden files: injector/testdata/<case>.input.yaml → <case>.output.yaml through the same code path
// as `inferguard inject`. Regenerate with UPDATE_GOLDEN=1 (then read the diff!). Every output is
// re-injected (must be a byte-identical no-op) and every pod spec is checked against the Kubernetes
// OpenAPI schema (kubernetes-models) and the API server's native-sidecar rules (podcheck.ts).
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ReplicaSet } from 'kubernetes-models/apps/v1/ReplicaSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { CronJob } from 'kubernetes-models/batch/v1/CronJob';
import { injectObjects, parseManifests, renderManifests } from './manifests.js';
import { mutate, parseStatus } from './mutate.js';
import { GOLDEN_SETTINGS } from './testutil.js';
import { checkPodSpec, checkRestricted } from './podcheck.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata');

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  Pod,
  Deployment,
  StatefulSet,
  DaemonSet,
  ReplicaSet,
  Job,
  CronJob,
};

type Obj = Record<string, any>;

function podSpecs(o: Obj): { at: string; spec: Obj; meta: Obj; job: boolean }[] {
  if (o.kind === 'List') return o.items.flatMap(podSpecs);
  if (o.kind === 'Pod') return [{ at: 'Pod', spec: o.spec, meta: o.metadata, job: false }];
  if (o.kind === 'CronJob') {
    const t = o.spec.jobTemplate.spec.template;
    return [{ at: 'CronJob', spec: t.spec, meta: t.metadata, job: true }];
  }
  if (o.spec?.template)
    return [
      { at: o.kind, spec: o.spec.template.spec, meta: o.spec.template.metadata, job: o.kind === 'Job' },
    ];
  return [];
}

function validateObject(o: Obj): void {
  if (o.kind === 'List') return o.items.forEach(validateObject);
  const Model = MODELS[o.kind];
  if (Model) new Model(o).validate();
}

const cases = readdirSync(DIR)
  .filter((f) => f.endsWith('.input.yaml'))
  .map((f) => f.replace(/\.input\.yaml$/, ''))
  .sort();

describe('golden injection', () => {
  it('has cases for every layout and kind', () => {
    expect(cases.length).toBeGreaterThanOrEqual(12);
  });

  for (const name of cases) {
    describe(name, () => {
      const input = readFileSync(path.join(DIR, `${name}.input.yaml`), 'utf8');
      const report = injectObjects(parseManifests(input), GOLDEN_SETTINGS);
      const output = renderManifests(report.objects, 'yaml');
      const goldenPath = path.join(DIR, `${name}.output.yaml`);

      it('matches the golden output', () => {
        expect(report.denied).toBeUndefined();
        if (process.env.UPDATE_GOLDEN === '1' || !existsSync(goldenPath)) writeFileSync(goldenPath, output);
        expect(output).toBe(readFileSync(goldenPath, 'utf8'));
      });

      it('is a no-op when injected again', () => {
        const again = injectObjects(parseManifests(output), GOLDEN_SETTINGS);
        expect(again.results.every((r) => r.outcome === 'skipped')).toBe(true);
        expect(renderManifests(again.objects, 'yaml')).toBe(output);
      });

      it('passes the Kubernetes schema and the API server rules', () => {
        for (const o of report.objects as Obj[]) {
          expect(() => validateObject(o)).not.toThrow();
          for (const p of podSpecs(o))
            expect(checkPodSpec(p.spec, { job: p.job }), `${name} ${p.at}`).toEqual([]);
        }
      });
    });
  }
});

describe('what the goldens show', () => {
  const load = (name: string) =>
    injectObjects(parseManifests(readFileSync(path.join(DIR, `${name}.input.yaml`), 'utf8')), GOLDEN_SETTINGS)
      .objects as Obj[];

  it('native layout: init-redirect, then the sidecar, then the user init containers', () => {
    const [pod] = load('pod-user-init');
    expect(pod.spec.initContainers.map((c: Obj) => c.name)).toEqual([
      'inferguard-init',
      'inferguard-sidecar',
      'download-weights',
    ]);
    const sidecar = pod.spec.initContainers[1];
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.startupProbe.httpGet).toEqual({ path: '/startupz', port: 15020 });
    expect(sidecar.volumeMounts).toEqual([
      { name: 'inferguard-policy', mountPath: '/etc/inferguard/policy', readOnly: true },
    ]);
  });

  it('capture "port" passes Pod Security restricted and resolves the Service names to the sidecar', () => {
    const [pod] = load('pod-capture-port');
    expect(checkRestricted(pod.spec)).toEqual([]);
    const sidecar = pod.spec.initContainers.find((c: Obj) => c.name === 'inferguard-sidecar');
    expect(sidecar.ports.filter((p: Obj) => p.name !== 'ig-admin')).toEqual([
      { name: 'http', containerPort: 15001, protocol: 'TCP' },
      { name: 'grpc-inference', containerPort: 15002, protocol: 'TCP' },
    ]);
    const model = pod.spec.containers[0];
    const names = [...pod.spec.initContainers, ...pod.spec.containers].flatMap((c: Obj) =>
      (c.ports ?? []).map((p: Obj) => p.name),
    );
    expect(new Set(names).size).toBe(names.length); // a named targetPort resolves to exactly one port
    expect(model.readinessProbe.httpGet.port).toBe(model.ports[0].name);
    expect(model.ports[0].name).toBe('http-model');
  });

  it('capture "redirect" does not pass restricted (that is what "port" is for)', () => {
    const [pod] = load('pod-basic');
    expect(
      checkRestricted({
        ...pod.spec,
        securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      }),
    ).toContain('container "inferguard-init": adds capabilities NET_ADMIN, NET_RAW');
  });

  it('the sidecar runs hardened with the args SPEC §2 names', () => {
    const [pod] = load('pod-annotations');
    const sidecar = pod.spec.initContainers.find((c: Obj) => c.name === 'inferguard-sidecar');
    expect(sidecar.args).toEqual([
      'sidecar',
      '--http',
      '0.0.0.0:15001=127.0.0.1:8000',
      '--grpc',
      '0.0.0.0:15002=127.0.0.1:8001',
      '--admin',
      '0.0.0.0:15020',
      '--policy',
      '/etc/inferguard/policy',
      '--mode',
      'monitor',
      '--fail',
      'open',
      '--log-level',
      'debug',
    ]);
    expect(sidecar.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(sidecar.resources).toEqual({
      requests: { cpu: '500m', memory: '384Mi' },
      limits: { cpu: '500m', memory: '384Mi' },
    });
    expect(sidecar.image).toBe('registry.example.com/inferguard:0.1.1');
    const init = pod.spec.initContainers[0];
    expect(init.args).toEqual(['init-redirect', '--port', '8000=15001', '--port', '8001=15002']);
    expect(init.securityContext.capabilities).toEqual({ add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
  });

  it('derives grpc from a port named h2c and ignores UDP ports', () => {
    const [pod] = load('pod-grpc-derived');
    expect(parseStatus(pod.metadata.annotations['inferguard.io/status'])?.ports).toEqual([
      '8080=http:15001',
      '8081=grpc:15002',
    ]);
  });

  it('classic layout keeps kubectl pointed at the model', () => {
    const [pod] = load('pod-classic');
    expect(pod.spec.containers.map((c: Obj) => c.name)).toEqual(['inferguard-sidecar', 'vllm']);
    expect(pod.spec.containers[0].restartPolicy).toBeUndefined();
    expect(pod.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('vllm');
  });

  it('skipped objects come out exactly as they went in', () => {
    const input = readFileSync(path.join(DIR, 'skipped.input.yaml'), 'utf8');
    const report = injectObjects(parseManifests(input), GOLDEN_SETTINGS);
    expect(report.results.map((r) => r.reason)).toEqual([
      'not_requested',
      'injection_disabled',
      'system_namespace',
      'host_network',
      'injector_namespace',
      'inject_annotation_on_workload',
    ]);
    expect(report.objects).toEqual(parseManifests(input));
    // a pod that asked for protection and did not get it is never silent
    expect(report.results.slice(2).every((r) => r.warnings.length === 1)).toBe(true);
  });

  it('re-renders when the settings change (image upgrade) and stays a no-op otherwise', () => {
    const [pod] = load('pod-capture-port');
    const upgraded = mutate(pod, { ...GOLDEN_SETTINGS, image: 'ghcr.io/inferguard/inferguard:next' });
    expect(upgraded.outcome).toBe('injected');
    const o = upgraded.object as Obj;
    const sidecars = o.spec.initContainers.filter((c: Obj) => c.name === 'inferguard-sidecar');
    expect(sidecars).toHaveLength(1);
    expect(sidecars[0].image).toBe('ghcr.io/inferguard/inferguard:next');
    // the renamed model port was restored before renaming again, not renamed twice
    expect(o.spec.containers[0].ports[0].name).toBe('http-model');
    expect(mutate(o, { ...GOLDEN_SETTINGS, image: 'ghcr.io/inferguard/inferguard:next' }).reason).toBe(
      'already_injected',
    );
  });
});
