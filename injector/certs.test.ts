import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  generateCertificates,
  loadOrCreateServingSecret,
  patchCaBundles,
  readCertDir,
  serviceDnsNames,
  watchCertDir,
  type SelfSignedOptions,
} from './certs.js';
import { FakeApiServer } from './fake-apiserver.js';
import { GOLDEN_SETTINGS, httpsRequest, waitFor } from './testutil.js';
import { createWebhookServer } from './webhook.js';

describe('generateCertificates', () => {
  it('issues a serving certificate for the Service names, signed by the CA', async () => {
    const b = await generateCertificates({ dnsNames: serviceDnsNames('inferguard-injector', 'guard') });
    const cert = new X509Certificate(b.cert);
    const ca = new X509Certificate(b.ca);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkHost('inferguard-injector.guard.svc')).toBe('inferguard-injector.guard.svc');
    expect(cert.checkHost('other.guard.svc')).toBeUndefined();
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
  });
});

describe('--self-signed against a fake API server', () => {
  let api: FakeApiServer;
  let opts: SelfSignedOptions;
  beforeAll(async () => {
    api = await new FakeApiServer().start();
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
    opts = {
      kubeConfig: kc,
      namespace: 'inferguard-system',
      secretName: 'inferguard-injector-tls',
      service: 'inferguard-injector',
      mutatingWebhookConfig: 'inferguard-injector',
      validatingWebhookConfig: 'inferguard-policy',
    };
  });
  afterAll(() => api.close());
  afterEach(() => {
    api.requests.length = 0;
  });

  it('creates the Secret once, and a second replica adopts it', async () => {
    const first = await loadOrCreateServingSecret(opts);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /api/v1/namespaces/inferguard-system/secrets/inferguard-injector-tls',
      'POST /api/v1/namespaces/inferguard-system/secrets',
    ]);
    const stored = api.secrets.get('inferguard-system/inferguard-injector-tls')!;
    expect(stored.type).toBe('kubernetes.io/tls');
    expect(Buffer.from(stored.data['ca.crt'], 'base64').toString()).toBe(first.ca);
    api.requests.length = 0;
    const second = await loadOrCreateServingSecret(opts);
    expect(second).toEqual(first);
    expect(api.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it("a replica that loses the create race (409) uses the winner's certificate", async () => {
    const o = { ...opts, secretName: 'race' };
    let winner: Record<string, string> | undefined;
    // the first POST fails with 409 after "another replica" stored its bundle
    const other = await generateCertificates({ dnsNames: serviceDnsNames(o.service, o.namespace) });
    api.failures.push({
      method: 'POST',
      pathPrefix: '/api/v1/namespaces/inferguard-system/secrets',
      status: 409,
      times: 1,
      onFail: () => {
        winner = {
          'ca.crt': Buffer.from(other.ca).toString('base64'),
          'tls.crt': Buffer.from(other.cert).toString('base64'),
          'tls.key': Buffer.from(other.key).toString('base64'),
        };
        api.secrets.set('inferguard-system/race', {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'race', resourceVersion: '900' },
          data: winner,
        });
      },
    });
    const got = await loadOrCreateServingSecret(o);
    expect(winner).toBeDefined();
    expect(got).toEqual(other);
  });

  it('replaces a Secret whose certificate is about to expire', async () => {
    const o = { ...opts, secretName: 'old' };
    const stale = await generateCertificates({
      dnsNames: serviceDnsNames(o.service, o.namespace),
      certDays: 10,
    });
    const data = { 'ca.crt': stale.ca, 'tls.crt': stale.cert, 'tls.key': stale.key };
    api.secrets.set('inferguard-system/old', {
      metadata: { name: 'old', resourceVersion: '5' },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    });
    const got = await loadOrCreateServingSecret(o);
    expect(got.cert).not.toBe(stale.cert);
    expect(api.requests.map((r) => r.method)).toEqual(['GET', 'PUT']);
  });

  it('patches caBundle on every webhook of both configurations with a JSON Patch', async () => {
    api.addWebhookConfig('mutating', 'inferguard-injector', [
      'inject.inferguard.io',
      'inject-workloads.inferguard.io',
    ]);
    api.addWebhookConfig('validating', 'inferguard-policy', ['policy.inferguard.io']);
    const bundle = await loadOrCreateServingSecret(opts);
    api.requests.length = 0;
    await patchCaBundles(opts, bundle.ca);
    const patches = api.requests.filter((r) => r.method === 'PATCH');
    expect(patches.map((p) => p.path)).toEqual([
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/inferguard-injector',
      '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/inferguard-policy',
    ]);
    expect(patches.every((p) => p.contentType === 'application/json-patch+json')).toBe(true);
    const ca64 = Buffer.from(bundle.ca).toString('base64');
    expect(patches[0].body).toEqual([
      { op: 'test', path: '/webhooks/0/name', value: 'inject.inferguard.io' },
      { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: ca64 },
      { op: 'test', path: '/webhooks/1/name', value: 'inject-workloads.inferguard.io' },
      { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: ca64 },
    ]);
    expect(
      api.mutating.get('inferguard-injector')!.webhooks.map((w: any) => w.clientConfig.caBundle),
    ).toEqual([ca64, ca64]);
    expect(api.validating.get('inferguard-policy')!.webhooks[0].clientConfig.caBundle).toBe(ca64);
    // already up to date: read, no write
    api.requests.length = 0;
    await patchCaBundles(opts, bundle.ca);
    expect(api.requests.map((r) => r.method)).toEqual(['GET', 'GET']);
  });

  it('a missing webhook configuration is an error (so the injector stays unready)', async () => {
    await expect(patchCaBundles({ ...opts, mutatingWebhookConfig: 'nope' }, 'x')).rejects.toThrow();
  });
});

