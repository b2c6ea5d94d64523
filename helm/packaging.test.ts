// Static checks of what ships around the chart: the two Dockerfiles, .dockerignore, the example
// workload and e2e/kind.sh. No Docker daemon or cluster here, so these read the files the way
// `docker build` and the API server would trip over them.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Service } from 'kubernetes-models/v1';
import { runCli } from '../testing/cli.js';
import { dockerignore, parseDockerfile, read, ROOT } from './dockerfile.js';

const ignored = dockerignore();

for (const file of ['Dockerfile.sidecar', 'Dockerfile.injector']) {
  describe(file, () => {
    const { stages } = parseDockerfile(read(file));
    const final = stages.at(-1)!;

    it('is multi-stage on a pinned official Node LTS slim image', () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
      for (const s of stages)
        expect(s.from).toMatch(/^node:(20|22)(\.\d+){0,2}-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
      expect(stages.slice(0, -1).every((s) => s.name)).toBe(true);
    });

    it('runs as a numeric non-root USER in the final stage', () => {
      const users = final.steps.filter((s) => s.op === 'USER');
      expect(users).toHaveLength(1);
      const [uid, gid] = users[0].args.split(':');
      expect(Number(uid)).toBeGreaterThan(0);
      if (gid !== undefined) expect(Number(gid)).toBeGreaterThan(0);
      // nothing after USER may run commands (they would run as that user and fail, or hide a root step)
      const afterUser = final.steps.slice(final.steps.indexOf(users[0]) + 1);
      expect(afterUser.filter((s) => s.op === 'RUN')).toEqual([]);
    });

    it('copies only built output, production dependencies, package.json and protos into the final stage', () => {
      const copies = final.steps.filter((s) => s.op === 'COPY' || s.op === 'ADD');
      expect(copies.every((c) => c.op === 'COPY')).toBe(true);
      const sources = copies.map((c) => c.args.split(/\s+/).slice(0, -1).join(' '));
      const allowed = [
        /^--from=prod-deps \/app\/node_modules$/,
        /^--from=build \/src\/dist$/,
        /^package\.json$/,
        /^proto$/,
      ];
      for (const s of sources)
        expect(
          allowed.some((re) => re.test(s)),
          s,
        ).toBe(true);
      expect(sources).toContain('--from=build /src/dist');
      expect(sources).toContain('--from=prod-deps /app/node_modules');
      const prod = stages.find((s) => s.name === 'prod-deps')!;
      expect(prod.steps.some((s) => s.op === 'RUN' && /npm ci --omit=dev/.test(s.args))).toBe(true);
      // the final image has no npm ci of its own, and no dev toolchain
      expect(final.steps.some((s) => s.op === 'RUN' && /npm|g\+\+|make/.test(s.args))).toBe(false);
    });

    it('never copies the whole context; every copied path exists and survives .dockerignore', () => {
      for (const stage of stages) {
        for (const step of stage.steps.filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))) {
          const parts = step.args.split(/\s+/);
          for (const src of parts.slice(0, -1)) {
            expect(src, `${stage.name ?? 'final'}: COPY ${src}`).not.toMatch(/^\.\/?$/);
            expect(existsSync(path.join(ROOT, src)), `${src} exists`).toBe(true);
            expect(ignored(src), `${src} is not excluded by .dockerignore`).toBe(false);
          }
        }
      }
    });

    it('builds with the package scripts and starts the bin', () => {
      const build = stages.find((s) => s.name === 'build')!;
      expect(build.steps.some((s) => s.op === 'RUN' && s.args === 'npm run build')).toBe(true);
      const pkg = JSON.parse(read('package.json'));
      expect(pkg.bin.inferguard).toBe('dist/cli.js');
      // the injector starts the sidecar and init containers with command [inferguard]: it must be on PATH
      expect(read('injector/mutate.ts')).toContain("command: ['inferguard']");
      const entry = final.steps.find((s) => s.op === 'ENTRYPOINT')!;
      expect(JSON.parse(entry.args)).toEqual(['inferguard']);
      expect(
        final.steps.some(
          (s) =>
            s.op === 'RUN' &&
            s.args.includes('chmod 0755 /app/dist/cli.js') &&
            s.args.includes('ln -s /app/dist/cli.js /usr/local/bin/inferguard'),
        ),
      ).toBe(true);
      expect(read('cli.ts').startsWith('#!/usr/bin/env node\n')).toBe(true);
    });
  });
}

describe('images', () => {
  it('the sidecar image carries iptables (init-redirect runs from it); the injector image does not', () => {
    const sidecar = parseDockerfile(read('Dockerfile.sidecar')).stages.at(-1)!;
    const injector = parseDockerfile(read('Dockerfile.injector')).stages.at(-1)!;
    expect(sidecar.steps.some((s) => s.op === 'RUN' && /apt-get install .*\biptables\b/.test(s.args))).toBe(
      true,
    );
    expect(injector.steps.some((s) => /iptables/.test(s.args))).toBe(false);
    expect(JSON.parse(sidecar.steps.find((s) => s.op === 'CMD')!.args)).toEqual(['sidecar']);
    expect(JSON.parse(injector.steps.find((s) => s.op === 'CMD')!.args)).toEqual(['injector']);
  });

  it('.dockerignore keeps node_modules, git, tests and build output out of the context', () => {
    for (const p of [
      'node_modules',
      'node_modules/re2/build/x.node',
      '.git',
      '.git/HEAD',
      'dist',
      'policy/load.test.ts',
      'policy/packs/packs.test.ts',
      'injector/testdata/deployment.input.yaml',
      'e2e/kind.sh',
      'helm/inferguard/values.yaml',
    ]) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of [
      'package.json',
      'package-lock.json',
      'policy/load.ts',
      'proto/inference/grpc_service.proto',
      'testing/fake-vllm.ts',
    ]) {
      expect(ignored(p), p).toBe(false);
    }
  });

  it('the build copies every run-time asset into dist/ (the images ship dist/, not the sources)', () => {
    const copy = read('scripts/copy-assets.mjs');
    // .proto files (gRPC codec, OTLP receiver), the built-in default policy and the rule packs
    for (const asset of ['proto', 'policy/default-policy.yaml', 'policy/packs']) {
      expect(copy, asset).toContain(`'${asset}'`);
      expect(existsSync(path.join(ROOT, asset)), asset).toBe(true);
    }
    expect(read('policy/load.ts')).toContain("'default-policy.yaml'");
    const build = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8'));
    expect(build.include).toEqual(
      expect.arrayContaining(['cli.ts', 'policy', 'sidecar', 'injector', 'testing/fake-*.ts']),
    );
  });
});

