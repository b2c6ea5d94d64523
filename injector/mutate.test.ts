import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, DENY_REASONS, mutate, renamedPortName, type InjectorSettings } from './mutate.js';

const S: InjectorSettings = { ...DEFAULT_SETTINGS };

function pod(annotations: Record<string, unknown>, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'p',
      namespace: 'models',
      annotations: { 'inferguard.io/inject': 'true', ...annotations },
    },
    spec: {
      containers: [{ name: 'm', image: 'vllm', ports: [{ name: 'http', containerPort: 8000 }] }],
      ...spec,
    },
  };
}

describe('denials name the annotation and the allowed values', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>, string, RegExp][] = [
    [
      'inject',
      { 'inferguard.io/inject': 'yes' },
      {},
      'invalid_inject',
      /inferguard.io\/inject: "yes"; allowed: "true" or "false"/,
    ],
    [
      'capture',
      { 'inferguard.io/capture': 'iptables' },
      {},
      'invalid_capture',
      /inferguard.io\/capture: "iptables"; allowed: "redirect" or "port"/,
    ],
    ['mode', { 'inferguard.io/mode': 'block' }, {}, 'invalid_mode', /"enforce" or "monitor"/],
    ['fail', { 'inferguard.io/fail': 'shut' }, {}, 'invalid_fail', /"closed" or "open"/],
    [
      'native-sidecar',
      { 'inferguard.io/native-sidecar': 'yes' },
      {},
      'invalid_native_sidecar',
      /native-sidecar: "yes"/,
    ],
    [
      'ports protocol',
      { 'inferguard.io/ports': '8000=ws' },
      {},
      'invalid_ports',
      /unknown protocol "ws".*allowed: comma-separated PORT=PROTOCOL/,
    ],
    ['ports range', { 'inferguard.io/ports': '70000=http' }, {}, 'invalid_ports', /bad entry "70000=http"/],
    [
      'ports twice',
      { 'inferguard.io/ports': '8000,8000=grpc' },
      {},
      'invalid_ports',
      /port 8000 listed twice/,
    ],
    ['ports empty', { 'inferguard.io/ports': '' }, {}, 'invalid_ports', /empty/],
    ['policy', { 'inferguard.io/policy': 'Acme_Chat' }, {}, 'invalid_policy', /ConfigMap/],
    ['cpu', { 'inferguard.io/cpu': 'lots' }, {}, 'invalid_cpu', /CPU quantity/],
    ['memory', { 'inferguard.io/memory': '0' }, {}, 'invalid_memory', /memory quantity/],
    ['log-level', { 'inferguard.io/log-level': 'loud' }, {}, 'invalid_log_level', /"trace", "debug"/],
    ['image', { 'inferguard.io/image': 'a b' }, {}, 'invalid_image', /without whitespace/],
    [
      'typo',
      { 'inferguard.io/capure': 'port' },
      {},
      'unknown_annotation',
      /unknown annotation inferguard.io\/capure; known: /,
    ],
    ['not a string', { 'inferguard.io/native-sidecar': false }, {}, 'malformed_object', /must be a string/],
    [
      'no ports',
      {},
      { containers: [{ name: 'm', image: 'x' }] },
      'no_model_ports',
      /set inferguard.io\/ports/,
    ],
    [
      'listener collision',
      { 'inferguard.io/ports': '15001' },
      {},
      'port_conflict',
      /model port 15001 collides/,
    ],
    [
      'declared admin port',
      { 'inferguard.io/ports': '8000' },
      { containers: [{ name: 'm', image: 'x', ports: [{ containerPort: 8000 }, { containerPort: 15020 }] }] },
      'port_conflict',
      /declares port 15020/,
    ],
    [
      'port capture unnamed',
      { 'inferguard.io/capture': 'port' },
      { containers: [{ name: 'm', image: 'x', ports: [{ containerPort: 8000 }] }] },
      'unnamed_model_port',
      /containerPort 8000 of container "m" to have a name/,
    ],
    [
      'port capture undeclared',
      { 'inferguard.io/capture': 'port', 'inferguard.io/ports': '9000' },
      {},
      'undeclared_model_port',
      /model port 9000 declared/,
    ],
    [
      'classic in a Job pod',
      { 'inferguard.io/native-sidecar': 'false' },
      { restartPolicy: 'Never' },
      'classic_sidecar_blocks_completion',
      /would never complete/,
    ],
  ];
  for (const [name, annotations, spec, reason, message] of cases) {
    it(name, () => {
      const r = mutate(pod(annotations, spec), S);
      expect(r.outcome).toBe('denied');
      expect(r.reason).toBe(reason);
      expect(r.message).toMatch(message);
      expect(Object.keys(DENY_REASONS)).toContain(r.reason);
    });
  }

  it('an image outside the allowed prefixes is denied', () => {
    const strict = { ...S, allowedImagePrefixes: ['ghcr.io/inferguard/', 'registry.example.com/guard/'] };
    const r = mutate(pod({ 'inferguard.io/image': 'docker.io/evil/noop:1' }), strict);
    expect(r).toMatchObject({ outcome: 'denied', reason: 'invalid_image' });
    expect(r.message).toBe(
      'invalid annotation inferguard.io/image: "docker.io/evil/noop:1" (this injector only allows images starting with "ghcr.io/inferguard/", "registry.example.com/guard/")',
    );
    expect(
      mutate(pod({ 'inferguard.io/image': 'ghcr.io/inferguard/inferguard:0.2.0' }), strict).outcome,
    ).toBe('injected');
  });

  it('a malformed object is denied, never thrown', () => {
    for (const bad of [
      null,
      'text',
      { kind: 'Pod' },
      { kind: 'Pod', spec: { containers: 'x' } },
      { kind: 'Deployment', spec: {} },
    ]) {
      const r = mutate(bad, S);
      expect(r.outcome).toBe('denied');
      expect(r.reason).toBe('malformed_object');
    }
  });

  it('a List is denied as a whole when one item is, naming it', () => {
    const r = mutate(
      { apiVersion: 'v1', kind: 'List', items: [pod({}), pod({ 'inferguard.io/mode': 'x' })] },
      S,
    );
    expect(r.outcome).toBe('denied');
    expect(r.message).toMatch(/^Pod models\/p: invalid annotation inferguard.io\/mode/);
  });
});

