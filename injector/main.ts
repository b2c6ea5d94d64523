// `inferguard injector`: the admission webhook server (POST /mutate, POST /validate-policy,
// /healthz, /readyz, /metrics). Certificates come from --cert-dir (cert-manager) or --self-signed.
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import {
  loadOrCreateServingSecret,
  patchCaBundles,
  readCertDir,
  watchCertDir,
  type SelfSignedOptions,
} from './certs.js';
import { settingOptions, settingsFrom, settingsHelp, UsageError, type SettingFlag } from './settings.js';
import { createWebhookServer, DEFAULT_BODY_LIMIT } from './webhook.js';

const HELP = `usage: inferguard injector [flags]

Runs the mutating (POST /mutate) and validating (POST /validate-policy) admission webhook over HTTPS,
plus /healthz, /readyz (200 once serving certificates are in place) and /metrics.

  --listen ADDR                  [host]:port to listen on (default :8443) [$INFERGUARD_LISTEN]
  --cert-dir DIR                 directory with tls.crt and tls.key (cert-manager), reloaded on change [$INFERGUARD_CERT_DIR]
  --self-signed                  generate a CA + serving certificate, share them in a Secret and patch the
                                 webhook configurations' caBundle [$INFERGUARD_SELF_SIGNED=true]
  --webhook-config NAME          MutatingWebhookConfiguration to patch (--self-signed) [$INFERGUARD_WEBHOOK_CONFIG]
  --validating-webhook-config NAME
                                 ValidatingWebhookConfiguration to patch (--self-signed) [$INFERGUARD_VALIDATING_WEBHOOK_CONFIG]
  --service NAME                 the injector's Service, for the certificate's DNS names (default inferguard-injector) [$INFERGUARD_SERVICE]
  --secret NAME                  Secret holding the self-signed CA and certificate (default inferguard-injector-tls) [$INFERGUARD_SECRET]
  --namespace NS                 the injector's own namespace (never injected; holds the Secret) [$INFERGUARD_NAMESPACE, $POD_NAMESPACE]
  --body-limit BYTES             largest AdmissionReview accepted (default ${DEFAULT_BODY_LIMIT}) [$INFERGUARD_BODY_LIMIT]
  --log-level LEVEL              trace|debug|info|warn|error (default info) [$INFERGUARD_LOG_LEVEL]
${settingsHelp(['injector-namespace'])}
`;

