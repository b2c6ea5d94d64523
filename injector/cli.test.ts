// `inferguard inject` through the real CLI process.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../testing/cli.js';
import { parseManifests } from './manifests.js';
import { mutate } from './mutate.js';
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
