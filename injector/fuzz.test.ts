// Property tests over generated pods (Istio keeps a fuzz test for its injector too): whatever the
// annotations and ports, mutate() never throws, never modifies its input, produces pods the API
// server accepts, is a no-op on its own output, and its JSON Patch reproduces its output exactly.
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { ANNOTATION } from './annotations.js';
import { mutate } from './mutate.js';
import { checkPodSpec } from './podcheck.js';
import { GOLDEN_SETTINGS } from './testutil.js';
import { admitMutation } from './webhook.js';

// mostly valid values, sometimes an invalid one, often absent
const value = (valid: string[], invalid: string[]) =>
  fc.option(
    fc.oneof(
      { arbitrary: fc.constantFrom(...valid), weight: 15 },
      { arbitrary: fc.constantFrom(...invalid), weight: 1 },
    ),
    {
      nil: undefined,
    },
  );

const annotations = fc.record(
  {
    [ANNOTATION.inject]: fc.constantFrom('true', 'true', 'true', 'false', 'yes'),
    [ANNOTATION.ports]: value(
      ['8000', '8000=http', '8000=http,8001=grpc', '8001=grpc, 8000', '9000'],
      ['8000=ws', '', '15001', 'x'],
    ),
    [ANNOTATION.capture]: value(['redirect', 'port'], ['ebpf']),
    [ANNOTATION.nativeSidecar]: value(['true', 'false'], ['on']),
    [ANNOTATION.policy]: value(['acme-chat'], ['Bad_Name']),
    [ANNOTATION.mode]: value(['enforce', 'monitor'], ['block']),
    [ANNOTATION.fail]: value(['closed', 'open'], ['maybe']),
    [ANNOTATION.cpu]: value(['100m', '2'], ['fast']),
    [ANNOTATION.memory]: value(['128Mi', '1Gi'], ['big']),
  },
  { requiredKeys: [ANNOTATION.inject] },
);

const portName = fc.constantFrom('http', 'grpc', 'h2c', 'metrics', 'grpc-inference', 'http-model', undefined);
const container = (name: string) =>
  fc.record({
    name: fc.constant(name),
    image: fc.constant('vllm/vllm-openai:v0.9.0'),
    ports: fc.uniqueArray(
      fc
        .record({ containerPort: fc.constantFrom(8000, 8001, 8080, 9090), name: portName })
        .map((p) => (p.name === undefined ? { containerPort: p.containerPort } : p)),
      { maxLength: 3, selector: (p) => p.containerPort },
    ),
    readinessProbe: fc.option(
      fc.constantFrom({ httpGet: { path: '/health', port: 8000 } }, { tcpSocket: { port: 8000 } }),
      {
        nil: undefined,
      },
    ),
  });

const pod = fc
  .record({
    annotations,
    containers: fc.tuple(container('model'), fc.option(container('helper'), { nil: undefined })),
    restartPolicy: fc.constantFrom(undefined, 'Always', 'Never', 'OnFailure'),
    userInit: fc.boolean(),
  })
  .map(({ annotations: a, containers, restartPolicy, userInit }) => {
    const cs = containers.filter((c) => c !== undefined).map((c) => JSON.parse(JSON.stringify(c)));
    // port names must be unique within a container for the input to be valid in the first place
    for (const c of cs) {
      const seen = new Set<string>();
      c.ports = c.ports.filter((p: { name?: string }) => !p.name || (!seen.has(p.name) && seen.add(p.name)));
    }
    // …and across containers, for capture "port" to be unambiguous
    if (cs[1])
      cs[1].ports = cs[1].ports.filter(
        (p: any) => !cs[0].ports.some((q: any) => q.name === p.name || q.containerPort === p.containerPort),
      );
    const spec: Record<string, unknown> = { containers: cs };
    if (restartPolicy) spec.restartPolicy = restartPolicy;
    if (userInit) spec.initContainers = [{ name: 'fetch', image: 'busybox', command: ['true'] }];
    const annotationsClean = Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined));
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'models', annotations: annotationsClean },
      spec,
    };
  });

describe('mutate on generated pods', () => {
  it('holds its invariants', () => {
    let injected = 0;
    let denied = 0;
    fc.assert(
      fc.property(pod, (input) => {
        const before = JSON.stringify(input);
        const r = mutate(input, GOLDEN_SETTINGS);
        expect(JSON.stringify(input)).toBe(before);
        if (r.outcome === 'denied') {
          denied += 1;
          expect(r.message.length).toBeGreaterThan(10);
          return;
        }
        if (r.outcome !== 'injected') return;
        injected += 1;
        const out = r.object as any;
        expect(checkPodSpec(out.spec)).toEqual([]);
        const again = mutate(out, GOLDEN_SETTINGS);
        expect(again.reason).toBe('already_injected');
        expect(again.object).toBe(out);
        // the webhook's patch reproduces the output
        const res = admitMutation(
          { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, namespace: 'models', object: input },
          GOLDEN_SETTINGS,
        );
        const ops = JSON.parse(Buffer.from(res.response.patch!, 'base64').toString());
        expect(jsonpatch.applyPatch(structuredClone(input), ops, true, false).newDocument).toEqual(out);
      }),
      { numRuns: 400, seed: 7 },
    );
    // the generator reaches both sides
    expect(injected).toBeGreaterThan(40);
    expect(denied).toBeGreaterThan(40);
  });
});