export function parseListen(value: string): { host?: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen: "${value}" is not [host]:port`);
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

export async function run(args: string[]): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        'cert-dir': { type: 'string' },
        'self-signed': { type: 'boolean' },
        'webhook-config': { type: 'string' },
        'validating-webhook-config': { type: 'string' },
        service: { type: 'string' },
        secret: { type: 'string' },
        namespace: { type: 'string' },
        'body-limit': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...settingOptions(),
      },
    }).values;
  } catch (err) {
    process.stderr.write(`inferguard injector: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const env = process.env;
  const str = (flag: string, name: string, dflt?: string) =>
    (v[flag] as string | undefined) ?? (env[name] || dflt);
  const namespace = str('namespace', 'INFERGUARD_NAMESPACE', env.POD_NAMESPACE || 'inferguard-system')!;
  const log = pino({ name: 'inferguard-injector', level: str('log-level', 'INFERGUARD_LOG_LEVEL', 'info') });

  let listen: { host?: string; port: number };
  let settings;
  const certDir = str('cert-dir', 'INFERGUARD_CERT_DIR');
  const selfSigned = v['self-signed'] === true || env.INFERGUARD_SELF_SIGNED === 'true';
  const bodyLimit = Number(str('body-limit', 'INFERGUARD_BODY_LIMIT', String(DEFAULT_BODY_LIMIT)));
  try {
    listen = parseListen(str('listen', 'INFERGUARD_LISTEN', ':8443')!);
    settings = settingsFrom(
      { ...(v as Partial<Record<SettingFlag, string>>), 'injector-namespace': namespace },
      env,
    );
    if (!certDir === !selfSigned)
      throw new UsageError('exactly one of --cert-dir DIR or --self-signed is required');
    if (!Number.isInteger(bodyLimit) || bodyLimit < 1024)
      throw new UsageError('--body-limit must be an integer >= 1024');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`inferguard injector: ${err.message}\n`);
    return 2;
  }

  let selfSignedOpts: SelfSignedOptions | undefined;
  let tls;
  if (certDir) {
    try {
      tls = readCertDir(certDir);
    } catch (err) {
      process.stderr.write(`inferguard injector: --cert-dir: ${(err as Error).message}\n`);
      return 1;
    }
  } else {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromDefault();
    selfSignedOpts = {
      kubeConfig,
      namespace,
      secretName: str('secret', 'INFERGUARD_SECRET', 'inferguard-injector-tls')!,
      service: str('service', 'INFERGUARD_SERVICE', 'inferguard-injector')!,
      mutatingWebhookConfig: str('webhook-config', 'INFERGUARD_WEBHOOK_CONFIG'),
      validatingWebhookConfig: str('validating-webhook-config', 'INFERGUARD_VALIDATING_WEBHOOK_CONFIG'),
    };
    if (!selfSignedOpts.mutatingWebhookConfig && !selfSignedOpts.validatingWebhookConfig) {
      process.stderr.write(
        'inferguard injector: --self-signed needs --webhook-config and/or --validating-webhook-config\n',
      );
      return 2;
    }
    tls = await retry(
      () => loadOrCreateServingSecret(selfSignedOpts!),
      (err, wait) =>
        log.warn(
          { err: (err as Error).message, retryInMs: wait },
          'reading/creating the certificate Secret failed',
        ),
    );
  }

  const webhook = createWebhookServer({
    settings,
    tls,
    bodyLimit,
    onReview: (e) =>
      e.result === 'denied' || e.result === 'error' ? log.warn(e, 'admission') : log.debug(e, 'admission'),
  });
  webhook.metrics.certExpiry.set(new Date(new X509Certificate(tls.cert).validTo).getTime() / 1000);
  await new Promise<void>((resolve, reject) => {
    webhook.server.once('error', reject);
    webhook.server.listen(listen.port, listen.host, () => resolve());
  });
  const addr = webhook.server.address();
  log.info(
    { listen: typeof addr === 'object' && addr ? `${addr.address}:${addr.port}` : addr, namespace },
    'injector listening',
  );

  let closeWatcher = () => {};
  if (certDir) {
    const w = watchCertDir(
      certDir,
      tls,
      (pair) => {
        webhook.setCertificate(pair);
        webhook.metrics.certExpiry.set(pair.notAfter.getTime() / 1000);
        log.info({ notAfter: pair.notAfter.toISOString() }, 'serving certificate reloaded');
      },
      (err) => log.warn({ err: err.message }, 'certificate reload skipped; keeping the current one'),
    );
    closeWatcher = () => w.close();
    webhook.setReady(true);
  } else {
    const bundle = tls as { ca: string };
    await retry(
      () => patchCaBundles(selfSignedOpts!, bundle.ca),
      (err, wait) =>
        log.warn({ err: (err as Error).message, retryInMs: wait }, 'patching caBundle failed; not ready yet'),
    );
    log.info('caBundle patched; ready');
    webhook.setReady(true);
  }

  const stop = () => {
    log.info('shutting down');
    webhook.setReady(false);
    closeWatcher();
    // finish in-flight reviews (the API server retries elsewhere once /readyz fails), then force
    webhook.server.close();
    webhook.server.closeIdleConnections();
    setTimeout(() => webhook.server.closeAllConnections(), 5_000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // the server keeps the process alive; the dispatcher must not set an exit code
  return -1;
}

async function retry<T>(fn: () => Promise<T>, onError: (err: unknown, waitMs: number) => void): Promise<T> {
  for (let wait = 500; ; wait = Math.min(wait * 2, 30_000)) {
    try {
      return await fn();
    } catch (err) {
      onError(err, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
