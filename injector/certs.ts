// Serving certificates for the webhook, two ways:
//  - --cert-dir: tls.crt/tls.key as cert-manager (or any Secret volume) writes them, re-read when the
//    directory changes (kubelet swaps a ..data symlink, so we watch the directory and also poll);
//    a half-written or mismatched pair is ignored and the previous one kept.
//  - --self-signed: one CA + serving certificate shared by every replica through a Secret (create,
//    or adopt what another replica created: first writer wins on 409), then the caBundle of the
//    Mutating/ValidatingWebhookConfiguration is patched. The server reports ready only after the
//    patch succeeded, so the API server never calls a replica it cannot verify (vault-k8s #98, #301).
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
// @peculiar/x509 resolves its ASN.1 helpers through tsyringe, which needs the Reflect metadata polyfill
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type KeyPair = webcrypto.CryptoKeyPair;

export interface CertPair {
  cert: string;
  key: string;
}
export interface CertBundle extends CertPair {
  /** PEM of the CA that signed `cert` (the caBundle) */
  ca: string;
}

// ---------------------------------------------------------------------------------------------
// --cert-dir

/** reads and checks DIR/tls.crt + DIR/tls.key; throws a clear error when unusable */
export function readCertDir(dir: string): CertPair & { notAfter: Date } {
  const cert = readFileSync(path.join(dir, 'tls.crt'), 'utf8');
  const key = readFileSync(path.join(dir, 'tls.key'), 'utf8');
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${dir}/tls.crt: not a PEM certificate (${(err as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`${dir}/tls.key: not a PEM private key (${(err as Error).message})`);
  }
  if (!x.checkPrivateKey(privateKey)) throw new Error(`${dir}: tls.key does not belong to tls.crt`);
  return { cert, key, notAfter: new Date(x.validTo) };
}

export interface CertWatcher {
  close(): void;
}

/**
 * Calls onChange with the new pair whenever DIR's tls.crt/tls.key change to a valid pair. Errors
 * (a pair caught mid-write) go to onError and the previous certificate stays in use.
 */
export function watchCertDir(
  dir: string,
  current: CertPair,
  onChange: (pair: CertPair & { notAfter: Date }) => void,
  onError: (err: Error) => void,
  pollMs = 10_000,
): CertWatcher {
  let last = current.cert + current.key;
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    let pair;
    try {
      pair = readCertDir(dir);
    } catch (err) {
      onError(err as Error);
      return;
    }
    if (pair.cert + pair.key === last) return;
    last = pair.cert + pair.key;
    onChange(pair);
  };
  const soon = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, 100);
    timer.unref();
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, soon);
    watcher.on('error', onError);
  } catch (err) {
    onError(err as Error); // polling still covers it
  }
  const poll = setInterval(check, pollMs);
  poll.unref();
  return {
    close() {
      watcher?.close();
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Generating a CA and a serving certificate

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** DNS names the API server uses to reach SERVICE in NAMESPACE */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

export async function generateCertificates(opts: {
  dnsNames: string[];
  ips?: string[];
  now?: Date;
  caDays?: number;
  certDays?: number;
}): Promise<CertBundle> {
  const now = opts.now ?? new Date();
  const day = 86_400_000;
  const notBefore = new Date(now.getTime() - 5 * 60_000); // tolerate small clock skew
  const serial = () =>
    randomBytes(16)
      .toString('hex')
      .replace(/^[89a-f]/, '1');

  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=inferguard-injector-ca, O=inferguard',
    notBefore,
    notAfter: new Date(now.getTime() + (opts.caDays ?? 3650) * day),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
  const names = [
    ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.dnsNames[0] ?? opts.ips?.[0] ?? 'inferguard-injector'}`,
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(now.getTime() + (opts.certDays ?? 825) * day),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  const key = toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { ca: ca.toString('pem') + '\n', cert: leaf.toString('pem') + '\n', key };
}

// ---------------------------------------------------------------------------------------------
// --self-signed: the Secret shared by replicas, and the caBundle patch

export interface SelfSignedOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  secretName: string;
  /** the Service in front of the injector: its DNS names go into the certificate */
  service: string;
  mutatingWebhookConfig?: string;
  validatingWebhookConfig?: string;
  /** renew when the stored certificate expires within this many days */
  renewBeforeDays?: number;
  now?: Date;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  return typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

/** is the bundle in this Secret usable for `service` for a while longer? */
export function usableBundle(secret: V1Secret, opts: SelfSignedOptions): CertBundle | undefined {
  const data = secret.data ?? {};
  const bundle = { ca: unb64(data['ca.crt']), cert: unb64(data['tls.crt']), key: unb64(data['tls.key']) };
  if (!bundle.ca || !bundle.cert || !bundle.key) return undefined;
  try {
    const cert = new X509Certificate(bundle.cert);
    const ca = new X509Certificate(bundle.ca);
    const now = (opts.now ?? new Date()).getTime();
    const renewBefore = (opts.renewBeforeDays ?? 30) * 86_400_000;
    if (new Date(cert.validTo).getTime() - renewBefore < now) return undefined;
    if (!cert.verify(ca.publicKey)) return undefined;
    if (!cert.checkPrivateKey(createPrivateKey(bundle.key))) return undefined;
    if (!cert.checkHost(`${opts.service}.${opts.namespace}.svc`)) return undefined;
    return bundle;
  } catch {
    return undefined;
  }
}

/**
 * The serving bundle every replica uses: the Secret's if it is still good, else a new one written
 * to the Secret. Races between replicas resolve through the API server (409 → read the winner's).
 */
export async function loadOrCreateServingSecret(opts: SelfSignedOptions): Promise<CertBundle> {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const { namespace, secretName: name } = opts;
  for (let attempt = 0; attempt < 5; attempt++) {
    let existing: V1Secret | undefined;
    try {
      existing = await core.readNamespacedSecret({ name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (existing) {
      const good = usableBundle(existing, opts);
      if (good) return good;
    }
    const fresh = await generateCertificates({
      dnsNames: serviceDnsNames(opts.service, namespace),
      now: opts.now,
    });
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name,
        namespace,
        labels: { 'app.kubernetes.io/managed-by': 'inferguard-injector' },
        ...(existing?.metadata?.resourceVersion
          ? { resourceVersion: existing.metadata.resourceVersion }
          : {}),
      },
      data: { 'ca.crt': b64(fresh.ca), 'tls.crt': b64(fresh.cert), 'tls.key': b64(fresh.key) },
    };
    try {
      if (existing) await core.replaceNamespacedSecret({ name, namespace, body });
      else await core.createNamespacedSecret({ namespace, body });
      return fresh;
    } catch (err) {
      // another replica wrote first: loop and adopt its bundle
      if (statusOf(err) !== 409) throw err;
    }
  }
  throw new Error(
    `secret ${namespace}/${name}: could not settle on a certificate after 5 attempts (conflicts)`,
  );
}

/** sets clientConfig.caBundle on every webhook of the named configurations (JSON Patch) */
export async function patchCaBundles(opts: SelfSignedOptions, caPem: string): Promise<void> {
  const api = opts.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const ca = b64(caPem);
  const opsFor = (webhooks: { name: string; clientConfig?: { caBundle?: string } }[] | undefined) =>
    (webhooks ?? []).flatMap((w, i) =>
      w.clientConfig?.caBundle === ca
        ? []
        : [
            // "test" first: if someone reordered the webhooks meanwhile, the patch fails instead of
            // writing our CA onto another product's webhook
            { op: 'test', path: `/webhooks/${i}/name`, value: w.name },
            { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: ca },
          ],
    );
  if (opts.mutatingWebhookConfig) {
    const name = opts.mutatingWebhookConfig;
    const current = await api.readMutatingWebhookConfiguration({ name });
    if ((current.webhooks ?? []).length === 0)
      throw new Error(`MutatingWebhookConfiguration ${name} has no webhooks`);
    const ops = opsFor(current.webhooks);
    if (ops.length > 0) await api.patchMutatingWebhookConfiguration({ name, body: ops });
  }
  if (opts.validatingWebhookConfig) {
    const name = opts.validatingWebhookConfig;
    const current = await api.readValidatingWebhookConfiguration({ name });
    if ((current.webhooks ?? []).length === 0)
      throw new Error(`ValidatingWebhookConfiguration ${name} has no webhooks`);
    const ops = opsFor(current.webhooks);
    if (ops.length > 0) await api.patchValidatingWebhookConfiguration({ name, body: ops });
  }
}