describe('mutate', () => {
  it('never modifies its input', () => {
    const input = pod({ 'inferguard.io/capture': 'port' });
    const copy = structuredClone(input);
    expect(mutate(input, S).outcome).toBe('injected');
    expect(input).toEqual(copy);
  });

  it('sizes the V8 heap to a memory limit other than the image default, and leaves the default alone', () => {
    type Env = { name: string; value?: string }[];
    const nodeOptions = (annotations: Record<string, unknown>) => {
      const out = mutate(pod(annotations), S).object as {
        spec: { initContainers?: { name: string; env: Env }[]; containers: { name: string; env?: Env }[] };
      };
      const sidecar = [...(out.spec.initContainers ?? []), ...out.spec.containers].find(
        (c) => c.name === 'inferguard-sidecar',
      );
      expect(sidecar).toBeDefined();
      return sidecar!.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
    };
    // 256Mi: the image's NODE_OPTIONS (128 MiB old space) apply
    expect(nodeOptions({})).toBeUndefined();
    expect(nodeOptions({ 'inferguard.io/memory': '256Mi' })).toBeUndefined();
    expect(nodeOptions({ 'inferguard.io/memory': '512Mi' })).toBe(
      '--max-old-space-size=416 --max-semi-space-size=4',
    );
    expect(nodeOptions({ 'inferguard.io/memory': '1Gi' })).toBe(
      '--max-old-space-size=928 --max-semi-space-size=4',
    );
    // decimal units and a limit too small for the heap: never below 64 MiB
    expect(nodeOptions({ 'inferguard.io/memory': '300M' })).toBe(
      '--max-old-space-size=190 --max-semi-space-size=4',
    );
    expect(nodeOptions({ 'inferguard.io/memory': '128Mi' })).toBe(
      '--max-old-space-size=64 --max-semi-space-size=4',
    );
  });

  it('uses the request namespace over metadata (pods from controllers have none)', () => {
    const p = pod({});
    delete (p.metadata as { namespace?: string }).namespace;
    expect(mutate(p, S, { namespace: 'kube-system' }).reason).toBe('system_namespace');
    expect(mutate(p, { ...S, injectorNamespace: 'guard' }, { namespace: 'guard' }).reason).toBe(
      'injector_namespace',
    );
    expect(mutate(p, S, { namespace: 'models' }).reason).toBe('injected');
  });

  it('passes other kinds through untouched', () => {
    const svc = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 's' },
      spec: { ports: [{ port: 80 }] },
    };
    const r = mutate(svc, S);
    expect(r).toMatchObject({ outcome: 'skipped', reason: 'unsupported_kind' });
    expect(r.object).toBe(svc);
  });

  it('a garbled status annotation does not stop re-injection, and the result has one sidecar', () => {
    const once = mutate(pod({}), S).object as any;
    once.metadata.annotations['inferguard.io/status'] = '{not json';
    const again = mutate(once, S).object as any;
    expect(again.spec.initContainers.map((c: any) => c.name)).toEqual([
      'inferguard-init',
      'inferguard-sidecar',
    ]);
    expect(mutate(again, S).reason).toBe('already_injected');
  });

  it('a copied status annotation does not stand in for the sidecar', () => {
    const once = mutate(pod({ 'inferguard.io/policy': 'acme' }), S).object as any;
    const forged = structuredClone(once);
    delete forged.spec.initContainers; // status kept, guard removed
    const r = mutate(forged, S);
    expect(r.outcome).toBe('injected');
    expect(r.object).toEqual(once);
    const weakened = structuredClone(once);
    weakened.spec.initContainers[1].args.push('--mode', 'monitor');
    expect(mutate(weakened, S).object).toEqual(once);
    const unmounted = structuredClone(once);
    unmounted.spec.volumes[0].configMap.name = 'other';
    expect(mutate(unmounted, S).object).toEqual(once);
  });

  it('stays a no-op after the API server re-serialises and defaults the pod', () => {
    const once = mutate(pod({ 'inferguard.io/policy': 'acme' }), S).object as any;
    const stored = structuredClone(once);
    const sidecar = stored.spec.initContainers[1];
    // Go field order, defaulted fields
    sidecar.securityContext = Object.fromEntries(Object.entries(sidecar.securityContext).reverse());
    sidecar.terminationMessagePath = '/dev/termination-log';
    sidecar.readinessProbe.httpGet.scheme = 'HTTP';
    stored.spec.volumes.find((v: any) => v.name === 'inferguard-policy').configMap.defaultMode = 420;
    const r = mutate(stored, S);
    expect(r.reason).toBe('already_injected');
    expect(r.object).toBe(stored);
  });

  it('another webhook changing our container later is left alone (reinvocation does not fight)', () => {
    const once = mutate(pod({}), S).object as any;
    once.spec.initContainers[1].env.push({ name: 'VAULT_ADDR', value: 'https://vault' });
    const again = mutate(once, S);
    expect(again.reason).toBe('already_injected');
    expect(again.object).toBe(once);
  });
});