describe('--cert-dir reload', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('serves the new certificate to new connections after the files change, and ignores a broken pair', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ig-certs-'));
    const a = await generateCertificates({ dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    const b = await generateCertificates({ dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    writeFileSync(path.join(dir, 'tls.crt'), a.cert);
    writeFileSync(path.join(dir, 'tls.key'), a.key);
    const hook = createWebhookServer({ settings: GOLDEN_SETTINGS, tls: readCertDir(dir) });
    await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
    const port = (hook.server.address() as AddressInfo).port;
    const errors: string[] = [];
    const w = watchCertDir(
      dir,
      readCertDir(dir),
      (pair) => hook.setCertificate(pair),
      (e) => errors.push(e.message),
      200,
    );
    try {
      expect((await httpsRequest(port, a.ca, { path: '/healthz' })).status).toBe(200);
      await expect(httpsRequest(port, b.ca, { path: '/healthz' })).rejects.toThrow();

      // a mismatched pair (new cert, old key) is refused; the old certificate keeps serving
      writeFileSync(path.join(dir, 'tls.crt'), b.cert);
      await waitFor(
        async () => (errors.some((e) => /does not belong/.test(e)) ? true : undefined),
        'mismatch error',
      );
      expect((await httpsRequest(port, a.ca, { path: '/healthz' })).status).toBe(200);

      // the kubelet way: write elsewhere, then swap in
      writeFileSync(path.join(dir, 'tls.key.new'), b.key);
      renameSync(path.join(dir, 'tls.key.new'), path.join(dir, 'tls.key'));
      await waitFor(
        async () =>
          (await httpsRequest(port, b.ca, { path: '/healthz' })).status === 200 ? true : undefined,
        'reload',
      );
    } finally {
      w.close();
      hook.server.close();
      hook.server.closeAllConnections();
    }
  });

  it('explains what is wrong with a directory', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ig-certs-'));
    writeFileSync(path.join(dir, 'tls.crt'), 'nope');
    writeFileSync(path.join(dir, 'tls.key'), 'nope');
    expect(() => readCertDir(dir)).toThrow(/tls.crt: not a PEM certificate/);
  });
});
