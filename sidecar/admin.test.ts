// The admin listener on a real socket, with listeners whose upstream readiness the test controls.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Listener } from './context.js';
import { startAdmin, type AdminServer, type ListenerStatus, type Phase, type PolicyStatus } from './admin.js';
import { SidecarMetrics } from './telemetry/metrics.js';

function fakeListener(port: number, ready: () => Promise<boolean>): Listener {
  return {
    address: { host: '127.0.0.1', port },
    protocol: 'http',
    upstreamReady: ready,
    close: async () => {},
  };
}

let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

async function serve(
  state: { phase: Phase; policy: PolicyStatus; listeners: ListenerStatus[] },
  metrics = new SidecarMetrics(),
) {
  admin = await startAdmin(
    { host: '127.0.0.1', port: 0 },
    {
      source: { phase: () => state.phase, policy: () => state.policy, listeners: () => state.listeners },
      metrics,
      log: pino({ level: 'silent' }),
    },
  );
  return `http://127.0.0.1:${admin.address.port}`;
}

const get = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};

/** a sidecar still loading: no policy, one HTTP listener not bound yet, upstream 127.0.0.1:8000 */
function startingState(source: string): { phase: Phase; policy: PolicyStatus; listeners: ListenerStatus[] } {
  return {
    phase: 'starting',
    policy: { loaded: false, source },
    listeners: [
      { protocol: 'http', listen: { host: '0.0.0.0', port: 0 }, upstream: { host: '127.0.0.1', port: 8000 } },
    ],
  };
}

describe('admin endpoints', () => {
  it('/readyz is 200 only when the policy is loaded, serving, and every upstream answers', async () => {
    let upstreamUp = false;
    const state = startingState('/etc/inferguard/policy.yaml');
    const base = await serve(state);
    const starting = await get(`${base}/readyz`);
    expect(starting.status).toBe(503);
    expect(JSON.parse(starting.text)).toEqual({
      ready: false,
      phase: 'starting',
      policy: { loaded: false, source: '/etc/inferguard/policy.yaml' },
      listeners: [
        {
          protocol: 'http',
          listen: '0.0.0.0:0',
          upstream: '127.0.0.1:8000',
          bound: false,
          upstreamReady: false,
        },
      ],
    });

    state.policy = {
      loaded: true,
      name: 'acme',
      hash: 'h1',
      source: state.policy.source,
      loadedAt: '2026-01-01T00:00:00.000Z',
    };
    state.listeners[0].listener = fakeListener(15002, async () => upstreamUp);
    state.phase = 'serving';
    const down = await get(`${base}/readyz`);
    expect(down.status).toBe(503);
    expect(JSON.parse(down.text).listeners[0]).toMatchObject({
      listen: '127.0.0.1:15002',
      bound: true,
      upstreamReady: false,
    });

    upstreamUp = true;
    const up = await get(`${base}/readyz`);
    expect(up.status).toBe(200);
    expect(JSON.parse(up.text)).toMatchObject({ ready: true, policy: { name: 'acme', hash: 'h1' } });

    // a failed reload is reported but does not make the sidecar unready: the last good policy is enforced
    state.policy = {
      ...state.policy,
      lastReloadError: { at: '2026-01-01T00:01:00.000Z', message: 'policy.yaml:3:1: bad' },
    };
    const degraded = await get(`${base}/readyz`);
    expect(degraded.status).toBe(200);
    expect(JSON.parse(degraded.text).policy.lastReloadError.message).toBe('policy.yaml:3:1: bad');

    state.phase = 'draining';
    expect((await get(`${base}/readyz`)).status).toBe(503);
    // liveness never fails during a drain
    expect(await get(`${base}/healthz`)).toMatchObject({
      status: 200,
      text: '{"status":"ok","phase":"draining"}\n',
    });
  });

  it('/startupz passes once the policy is loaded and listeners are bound, while the model is still down', async () => {
    // the injected startupProbe: a native sidecar must pass it before the kubelet starts the model
    let upstreamAsked = 0;
    const state = startingState('built-in default');
    const base = await serve(state);
    const loading = await get(`${base}/startupz`);
    expect(loading.status).toBe(503);
    expect(JSON.parse(loading.text)).toEqual({
      ready: false,
      phase: 'starting',
      policy: { loaded: false, source: 'built-in default' },
      listeners: [{ protocol: 'http', listen: '0.0.0.0:0', upstream: '127.0.0.1:8000', bound: false }],
    });

    // policy loaded but the listener not bound yet: still 503
    state.policy = { loaded: true, name: 'default', source: 'built-in default' };
    state.phase = 'serving';
    expect((await get(`${base}/startupz`)).status).toBe(503);

    state.listeners[0].listener = fakeListener(15001, async () => {
      upstreamAsked++;
      return false;
    });
    const up = await get(`${base}/startupz`);
    expect(up.status).toBe(200);
    expect(JSON.parse(up.text)).toMatchObject({ ready: true, listeners: [{ bound: true }] });
    expect(upstreamAsked).toBe(0);
    // readiness still waits for the model
    expect((await get(`${base}/readyz`)).status).toBe(503);
    expect(upstreamAsked).toBe(1);
  });

  it('an upstream check that hangs or throws counts as not ready, without hanging the probe', async () => {
    const state = {
      phase: 'serving' as Phase,
      policy: { loaded: true, source: 'built-in default' } as PolicyStatus,
      listeners: [
        {
          protocol: 'grpc' as const,
          listen: { host: '127.0.0.1', port: 0 },
          upstream: { host: '127.0.0.1', port: 8001 },
          listener: fakeListener(1, () => new Promise<boolean>(() => {})),
        },
        {
          protocol: 'grpc' as const,
          listen: { host: '127.0.0.1', port: 0 },
          upstream: { host: '127.0.0.1', port: 8002 },
          listener: fakeListener(2, () => Promise.reject(new Error('boom'))),
        },
      ] as ListenerStatus[],
    };
    const base = await serve(state);
    const r = await get(`${base}/readyz`);
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text).listeners.map((l: { upstreamReady: boolean }) => l.upstreamReady)).toEqual([
      false,
      false,
    ]);
  });

  it('/metrics serves Prometheus text; unknown paths 404, other methods 405', async () => {
    const metrics = new SidecarMetrics();
    metrics.setPolicy('acme', 'abc');
    metrics.requests.inc({ protocol: 'http', decision: 'block' });
    const base = await serve(
      { phase: 'serving', policy: { loaded: true, source: 'x' }, listeners: [] },
      metrics,
    );
    const m = await get(`${base}/metrics`);
    expect(m.status).toBe(200);
    expect(m.type).toContain('text/plain');
    expect(m.text).toContain('inferguard_requests_total{protocol="http",decision="block"} 1');
    expect(m.text).toContain('inferguard_policy_info{name="acme",hash="abc"} 1');
    expect((await get(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/readyz`, { method: 'POST' })).status).toBe(405);
  });
});
