// `inferguard injector` as a real process: certificates from a directory, or self-signed against a
// fake API server (ready only once the caBundle patch went through).
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnCli, runCli } from '../testing/cli.js';
import { generateCertificates } from './certs.js';
import { FakeApiServer } from './fake-apiserver.js';
import { httpsRequest, podReview, waitFor } from './testutil.js';
import { parseListen } from './main.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

/** start the injector, return its port once it logs "injector listening" */
function start(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; port: number; logs: () => string }> {
  const child = spawnCli(['injector', '--listen', '127.0.0.1:0', ...args], { env });
  cleanup.push(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return waitFor(
    async () => {
      const line = out.split('\n').find((l) => l.includes('injector listening'));
      if (!line) return undefined;
      const port = Number(String(JSON.parse(line).listen).split(':').pop());
      return { child, port, logs: () => out };
    },
    'the injector to listen',
    25_000,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\n${out}`);
  });
}

describe('inferguard injector', () => {
  it('serves /mutate with certificates from --cert-dir', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ig-main-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const certs = await generateCertificates({ dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    writeFileSync(path.join(dir, 'tls.crt'), certs.cert);
    writeFileSync(path.join(dir, 'tls.key'), certs.key);
    const { port, child } = await start(['--cert-dir', dir, '--sidecar-image', 'example/ig:1']);
    expect((await httpsRequest(port, certs.ca, { path: '/readyz' })).status).toBe(200);
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', annotations: { 'inferguard.io/inject': 'true' } },
      spec: { containers: [{ name: 'm', image: 'vllm', ports: [{ containerPort: 8000 }] }] },
    };
    const r = await httpsRequest(port, certs.ca, { method: 'POST', path: '/mutate', body: podReview(pod) });
    const ops = JSON.parse(Buffer.from(JSON.parse(r.body).response.patch, 'base64').toString());
    expect(JSON.stringify(ops)).toContain('example/ig:1');
    const metrics = (await httpsRequest(port, certs.ca, { path: '/metrics' })).body;
    const expiry = new Date(new X509Certificate(certs.cert).validTo).getTime() / 1000;
    expect(metrics).toContain(`inferguard_injector_certificate_expiry_timestamp_seconds ${expiry}`);
    expect(metrics).toContain('inferguard_injector_ready 1');
    // SIGTERM: stops serving and exits on its own, cleanly
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('--self-signed: stores the certificate in a Secret, patches caBundle, and is ready only after the patch', async () => {
    const api = await new FakeApiServer().start();
    cleanup.push(() => api.close());
    api.addWebhookConfig('mutating', 'inferguard-injector', ['inject.inferguard.io']);
    api.addWebhookConfig('validating', 'inferguard-policy', ['policy.inferguard.io']);
    // the API server refuses the first two patches: the injector must retry and stay unready meanwhile
    api.failures.push({
      method: 'PATCH',
      pathPrefix: '/apis/admissionregistration.k8s.io/v1/mutating',
      status: 500,
      times: 2,
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'ig-kube-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'config'), api.kubeconfig());

    const { port } = await start(
      [
        '--self-signed',
        '--webhook-config',
        'inferguard-injector',
        '--validating-webhook-config',
        'inferguard-policy',
        '--namespace',
        'guard',
      ],
      { KUBECONFIG: path.join(dir, 'config'), KUBERNETES_SERVICE_HOST: '' },
    );
    const secret = api.secrets.get('guard/inferguard-injector-tls');
    expect(secret).toBeDefined();
    const ca = Buffer.from(secret!.data['ca.crt'], 'base64').toString();
    const servername = 'inferguard-injector.guard.svc';
    const ready = async () => (await httpsRequest(port, ca, { path: '/readyz', servername })).status;

    expect(await ready()).toBe(503);
    await waitFor(async () => ((await ready()) === 200 ? true : undefined), 'ready', 15_000);
    const caBundle = Buffer.from(ca).toString('base64');
    expect(api.mutating.get('inferguard-injector')!.webhooks[0].clientConfig.caBundle).toBe(caBundle);
    expect(api.validating.get('inferguard-policy')!.webhooks[0].clientConfig.caBundle).toBe(caBundle);
    expect(api.requests.filter((r) => r.method === 'PATCH').length).toBeGreaterThanOrEqual(4); // 2 refused + 2 applied
  });

  it('refuses a start without certificates, with a usage error', async () => {
    const r = await runCli(['injector']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exactly one of --cert-dir DIR or --self-signed/);
  });
});

describe('parseListen', () => {
  it('reads :port, host:port and [v6]:port', () => {
    expect(parseListen(':8443')).toEqual({ host: undefined, port: 8443 });
    expect(parseListen('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListen('[::1]:9443')).toEqual({ host: '::1', port: 9443 });
    expect(() => parseListen('8443')).toThrow(/not \[host\]:port/);
  });
});