describe('probes on model ports with capture "redirect"', () => {
  const spec = {
    containers: [
      {
        name: 'm',
        image: 'vllm',
        ports: [
          { name: 'http', containerPort: 8000 },
          { name: 'metrics', containerPort: 9090 },
        ],
        readinessProbe: { httpGet: { path: '/health', port: 'http' } },
        livenessProbe: { httpGet: { path: '/metrics', port: 9090 } },
        startupProbe: { grpc: { port: 8000 } },
      },
    ],
  };

  const sidecarArgs = (o: unknown): string[] =>
    (o as { spec: { initContainers: { name: string; args: string[] }[] } }).spec.initContainers.find(
      (c) => c.name === 'inferguard-sidecar',
    )!.args;

  it('passes the GET probe paths on HTTP model ports to the sidecar as --allow-path; warns about the rest', () => {
    const r = mutate(pod({ 'inferguard.io/ports': '8000' }, spec), S);
    expect(r.outcome).toBe('injected');
    // /metrics probes port 9090, which is not protected: not allowed, nothing to warn about
    const args = sidecarArgs(r.object);
    expect(args.filter((_, i) => args[i - 1] === '--allow-path')).toEqual(['GET /health']);
    expect(r.warnings).toEqual([
      expect.stringMatching(
        /^inferguard: m.startupProbe gRPC health check on model port 8000 .*\/grpc.health.v1.Health\/Check/,
      ),
    ]);
  });

  it('an HTTPS probe, a probe with "*" in its path or on a gRPC model port is not allowed, and warned about', () => {
    const probes = {
      containers: [
        {
          name: 'm',
          image: 'vllm',
          ports: [{ name: 'http', containerPort: 8000 }],
          readinessProbe: { httpGet: { path: '/ready?full=1', port: 8000 } },
          livenessProbe: { httpGet: { path: '/health', port: 8000, scheme: 'HTTPS' } },
          startupProbe: { httpGet: { path: '/v1/*', port: 8001 } },
        },
      ],
    };
    const r = mutate(pod({ 'inferguard.io/ports': '8000=http,8001=grpc' }, probes), S);
    const args = sidecarArgs(r.object);
    expect(args.filter((_, i) => args[i - 1] === '--allow-path')).toEqual(['GET /ready']);
    expect(r.warnings).toEqual([
      'inferguard: m.startupProbe GET /v1/* on model port 8001 is redirected through the sidecar and not passed automatically (its path cannot be written as an exact --allow-path); use capture "port" or the probe fails',
      'inferguard: m.livenessProbe GET /health on model port 8000 is redirected through the sidecar and not passed automatically (an HTTPS probe, which the sidecar cannot terminate); use capture "port" or the probe fails',
    ]);
  });

  it('says nothing and allows nothing with capture "port" (renamed ports keep probes on the model)', () => {
    const r = mutate(pod({ 'inferguard.io/ports': '8000', 'inferguard.io/capture': 'port' }, spec), S);
    expect(r.warnings).toEqual([]);
    expect(sidecarArgs(r.object)).not.toContain('--allow-path');
  });
});

describe('renamedPortName', () => {
  it('stays a valid IANA service name and unique', () => {
    expect(renamedPortName('http', new Set())).toBe('http-model');
    expect(renamedPortName('grpc-inference', new Set())).toBe('grpc-infe-model');
    expect(renamedPortName('abcdefgh-xyz', new Set())).toBe('abcdefgh-model');
    expect(renamedPortName('http', new Set(['http-model']))).toBe('http-m2');
    for (const n of ['a', 'h2c', 'very-long-name1', 'x-y-z-w-v-u-t-s']) {
      expect(renamedPortName(n, new Set())).toMatch(/^(?=.{1,15}$)[a-z0-9]+(-[a-z0-9]+)*$/);
    }
  });
});
