// `inferguard inject` through the real CLI process.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../testing/cli.js';
import { parseManifests } from './manifests.js';
import { DEFAULT_SIDECAR_IMAGE, mutate } from './mutate.js';
import { GOLDEN_SETTINGS } from './testutil.js';
import { denialMessage } from './webhook.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata');
const golden = (name: string) => path.join(DIR, name);
const flags = [
  '--sidecar-image',
  GOLDEN_SETTINGS.image,
  '--otel-endpoint',
  GOLDEN_SETTINGS.otelEndpoint!,
  '--otel-protocol',
  'grpc',
];

describe('inferguard inject', () => {
  it('-f FILE prints the golden YAML', async () => {
    const r = await runCli(['inject', '-f', golden('deployment.input.yaml'), ...flags]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(readFileSync(golden('deployment.output.yaml'), 'utf8'));
  });

  it('-f - -o json reads JSON from stdin and prints JSON (a List for several objects)', async () => {
    const objects = parseManifests(readFileSync(golden('workloads.input.yaml'), 'utf8'));
    const r = await runCli(['inject', '-f', '-', '-o', 'json', ...flags], { input: JSON.stringify(objects) });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.kind).toBe('List');
    expect(out.items).toEqual(parseManifests(readFileSync(golden('workloads.output.yaml'), 'utf8')));
  });

  it('settings come from INFERGUARD_* env vars too', async () => {
    const r = await runCli(['inject', '-f', golden('pod-basic.input.yaml'), '-o', 'json'], {
      env: { INFERGUARD_SIDECAR_IMAGE: 'example/from-env:1', INFERGUARD_SIDECAR_CPU: '1' },
    });
    const pod = JSON.parse(r.stdout);
    const sidecar = pod.spec.initContainers[1];
    expect(sidecar.image).toBe('example/from-env:1');
    expect(sidecar.resources.limits.cpu).toBe('1');
    const strict = await runCli(['inject', '-f', golden('pod-annotations.input.yaml')], {
      env: { INFERGUARD_ALLOWED_IMAGE_PREFIXES: 'ghcr.io/inferguard/, registry.internal/' },
    });
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/denied: invalid_image: .*"ghcr.io\/inferguard\/", "registry.internal\/"/);
  });

  it('defaults match the chart: sidecar image, no trace export without an endpoint, chart-set capture/fail/layout', async () => {
    const plain = JSON.parse(
      (await runCli(['inject', '-f', golden('pod-basic.input.yaml'), '-o', 'json'], { env: {} })).stdout,
    );
    const sidecar = plain.spec.initContainers.find((c: { name: string }) => c.name === 'inferguard-sidecar');
    expect(sidecar.image).toBe(DEFAULT_SIDECAR_IMAGE);
    expect(sidecar.env).toContainEqual({ name: 'OTEL_TRACES_EXPORTER', value: 'none' });
    expect(sidecar.env.map((e: { name: string }) => e.name)).not.toContain('OTEL_EXPORTER_OTLP_ENDPOINT');
    expect(sidecar.args).toEqual(expect.arrayContaining(['--fail', 'closed']));
    expect(plain.spec.initContainers[0].name).toBe('inferguard-init');

    // what the chart passes: INFERGUARD_DEFAULT_* env; a pod's own annotation still wins
    const env = {
      INFERGUARD_DEFAULT_CAPTURE: 'port',
      INFERGUARD_DEFAULT_FAIL: 'open',
      INFERGUARD_DEFAULT_NATIVE_SIDECAR: 'false',
      INFERGUARD_OTEL_ENDPOINT: 'http://jaeger.inferguard.svc:4317',
    };
    const chart = JSON.parse(
      (await runCli(['inject', '-f', golden('pod-basic.input.yaml'), '-o', 'json'], { env })).stdout,
    );
    expect(chart.spec.initContainers).toBeUndefined(); // capture port: no init; classic: sidecar in containers
    const classic = chart.spec.containers[0];
    expect(classic.name).toBe('inferguard-sidecar');
    expect(classic.restartPolicy).toBeUndefined();
    expect(classic.args).toEqual(expect.arrayContaining(['--fail', 'open']));
    expect(classic.env).toContainEqual({
      name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
      value: 'http://jaeger.inferguard.svc:4317',
    });
    expect(classic.env.map((e: { name: string }) => e.name)).not.toContain('OTEL_TRACES_EXPORTER');
    const annotated = JSON.parse(
      (
        await runCli(['inject', '-f', '-', '-o', 'json', '--default-fail', 'open'], {
          input: readFileSync(golden('pod-basic.input.yaml'), 'utf8').replace(
            "inferguard.io/inject: 'true'",
            "inferguard.io/inject: 'true'\n    inferguard.io/fail: closed",
          ),
        })
      ).stdout,
    );
    expect(annotated.spec.initContainers[1].args).toEqual(expect.arrayContaining(['--fail', 'closed']));

    const bad = await runCli(['inject', '-f', golden('pod-basic.input.yaml'), '--default-capture', 'tproxy']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--default-capture: "tproxy" is not one of redirect, port');
  });

  it("a pod the webhook would deny exits 1 with the webhook's message and prints nothing", async () => {
    const input = [
      'apiVersion: v1',
      'kind: Pod',
      'metadata: { name: bad, namespace: models, annotations: { inferguard.io/inject: "true", inferguard.io/fail: sometimes } }',
      'spec: { containers: [{ name: m, image: vllm, ports: [{ containerPort: 8000 }] }] }',
    ].join('\n');
    const r = await runCli(['inject', '-f', '-'], { input });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const expected = denialMessage(mutate(parseManifests(input)[0], GOLDEN_SETTINGS));
    expect(r.stderr).toBe(`inferguard inject: Pod models/bad: denied: ${expected}\n`);
    expect(r.stderr).toContain(
      'invalid annotation inferguard.io/fail: "sometimes"; allowed: "closed" or "open"',
    );
  });

  it('a policy ConfigMap the validating webhook would reject fails the run with policy.yaml:LINE:COL', async () => {
    const input = [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata: { name: acme-chat, namespace: models, labels: { inferguard.io/policy: "true" } }',
      'data:',
      '  policy.yaml: |',
      '    apiVersion: inferguard.io/v1alpha1',
      '    kind: GuardPolicy',
      '    metadata: { name: acme-chat }',
      '    spec:',
      "      rules: [{ id: acme.x, pattern: '(a', action: block }]",
    ].join('\n');
    const r = await runCli(['inject', '-f', '-'], { input });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^inferguard inject: ConfigMap models\/acme-chat: denied: invalid_policy: policy\.yaml:5:\d+: /,
    );
  });

  it('reports skipped opt-ins on stderr, and usage errors exit 2', async () => {
    const r = await runCli(['inject', '-f', golden('skipped.input.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Pod host-net: inferguard: not injected \(host_network\)/);
    expect((await runCli(['inject'])).code).toBe(2);
    expect((await runCli(['inject', '-f', '-', '-o', 'xml'])).code).toBe(2);
    const missing = await runCli(['inject', '-f', golden('nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/ENOENT/);
    const broken = await runCli(['inject', '-f', '-'], { input: 'kind: Pod\n  bad: [indent' });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/^inferguard inject: <stdin>:\d+:\d+: /);
  });
});