describe('helm/examples/vllm.yaml', () => {
  const docs = parseAllDocuments(read('helm/examples/vllm.yaml')).map((d) => d.toJS());

  it('is a valid Namespace, policy ConfigMap, Deployment and Service', () => {
    expect(docs.map((d) => d.kind)).toEqual(['Namespace', 'ConfigMap', 'Deployment', 'Service']);
    new Namespace(docs[0]).validate();
    new ConfigMap(docs[1]).validate();
    new Deployment(docs[2]).validate();
    new Service(docs[3]).validate();
  });

  it('its policy is valid, and allows the readiness probe the sidecar sees in redirect mode', async () => {
    const [, cm, deploy] = docs;
    expect(cm.metadata.labels['inferguard.io/policy']).toBe('true');
    expect(deploy.spec.template.metadata.annotations['inferguard.io/policy']).toBe(cm.metadata.name);
    const dir = mkdtempSync(path.join(tmpdir(), 'ig-example-'));
    try {
      writeFileSync(path.join(dir, 'policy.yaml'), cm.data['policy.yaml']);
      const r = await runCli(['policy', 'validate', path.join(dir, 'policy.yaml')]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const probe = deploy.spec.template.spec.containers[0].readinessProbe.httpGet;
    expect(parse(cm.data['policy.yaml']).spec.http.allowPaths).toContain(`GET ${probe.path}`);
    // and the injector accepts the example as it is
    const r = await runCli(['inject', '-f', path.join(ROOT, 'helm/examples/vllm.yaml')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('inferguard-sidecar');
  });

  it('opts in by namespace label and pod annotation, and the Service targets the model port by name', () => {
    const [ns, , deploy, svc] = docs;
    expect(ns.metadata.labels['inferguard.io/injection']).toBe('enabled');
    const annotations = deploy.spec.template.metadata.annotations;
    expect(annotations['inferguard.io/inject']).toBe('true');
    expect(annotations['inferguard.io/ports']).toBe('8000=http');
    const port = deploy.spec.template.spec.containers[0].ports[0];
    expect(port).toEqual({ name: 'http', containerPort: 8000 });
    expect(svc.spec.ports[0].targetPort).toBe('http');
    expect(svc.spec.selector).toEqual(deploy.spec.selector.matchLabels);
  });
});

describe('e2e/kind.sh', () => {
  const script = path.join(ROOT, 'e2e', 'kind.sh');

  it('is executable and strict', () => {
    expect(statSync(script).mode & 0o111).not.toBe(0);
    const src = read('e2e/kind.sh');
    expect(src.startsWith('#!/usr/bin/env bash\n')).toBe(true);
    expect(src).toContain('set -euo pipefail');
    expect(src).toContain('/api/v3/traces?query.service_name=inferguard-sidecar');
    expect(src).toContain('jaeger.enabled=true');
  });

  it('deploys a stub model that the injector accepts and injects (checked with `inferguard inject`)', async () => {
    const src = read('e2e/kind.sh');
    const manifest = /kubectl apply -f - <<EOF\n([\s\S]*?)\nEOF\n/
      .exec(src)![1]
      .replaceAll('$APP_NS', 'inferguard-demo')
      .replaceAll('$TAG', 'test');
    const r = await runCli(
      ['inject', '-f', '-', '-o', 'json', '--sidecar-image', 'inferguard/sidecar:test'],
      {
        input: manifest,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    const docs: any[] = Array.isArray(out) ? out : out.kind === 'List' ? out.items : [out];
    const deploy = docs.find((d) => d.kind === 'Deployment');
    new Deployment(deploy).validate();
    const pod = deploy.spec.template.spec;
    const names = [...(pod.initContainers ?? []), ...pod.containers].map((c: any) => c.name);
    expect(names).toEqual(expect.arrayContaining(['inferguard-sidecar', 'model']));
    expect(deploy.spec.template.metadata.annotations['inferguard.io/status']).toBeTruthy();
    // the stub runs the built fake from the sidecar image, as the kind script builds it
    expect(pod.containers.find((c: any) => c.name === 'model').command).toEqual([
      'node',
      '/app/dist/testing/fake-vllm.js',
    ]);
    expect(existsSync(path.join(ROOT, 'testing', 'fake-vllm.ts'))).toBe(true);
  });

  it('passes shellcheck (bash -n where shellcheck is not installed)', () => {
    const hasShellcheck = spawnSync('shellcheck', ['--version']).status === 0;
    const [cmd, args] = hasShellcheck ? ['shellcheck', ['--shell=bash', script]] : ['bash', ['-n', script]];
    // execFileSync throws with the linter's findings in the message when it exits non-zero
    expect(() => execFileSync(cmd, args, { encoding: 'utf8', stdio: 'pipe' })).not.toThrow();
  });
});
