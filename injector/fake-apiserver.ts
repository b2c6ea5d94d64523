// A small fake kube-apiserver over HTTPS (node:https) for the --self-signed path: Secrets in one
// namespace and Mutating/ValidatingWebhookConfigurations, with every request recorded. It speaks
// just enough of the real API for @kubernetes/client-node: JSON bodies, 404/409 Status objects,
// JSON Patch on the webhook configurations. Test-only.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import jsonpatch from 'fast-json-patch';
import { generateCertificates, type CertBundle } from './certs.js';

export interface Recorded {
  method: string;
  path: string;
  contentType?: string;
  authorization?: string;
  body?: any;
}

type Obj = Record<string, any>;

export class FakeApiServer {
  readonly requests: Recorded[] = [];
  readonly secrets = new Map<string, Obj>();
  readonly mutating = new Map<string, Obj>();
  readonly validating = new Map<string, Obj>();
  /** respond with this status to the next N matching requests (e.g. simulate an outage) */
  readonly failures: {
    method: string;
    pathPrefix: string;
    status: number;
    times: number;
    onFail?: () => void;
  }[] = [];
  #server?: https.Server;
  #rv = 1;
  certs!: CertBundle;
  port = 0;

  async start(): Promise<this> {
    this.certs = await generateCertificates({ dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    this.#server = https.createServer({ key: this.certs.key, cert: this.certs.cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const rec: Recorded = {
          method: req.method ?? '',
          path: req.url ?? '',
          contentType: req.headers['content-type'],
          authorization: req.headers.authorization,
          body: text ? JSON.parse(text) : undefined,
        };
        this.requests.push(rec);
        const [status, body] = this.#handle(rec);
        const out = JSON.stringify(body);
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(out),
        });
        res.end(out);
      });
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  close(): void {
    this.#server?.close();
    this.#server?.closeAllConnections();
  }

  /** kubeconfig YAML pointing at this server with a bearer token */
  kubeconfig(): string {
    const ca = Buffer.from(this.certs.ca).toString('base64');
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{ name: fake, cluster: { server: "https://127.0.0.1:' +
        this.port +
        '", certificate-authority-data: ' +
        ca +
        ' } }]',
      'users: [{ name: fake, user: { token: fake-token } }]',
      'contexts: [{ name: fake, context: { cluster: fake, user: fake } }]',
      'current-context: fake',
      '',
    ].join('\n');
  }

  addWebhookConfig(kind: 'mutating' | 'validating', name: string, webhookNames: string[]): void {
    const map = kind === 'mutating' ? this.mutating : this.validating;
    map.set(name, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: kind === 'mutating' ? 'MutatingWebhookConfiguration' : 'ValidatingWebhookConfiguration',
      metadata: { name, resourceVersion: String(this.#rv++) },
      webhooks: webhookNames.map((n) => ({
        name: n,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        clientConfig: {
          service: { name: 'inferguard-injector', namespace: 'inferguard-system', path: '/mutate' },
        },
      })),
    });
  }

  #status(code: number, reason: string, message: string): [number, Obj] {
    return [code, { apiVersion: 'v1', kind: 'Status', status: 'Failure', code, reason, message }];
  }

  #handle(r: Recorded): [number, Obj] {
    const failure = this.failures.find(
      (f) => f.times > 0 && f.method === r.method && r.path.startsWith(f.pathPrefix),
    );
    if (failure) {
      failure.times -= 1;
      failure.onFail?.();
      return this.#status(failure.status, 'InternalError', 'injected failure');
    }
    if (r.authorization !== 'Bearer fake-token') return this.#status(401, 'Unauthorized', 'no token');
    const path = r.path.split('?')[0];
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(path);
    if (m) {
      const [, ns, name] = m;
      const key = `${ns}/${name ?? r.body?.metadata?.name}`;
      if (r.method === 'GET') {
        const s = this.secrets.get(key);
        return s ? [200, s] : this.#status(404, 'NotFound', `secrets "${name}" not found`);
      }
      if (r.method === 'POST') {
        if (this.secrets.has(key))
          return this.#status(409, 'AlreadyExists', `secrets "${r.body.metadata.name}" already exists`);
        const s = { ...r.body, metadata: { ...r.body.metadata, resourceVersion: String(this.#rv++) } };
        this.secrets.set(key, s);
        return [201, s];
      }
      if (r.method === 'PUT') {
        const cur = this.secrets.get(key);
        if (!cur) return this.#status(404, 'NotFound', 'not found');
        if (r.body.metadata?.resourceVersion !== cur.metadata.resourceVersion)
          return this.#status(409, 'Conflict', 'stale resourceVersion');
        const s = { ...r.body, metadata: { ...r.body.metadata, resourceVersion: String(this.#rv++) } };
        this.secrets.set(key, s);
        return [200, s];
      }
    }
    m =
      /^\/apis\/admissionregistration\.k8s\.io\/v1\/(mutating|validating)webhookconfigurations\/([^/]+)$/.exec(
        path,
      );
    if (m) {
      const map = m[1] === 'mutating' ? this.mutating : this.validating;
      const cur = map.get(m[2]);
      if (!cur) return this.#status(404, 'NotFound', `${m[1]}webhookconfigurations "${m[2]}" not found`);
      if (r.method === 'GET') return [200, cur];
      if (r.method === 'PATCH') {
        if (r.contentType !== 'application/json-patch+json')
          return this.#status(415, 'UnsupportedMediaType', String(r.contentType));
        try {
          const next = jsonpatch.applyPatch(structuredClone(cur), r.body, true, false).newDocument;
          next.metadata.resourceVersion = String(this.#rv++);
          map.set(m[2], next);
          return [200, next];
        } catch (err) {
          return this.#status(422, 'Invalid', (err as Error).message);
        }
      }
    }
    return this.#status(404, 'NotFound', `no route ${r.method} ${path}`);
  }
}
