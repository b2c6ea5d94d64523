// The pure mutation: one Kubernetes object + injector settings → the injected object, a skip or a
// denial. Both the webhook (webhook.ts, which diffs the result into a JSON Patch) and the offline
// `inferguard inject` (cli.ts) call exactly this function, so what the CLI prints is what the API
// server would store. No I/O, no clock, no randomness: the same input always gives the same output.
import { createHash } from 'node:crypto';
import { ANNOTATION, PREFIX, describeAllowed, isKnownAnnotation, type AnnotationKey } from './annotations.js';

// ---------------------------------------------------------------------------------------------
// Names and fixed numbers (SPEC §3)

export const SIDECAR_NAME = 'inferguard-sidecar';
export const INIT_NAME = 'inferguard-init';
export const POLICY_VOLUME = 'inferguard-policy';
export const XTABLES_VOLUME = 'inferguard-xtables';
export const POLICY_MOUNT = '/etc/inferguard/policy';
export const FIRST_LISTENER = 15001;
export const ADMIN_PORT = 15020;
export const SIDECAR_UID = 65532;
const MAX_MODEL_PORTS = ADMIN_PORT - FIRST_LISTENER; // listeners 15001..15019
const STATUS_VERSION = 1;

/** namespaces whose pods are never injected, whatever they ask for */
export const SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease'];

export interface InjectorSettings {
  /** sidecar (and init container) image */
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** CPU request = limit (equal so a Guaranteed-QoS model pod stays Guaranteed) */
  cpu: string;
  /** memory request = limit */
  memory: string;
  logLevel: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT for the sidecar; unset = the sidecar's own default */
  otelEndpoint?: string;
  /** OTEL_EXPORTER_OTLP_PROTOCOL (grpc | http/protobuf) */
  otelProtocol?: string;
  /** OTEL_SERVICE_NAME for the sidecar */
  otelServiceName: string;
  /** the injector's own namespace: never injected */
  injectorNamespace: string;
  /**
   * when set, an inferguard.io/image annotation must start with one of these prefixes
   * (e.g. "ghcr.io/inferguard/"): whoever can create the pod could otherwise pick any image
   */
  allowedImagePrefixes?: string[];
  /** defaults for pods without the annotation (chart values); unset = redirect, closed, native */
  capture?: 'redirect' | 'port';
  fail?: 'closed' | 'open';
  nativeSidecar?: boolean;
}

/**
 * The image the chart (helm/inferguard values sidecar.image, tag = appVersion) and Dockerfile.sidecar
 * build and name; helm/image.test.ts keeps the three in step with package.json's version.
 */
export const DEFAULT_SIDECAR_IMAGE = 'inferguard/sidecar:0.1.0';

export const DEFAULT_SETTINGS: Readonly<InjectorSettings> = Object.freeze({
  image: DEFAULT_SIDECAR_IMAGE,
  imagePullPolicy: 'IfNotPresent',
  cpu: '250m',
  memory: '256Mi',
  logLevel: 'info',
  otelServiceName: 'inferguard-sidecar',
  injectorNamespace: 'inferguard-system',
});

export interface MutateContext {
  /** the request's namespace (AdmissionRequest.namespace); falls back to metadata.namespace */
  namespace?: string;
}

// Stable snake_case reason codes, reused as the `reason` label of the injector's metrics and in
// denial messages (the Linkerd habit). Never rename one: dashboards and alerts key on them.
export const SKIP_REASONS = {
  unsupported_kind: 'not a Pod or a workload with a pod template',
  not_requested: `no ${ANNOTATION.inject} annotation on the pod (template)`,
  injection_disabled: `${ANNOTATION.inject} is "false"`,
  system_namespace: 'pods in kube-system, kube-public and kube-node-lease are never injected',
  injector_namespace: "pods in the injector's own namespace are never injected",
  host_network: "hostNetwork pods are never injected (redirect rules would capture the node's traffic)",
  already_injected: 'already injected with the same settings (status annotation hash matches)',
  inject_annotation_on_workload: `${ANNOTATION.inject} is on the workload's metadata; put it on spec.template.metadata.annotations`,
} as const;

export const DENY_REASONS = {
  malformed_object: 'the object is not a well-formed Kubernetes object',
  unknown_annotation: 'an inferguard.io/ annotation the injector does not know (typo?)',
  invalid_inject: `bad ${ANNOTATION.inject} value`,
  invalid_ports: `bad ${ANNOTATION.ports} value`,
  invalid_policy: `bad ${ANNOTATION.policy} value`,
  invalid_capture: `bad ${ANNOTATION.capture} value`,
  invalid_mode: `bad ${ANNOTATION.mode} value`,
  invalid_fail: `bad ${ANNOTATION.fail} value`,
  invalid_native_sidecar: `bad ${ANNOTATION.nativeSidecar} value`,
  invalid_image: `bad ${ANNOTATION.image} value`,
  invalid_cpu: `bad ${ANNOTATION.cpu} value`,
  invalid_memory: `bad ${ANNOTATION.memory} value`,
  invalid_log_level: `bad ${ANNOTATION.logLevel} value`,
  no_model_ports: 'nothing to protect: no ports annotation and no declared TCP containerPort',
  port_conflict: "a model port collides with the sidecar's listener or admin ports",
  undeclared_model_port: 'capture "port" needs each model port declared as a containerPort',
  unnamed_model_port: 'capture "port" needs each model port to have a name for Services to target',
  classic_sidecar_blocks_completion:
    'a classic sidecar never exits, so a pod with restartPolicy Never/OnFailure never completes',
} as const;

export type SkipReason = keyof typeof SKIP_REASONS;
export type DenyReason = keyof typeof DENY_REASONS;
export type Reason = SkipReason | DenyReason | 'injected';

export type MutateResult =
  | { outcome: 'injected'; reason: 'injected'; object: unknown; message: string; warnings: string[] }
  | { outcome: 'skipped'; reason: SkipReason; object: unknown; message: string; warnings: string[] }
  | { outcome: 'denied'; reason: DenyReason; object: unknown; message: string; warnings: string[] };

type Obj = Record<string, any>;

/** what the status annotation records, so re-injection can undo exactly what was added */
export interface InjectionStatus {
  version: number;
  hash: string;
  layout: 'native' | 'classic';
  capture: 'redirect' | 'port';
  /** PORT=PROTOCOL:LISTEN in listener order */
  ports: string[];
  containers: string[];
  volumes: string[];
  /** container name → { injected name → original name } for capture "port" */
  renamedPorts: Record<string, Record<string, string>>;
  /** annotations the injector added besides the status itself */
  annotations: string[];
}

/** the text both the webhook (status.message) and `inferguard inject` (stderr) show for a denial */
export function denialMessage(r: Pick<MutateResult, 'reason' | 'message'>): string {
  return `${r.reason}: ${r.message}`;
}

class Denial extends Error {
  constructor(
    readonly reason: DenyReason,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Where the pod template lives in each supported kind

interface Template {
  /** dotted path of the pod template's parent, for messages ("spec.template") or "" for a Pod */
  at: string;
  meta: Obj;
  spec: Obj;
}

const TEMPLATE_KINDS: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function findTemplate(object: Obj): Template | undefined | 'malformed' {
  const kind = object.kind;
  if (kind === 'Pod') {
    if (!isObj(object.spec) || !Array.isArray(object.spec.containers)) return 'malformed';
    object.metadata ??= {};
    return isObj(object.metadata) ? { at: '', meta: object.metadata, spec: object.spec } : 'malformed';
  }
  const path = typeof kind === 'string' ? TEMPLATE_KINDS[kind] : undefined;
  if (!path) return undefined;
  let node: unknown = object;
  for (const key of path) {
    if (!isObj(node)) return 'malformed';
    node = node[key];
  }
  if (!isObj(node) || !isObj(node.spec) || !Array.isArray(node.spec.containers)) return 'malformed';
  node.metadata ??= {};
  if (!isObj(node.metadata)) return 'malformed';
  return { at: path.join('.'), meta: node.metadata, spec: node.spec };
}

/** a short name for messages: "Deployment default/vllm" */
export function describeObject(object: unknown): string {
  if (!isObj(object)) return 'object';
  const meta = isObj(object.metadata) ? object.metadata : {};
  const name = meta.name ?? (meta.generateName ? `${meta.generateName}*` : '<unnamed>');
  return `${object.kind ?? 'object'} ${meta.namespace ? `${meta.namespace}/` : ''}${name}`;
}

// ---------------------------------------------------------------------------------------------
// Entry point

export function mutate(object: unknown, settings: InjectorSettings, ctx: MutateContext = {}): MutateResult {
  if (isObj(object) && object.kind === 'List' && Array.isArray(object.items))
    return mutateList(object, settings, ctx);
  try {
    return mutateOne(object, settings, ctx);
  } catch (err) {
    if (err instanceof Denial) return denied(object, err.reason, err.message);
    throw err;
  }
}

function mutateList(list: Obj, settings: InjectorSettings, ctx: MutateContext): MutateResult {
  const items: unknown[] = [];
  const warnings: string[] = [];
  let injected = false;
  for (const item of list.items as unknown[]) {
    const r = mutate(item, settings, ctx);
    if (r.outcome === 'denied')
      return { ...r, object: list, message: `${describeObject(item)}: ${r.message}` };
    warnings.push(...r.warnings);
    injected ||= r.outcome === 'injected';
    items.push(r.object);
  }
  if (!injected)
    return {
      outcome: 'skipped',
      reason: 'not_requested',
      object: list,
      message: 'no item injected',
      warnings,
    };
  return {
    outcome: 'injected',
    reason: 'injected',
    object: { ...list, items },
    message: 'injected',
    warnings,
  };
}

function skipped(object: unknown, reason: SkipReason, warn = false): MutateResult {
  const message = SKIP_REASONS[reason];
  return {
    outcome: 'skipped',
    reason,
    object,
    message,
    warnings: warn ? [`inferguard: not injected (${reason}): ${message}`] : [],
  };
}

function denied(object: unknown, reason: DenyReason, message: string): MutateResult {
  return { outcome: 'denied', reason, object, message, warnings: [] };
}

function mutateOne(input: unknown, settings: InjectorSettings, ctx: MutateContext): MutateResult {
  if (!isObj(input) || typeof input.kind !== 'string') {
    throw new Denial('malformed_object', 'expected a Kubernetes object with a "kind"');
  }
  if (input.kind !== 'Pod' && !TEMPLATE_KINDS[input.kind]) return skipped(input, 'unsupported_kind');

  // Work on a copy: the caller's object is never modified (the webhook diffs original vs result).
  const object = structuredClone(input);
  const tpl = findTemplate(object);
  if (tpl === 'malformed' || tpl === undefined) {
    const where = input.kind === 'Pod' ? 'spec' : `${TEMPLATE_KINDS[input.kind].join('.')}.spec`;
    throw new Denial('malformed_object', `${describeObject(input)}: ${where}.containers must be a list`);
  }
  const annotations = readAnnotations(tpl.meta, tpl.at);
  const inject = annotations[ANNOTATION.inject];
  if (inject === undefined) {
    const workload =
      isObj(object.metadata) && isObj(object.metadata.annotations) ? object.metadata.annotations : {};
    if (tpl.at !== '' && workload[ANNOTATION.inject] === 'true')
      return skipped(input, 'inject_annotation_on_workload', true);
    return skipped(input, 'not_requested');
  }
  if (inject === 'false') return skipped(input, 'injection_disabled');
  if (inject !== 'true') throw invalid(ANNOTATION.inject, 'invalid_inject', inject);

  const namespace = ctx.namespace || (isObj(object.metadata) ? object.metadata.namespace : undefined);
  if (namespace && SYSTEM_NAMESPACES.includes(namespace)) return skipped(input, 'system_namespace', true);
  if (namespace && namespace === settings.injectorNamespace)
    return skipped(input, 'injector_namespace', true);
  if (tpl.spec.hostNetwork === true) return skipped(input, 'host_network', true);

  const opts = resolveOptions(annotations, settings);
  const previous = parseStatus(annotations[ANNOTATION.status]);
  const before = previous ? structuredClone(tpl.spec) : undefined;
  strip(tpl, previous);

  const plan = planInjection(tpl, opts);
  const rendered = render(plan, opts, settings);
  const hash = hashOf({ version: STATUS_VERSION, plan, rendered });
  // A matching status alone proves nothing (anyone can copy the annotation): the guard must still be
  // there, unaltered where it matters. Fields other webhooks add (env, mounts) are not compared.
  if (previous?.hash === hash && before && intact(before, rendered))
    return skipped(input, 'already_injected');

  apply(tpl, plan, rendered, hash);
  const warnings =
    opts.capture === 'redirect'
      ? probeWarnings(
          tpl.spec,
          plan.ports.map((p) => p.port),
          plan.allowPaths,
        )
      : [];
  return {
    outcome: 'injected',
    reason: 'injected',
    object,
    message: `injected ${SIDECAR_NAME}`,
    warnings,
  };
}

function readAnnotations(meta: Obj, at: string): Record<string, string> {
  const a = meta.annotations ?? {};
  if (!isObj(a))
    throw new Denial('malformed_object', `${at ? `${at}.` : ''}metadata.annotations must be a map`);
  for (const [k, v] of Object.entries(a)) {
    if (k.startsWith(PREFIX) && typeof v !== 'string') {
      throw new Denial(
        'malformed_object',
        `annotation ${k} must be a string (quote it in YAML: "${String(v)}")`,
      );
    }
  }
  return a as Record<string, string>;
}

function invalid(key: AnnotationKey, reason: DenyReason, value: string, detail?: string): Denial {
  const shown = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return new Denial(
    reason,
    `invalid annotation ${key}: ${shown}${detail ? ` (${detail})` : ''}; allowed: ${describeAllowed(key)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Annotations → options

type Protocol = 'http' | 'grpc';

interface Options {
  ports?: { port: number; protocol?: Protocol }[];
  policy?: string;
  capture: 'redirect' | 'port';
  mode?: 'enforce' | 'monitor';
  fail: 'closed' | 'open';
  native: boolean;
  image: string;
  cpu: string;
  memory: string;
  logLevel: string;
}

const CPU_RE = /^(\d+(\.\d+)?m?|\d+(\.\d+)?)$/;
const MEMORY_RE = /^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|e\d+)?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function oneOf<T extends string>(
  a: Record<string, string>,
  key: AnnotationKey,
  reason: DenyReason,
  allowed: readonly T[],
): T | undefined {
  const v = a[key];
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw invalid(key, reason, v);
  return v as T;
}

function resolveOptions(a: Record<string, string>, settings: InjectorSettings): Options {
  const unknown = Object.keys(a).filter((k) => k.startsWith(PREFIX) && !isKnownAnnotation(k));
  if (unknown.length > 0) {
    const known = Object.values(ANNOTATION).join(', ');
    throw new Denial(
      'unknown_annotation',
      `unknown annotation ${unknown.sort().join(', ')}; known: ${known}`,
    );
  }
  const policy = a[ANNOTATION.policy];
  if (policy !== undefined && !DNS_SUBDOMAIN.test(policy))
    throw invalid(ANNOTATION.policy, 'invalid_policy', policy);
  const image = a[ANNOTATION.image];
  if (image !== undefined && (image === '' || /\s/.test(image) || image.length > 512)) {
    throw invalid(ANNOTATION.image, 'invalid_image', image);
  }
  const prefixes = settings.allowedImagePrefixes ?? [];
  if (image !== undefined && prefixes.length > 0 && !prefixes.some((p) => image.startsWith(p))) {
    throw new Denial(
      'invalid_image',
      `invalid annotation ${ANNOTATION.image}: ${JSON.stringify(image)} (this injector only allows images starting with ${prefixes.map((p) => JSON.stringify(p)).join(', ')})`,
    );
  }
  const cpu = a[ANNOTATION.cpu];
  if (cpu !== undefined && (!CPU_RE.test(cpu) || Number.parseFloat(cpu) === 0))
    throw invalid(ANNOTATION.cpu, 'invalid_cpu', cpu);
  const memory = a[ANNOTATION.memory];
  if (memory !== undefined && (!MEMORY_RE.test(memory) || Number.parseFloat(memory) === 0)) {
    throw invalid(ANNOTATION.memory, 'invalid_memory', memory);
  }
  return {
    ports: a[ANNOTATION.ports] === undefined ? undefined : parsePorts(a[ANNOTATION.ports]),
    policy,
    capture:
      oneOf(a, ANNOTATION.capture, 'invalid_capture', ['redirect', 'port'] as const) ??
      settings.capture ??
      'redirect',
    mode: oneOf(a, ANNOTATION.mode, 'invalid_mode', ['enforce', 'monitor'] as const),
    fail: oneOf(a, ANNOTATION.fail, 'invalid_fail', ['closed', 'open'] as const) ?? settings.fail ?? 'closed',
    native:
      (oneOf(a, ANNOTATION.nativeSidecar, 'invalid_native_sidecar', ['true', 'false'] as const) ??
        String(settings.nativeSidecar ?? true)) === 'true',
    image: image ?? settings.image,
    cpu: cpu ?? settings.cpu,
    memory: memory ?? settings.memory,
    logLevel: oneOf(a, ANNOTATION.logLevel, 'invalid_log_level', LOG_LEVELS) ?? settings.logLevel,
  };
}

/** `8000=http, 8001=grpc` or `8000` → ports in the written order */
export function parsePorts(value: string): { port: number; protocol?: Protocol }[] {
  const out: { port: number; protocol?: Protocol }[] = [];
  const items = value.split(',').map((s) => s.trim());
  if (items.length === 1 && items[0] === '') throw invalid(ANNOTATION.ports, 'invalid_ports', value, 'empty');
  for (const item of items) {
    const m = /^(\d{1,5})(?:\s*=\s*([a-z0-9]+))?$/.exec(item);
    const port = m ? Number(m[1]) : NaN;
    if (!m || port < 1 || port > 65535)
      throw invalid(ANNOTATION.ports, 'invalid_ports', value, `bad entry "${item}"`);
    const protocol = m[2];
    if (protocol !== undefined && protocol !== 'http' && protocol !== 'grpc') {
      throw invalid(ANNOTATION.ports, 'invalid_ports', value, `unknown protocol "${protocol}"`);
    }
    if (out.some((p) => p.port === port))
      throw invalid(ANNOTATION.ports, 'invalid_ports', value, `port ${port} listed twice`);
    out.push({ port, protocol });
  }
  if (out.length > MAX_MODEL_PORTS) {
    throw invalid(ANNOTATION.ports, 'invalid_ports', value, `at most ${MAX_MODEL_PORTS} ports`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Status annotation and stripping a previous injection

export function parseStatus(value: string | undefined): InjectionStatus | undefined {
  if (value === undefined) return undefined;
  try {
    const s = JSON.parse(value) as InjectionStatus;
    return isObj(s) && typeof s.hash === 'string' ? s : undefined;
  } catch {
    // a status we cannot read is treated as absent: the injection is redone from scratch
    return undefined;
  }
}

/**
 * Undo a previous injection so it can be recomputed: our containers and volumes (by their reserved
 * names, whatever the status says), renamed model ports and the annotations we added.
 */
function strip(tpl: Template, previous: InjectionStatus | undefined): void {
  const spec = tpl.spec;
  const ours = (c: unknown) => isObj(c) && (c.name === SIDECAR_NAME || c.name === INIT_NAME);
  spec.containers = spec.containers.filter((c: unknown) => !ours(c));
  if (Array.isArray(spec.initContainers)) {
    spec.initContainers = spec.initContainers.filter((c: unknown) => !ours(c));
    if (spec.initContainers.length === 0) delete spec.initContainers;
  }
  if (Array.isArray(spec.volumes)) {
    spec.volumes = spec.volumes.filter(
      (v: unknown) => !(isObj(v) && (v.name === POLICY_VOLUME || v.name === XTABLES_VOLUME)),
    );
    if (spec.volumes.length === 0) delete spec.volumes;
  }
  if (!previous) return;
  for (const [containerName, renames] of Object.entries(previous.renamedPorts ?? {})) {
    const c = spec.containers.find((x: Obj) => isObj(x) && x.name === containerName);
    if (c && isObj(renames)) renameContainerPorts(c, renames);
  }
  for (const key of previous.annotations ?? []) delete tpl.meta.annotations?.[key];
}

/** rename a container's port names and every probe/lifecycle reference to them */
function renameContainerPorts(c: Obj, renames: Record<string, string>): void {
  for (const p of Array.isArray(c.ports) ? c.ports : []) {
    if (isObj(p) && typeof p.name === 'string' && renames[p.name]) p.name = renames[p.name];
  }
  const handlers = [
    c.livenessProbe,
    c.readinessProbe,
    c.startupProbe,
    c.lifecycle?.postStart,
    c.lifecycle?.preStop,
  ];
  for (const h of handlers) {
    for (const action of [h?.httpGet, h?.tcpSocket]) {
      if (isObj(action) && typeof action.port === 'string' && renames[action.port])
        action.port = renames[action.port];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Planning: which ports, which listeners, which renames

interface ModelPort {
  port: number;
  protocol: Protocol;
  listen: number;
  /** capture "port": the container that declares it and its original port name */
  container?: string;
  name?: string;
  renamed?: string;
}

interface Plan {
  ports: ModelPort[];
  /**
   * capture "redirect": `GET /path` of the model containers' httpGet probes on protected HTTP ports,
   * passed to the sidecar as --allow-path so the kubelet's probes are not denied as unknown routes;
   * absent when there are none (so the status hash of probe-less pods is what it was before)
   */
  allowPaths?: string[];
  /** the main (regular) container kubectl should default to in the classic layout */
  defaultContainer?: string;
}

function declaredTcpPorts(spec: Obj): { container: string; port: number; name?: string }[] {
  const out: { container: string; port: number; name?: string }[] = [];
  for (const c of spec.containers as Obj[]) {
    if (!isObj(c)) throw new Denial('malformed_object', 'every entry of containers must be an object');
    for (const p of Array.isArray(c.ports) ? c.ports : []) {
      if (!isObj(p) || typeof p.containerPort !== 'number') continue;
      if (p.protocol !== undefined && p.protocol !== 'TCP') continue;
      out.push({
        container: String(c.name),
        port: p.containerPort,
        name: typeof p.name === 'string' ? p.name : undefined,
      });
    }
  }
  return out;
}

function protocolFromName(name: string | undefined): Protocol {
  return name && /grpc|h2c/i.test(name) ? 'grpc' : 'http';
}

function planInjection(tpl: Template, opts: Options): Plan {
  const declared = declaredTcpPorts(tpl.spec);
  let wanted: { port: number; protocol?: Protocol }[];
  if (opts.ports) {
    wanted = opts.ports;
  } else {
    wanted = [];
    for (const d of declared) if (!wanted.some((w) => w.port === d.port)) wanted.push({ port: d.port });
  }
  if (wanted.length === 0) {
    throw new Denial(
      'no_model_ports',
      `nothing to protect: set ${ANNOTATION.ports} (e.g. "8000=http") or declare the model's containerPorts`,
    );
  }
  if (wanted.length > MAX_MODEL_PORTS) {
    throw new Denial(
      'port_conflict',
      `too many model ports (${wanted.length}); at most ${MAX_MODEL_PORTS}, set ${ANNOTATION.ports}`,
    );
  }
  const reserved = new Set<number>([ADMIN_PORT]);
  wanted.forEach((_, i) => reserved.add(FIRST_LISTENER + i));
  for (const w of wanted) {
    if (reserved.has(w.port)) {
      throw new Denial(
        'port_conflict',
        `model port ${w.port} collides with the sidecar's ports ${[...reserved].sort().join(', ')}`,
      );
    }
  }
  for (const d of declared) {
    if (reserved.has(d.port)) {
      throw new Denial(
        'port_conflict',
        `container "${d.container}" declares port ${d.port}, which the sidecar needs (listeners from ${FIRST_LISTENER}, admin ${ADMIN_PORT})`,
      );
    }
  }

  const ports: ModelPort[] = wanted.map((w, i) => {
    const decl = declared.find((d) => d.port === w.port);
    return { port: w.port, protocol: w.protocol ?? protocolFromName(decl?.name), listen: FIRST_LISTENER + i };
  });

  if (opts.capture === 'port') {
    for (const mp of ports) {
      const decl = declared.find((d) => d.port === mp.port);
      if (!decl) {
        throw new Denial(
          'undeclared_model_port',
          `${ANNOTATION.capture} "port" needs model port ${mp.port} declared as a named containerPort (Services reach the sidecar by that name); declare it or use ${ANNOTATION.capture}: "redirect"`,
        );
      }
      if (!decl.name) {
        throw new Denial(
          'unnamed_model_port',
          `${ANNOTATION.capture} "port" needs containerPort ${mp.port} of container "${decl.container}" to have a name, and Services to target it by that name; name it or use ${ANNOTATION.capture}: "redirect"`,
        );
      }
      mp.container = decl.container;
      mp.name = decl.name;
    }
    // rename after all lookups so names stay unique inside each container
    for (const mp of ports) {
      const c = (tpl.spec.containers as Obj[]).find((x) => x.name === mp.container)!;
      const taken = new Set<string>((c.ports ?? []).map((p: Obj) => p.name).filter(Boolean));
      ports.forEach((o) => o.renamed && o.container === mp.container && taken.add(o.renamed));
      mp.renamed = renamedPortName(mp.name!, taken);
    }
  }

  const restartPolicy = tpl.spec.restartPolicy;
  if (!opts.native && (restartPolicy === 'Never' || restartPolicy === 'OnFailure')) {
    throw new Denial(
      'classic_sidecar_blocks_completion',
      `${ANNOTATION.nativeSidecar}: "false" with restartPolicy ${restartPolicy}: a classic sidecar never exits, so the pod (and its Job) would never complete; use the native sidecar (Kubernetes >= 1.29)`,
    );
  }
  const first = (tpl.spec.containers as Obj[])[0];
  const allowPaths = opts.capture === 'redirect' ? probeAllowPaths(tpl.spec, ports) : [];
  return {
    ports,
    ...(allowPaths.length > 0 ? { allowPaths } : {}),
    defaultContainer: !opts.native && first ? String(first.name) : undefined,
  };
}

const PROBES = ['startupProbe', 'readinessProbe', 'livenessProbe'] as const;

/** an httpGet probe's port as a number: numbers as they are, names looked up in the container */
function probePort(c: Obj, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  const ports: unknown[] = Array.isArray(c.ports) ? c.ports : [];
  const found = ports.find((p): p is Obj => isObj(p) && p.name === port);
  return typeof found?.containerPort === 'number' ? found.containerPort : undefined;
}

/**
 * The path an httpGet probe can be allowed by: what the kubelet requests (default "/"), without the
 * query string (routes match on the path), and only if the sidecar's --allow-path syntax can say it
 * exactly (no whitespace, no "*", which would turn it into a prefix). undefined = not allowable.
 */
function probePath(h: Obj): string | undefined {
  if (h.scheme !== undefined && h.scheme !== 'HTTP') return undefined; // the sidecar speaks plain HTTP
  const raw = typeof h.path === 'string' && h.path !== '' ? h.path : '/';
  const path = raw.split('?')[0];
  return /^\/[^\s*,]*$/.test(path) ? path : undefined;
}

/**
 * Capture "redirect" sends the kubelet's probes through the sidecar. Only the probes the pod already
 * declares, only GET (all an httpGet probe does), and only on HTTP model ports: what the operator
 * wrote into the pod spec is allowed, nothing more.
 */
function probeAllowPaths(spec: Obj, ports: ModelPort[]): string[] {
  const http = new Set(ports.filter((p) => p.protocol === 'http').map((p) => p.port));
  const out: string[] = [];
  for (const c of spec.containers as Obj[]) {
    for (const probe of PROBES) {
      const h = isObj(c[probe]) ? c[probe].httpGet : undefined;
      if (!isObj(h)) continue;
      const port = probePort(c, h.port);
      const path = probePath(h);
      if (port === undefined || !http.has(port) || path === undefined) continue;
      const entry = `GET ${path}`;
      if (!out.includes(entry)) out.push(entry);
    }
  }
  return out;
}

/**
 * With capture "redirect", kubelet probes come from outside the pod and are redirected too: an HTTP
 * or gRPC probe on a model port reaches the model through the sidecar, whose policy denies routes it
 * does not know (403) unless they are allow-listed. Say so at injection time rather than let the pod
 * sit unready (Istio #41010). Pure: returns warnings, changes nothing.
 */
export function probeWarnings(spec: Obj, modelPorts: number[], allowed: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const c of spec.containers as Obj[]) {
    const resolve = (port: unknown) => probePort(c, port);
    for (const probe of PROBES) {
      const h = c[probe];
      if (!isObj(h)) continue;
      const port = isObj(h.httpGet) ? resolve(h.httpGet.port) : undefined;
      if (port !== undefined && modelPorts.includes(port)) {
        const exact = probePath(h.httpGet);
        const path = typeof h.httpGet.path === 'string' && h.httpGet.path !== '' ? h.httpGet.path : '/';
        if (exact === undefined || !allowed.includes(`GET ${exact}`)) {
          const why =
            h.httpGet.scheme !== undefined && h.httpGet.scheme !== 'HTTP'
              ? 'an HTTPS probe, which the sidecar cannot terminate'
              : exact === undefined
                ? 'its path cannot be written as an exact --allow-path'
                : 'the port is a gRPC model port';
          out.push(
            `inferguard: ${c.name}.${probe} GET ${path} on model port ${port} is redirected through the sidecar and not passed automatically (${why}); use capture "port" or the probe fails`,
          );
        }
      }
      if (isObj(h.grpc) && modelPorts.includes(h.grpc.port)) {
        out.push(
          `inferguard: ${c.name}.${probe} gRPC health check on model port ${h.grpc.port} is redirected through the sidecar; allow it in the policy (spec.grpc.allowMethods: ['/grpc.health.v1.Health/Check']) or the probe is denied`,
        );
      }
    }
  }
  return out;
}

/** IANA_SVC_NAME: ≤ 15 chars, [a-z0-9-], a letter, no leading/trailing or double hyphen */
export function renamedPortName(name: string, taken: Set<string>): string {
  const fit = (base: string, suffix: string) =>
    `${base.slice(0, 15 - suffix.length).replace(/-+$/, '')}${suffix}`;
  const first = fit(name, '-model');
  if (!taken.has(first)) return first;
  for (let i = 2; ; i++) {
    const candidate = fit(name, `-m${i}`);
    if (!taken.has(candidate)) return candidate;
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering the containers and volumes

interface Rendered {
  sidecar: Obj;
  init?: Obj;
  volumes: Obj[];
}

/** the image's V8 heap flags are sized for its default 256Mi limit (docs/sidecar.md, Memory) */
const IMAGE_MEMORY_MIB = 256;
/** code, RE2 programs and buffers that live outside the V8 old space */
const NATIVE_MIB = 96;
const UNIT: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** a validated Kubernetes memory quantity in MiB (rounded down) */
export function quantityMiB(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(e\d+|[A-Za-z]*)$/.exec(q);
  if (!m) throw new Error(`not a memory quantity: ${q}`);
  const factor = m[2].startsWith('e') ? 10 ** Number(m[2].slice(1)) : UNIT[m[2]];
  return Math.floor((Number(m[1]) * factor) / 2 ** 20);
}

/**
 * NODE_OPTIONS for a memory limit other than the image's: the old-space cap follows the limit (minus
 * what lives outside the V8 heap), so V8 collects before the kernel would kill the container. At the
 * image's default the image's own NODE_OPTIONS apply and nothing is added.
 */
export function heapOptions(memory: string): string | undefined {
  const mib = quantityMiB(memory);
  if (mib === IMAGE_MEMORY_MIB) return undefined;
  return `--max-old-space-size=${Math.max(64, mib - NATIVE_MIB)} --max-semi-space-size=4`;
}

const HARDENED = {
  allowPrivilegeEscalation: false,
  privileged: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

function render(plan: Plan, opts: Options, settings: InjectorSettings): Rendered {
  const resources = {
    requests: { cpu: opts.cpu, memory: opts.memory },
    limits: { cpu: opts.cpu, memory: opts.memory },
  };
  const args = ['sidecar'];
  for (const p of plan.ports) args.push(`--${p.protocol}`, `0.0.0.0:${p.listen}=127.0.0.1:${p.port}`);
  args.push('--admin', `0.0.0.0:${ADMIN_PORT}`);
  if (opts.policy) args.push('--policy', POLICY_MOUNT);
  if (opts.mode) args.push('--mode', opts.mode);
  args.push('--fail', opts.fail, '--log-level', opts.logLevel);
  for (const a of plan.allowPaths ?? []) args.push('--allow-path', a);

  const env: Obj[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'OTEL_SERVICE_NAME', value: settings.otelServiceName },
    {
      name: 'OTEL_RESOURCE_ATTRIBUTES',
      value: 'k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)',
    },
  ];
  const nodeOptions = heapOptions(opts.memory);
  if (nodeOptions) env.push({ name: 'NODE_OPTIONS', value: nodeOptions });
  if (settings.otelEndpoint) {
    env.push({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: settings.otelEndpoint });
    if (settings.otelProtocol)
      env.push({ name: 'OTEL_EXPORTER_OTLP_PROTOCOL', value: settings.otelProtocol });
  } else {
    // no collector configured: the SDK's default (localhost:4317 inside the pod) has no listener, so
    // exporting would only fail and retry; turn trace export off instead
    env.push({ name: 'OTEL_TRACES_EXPORTER', value: 'none' });
  }

  const probe = (path: string, period: number, failures: number) => ({
    httpGet: { path, port: ADMIN_PORT },
    periodSeconds: period,
    timeoutSeconds: 1,
    failureThreshold: failures,
  });
  const ports: Obj[] = plan.ports.map((p) =>
    opts.capture === 'port'
      ? { name: p.name, containerPort: p.listen, protocol: 'TCP' }
      : { containerPort: p.listen, protocol: 'TCP' },
  );
  ports.push({ name: 'ig-admin', containerPort: ADMIN_PORT, protocol: 'TCP' });

  const sidecar: Obj = {
    name: SIDECAR_NAME,
    image: opts.image,
    imagePullPolicy: settings.imagePullPolicy ?? 'IfNotPresent',
    command: ['inferguard'],
    args,
    ports,
    env,
    resources,
    securityContext: { ...HARDENED, runAsNonRoot: true, runAsUser: SIDECAR_UID, runAsGroup: SIDECAR_UID },
    // startupProbe: the kubelet starts the next init container / the model only once the sidecar has
    // loaded its policy and bound its listeners (native layout), so no request ever reaches a pod whose
    // guard is still loading. /startupz does not ask the model, which cannot be running yet; /readyz
    // (readiness) does, so the pod turns Ready only once the model answers through the sidecar.
    startupProbe: probe('/startupz', 1, 120),
    readinessProbe: probe('/readyz', 5, 3),
    livenessProbe: probe('/healthz', 10, 3),
  };
  const volumes: Obj[] = [];
  if (opts.policy) {
    // the whole directory, not a subPath: subPath mounts never see ConfigMap updates (hot reload)
    sidecar.volumeMounts = [{ name: POLICY_VOLUME, mountPath: POLICY_MOUNT, readOnly: true }];
    volumes.push({
      name: POLICY_VOLUME,
      configMap: { name: opts.policy, items: [{ key: 'policy.yaml', path: 'policy.yaml' }], optional: false },
    });
  }
  // native sidecar (KEP-753): an init container that keeps running; it ends with the pod, so Jobs complete
  if (opts.native) sidecar.restartPolicy = 'Always';
  let init: Obj | undefined;
  if (opts.capture === 'redirect') {
    init = {
      name: INIT_NAME,
      image: opts.image,
      imagePullPolicy: settings.imagePullPolicy ?? 'IfNotPresent',
      command: ['inferguard'],
      args: ['init-redirect', ...plan.ports.flatMap((p) => ['--port', `${p.port}=${p.listen}`])],
      resources,
      // root with NET_ADMIN/NET_RAW and nothing else: that is what installing iptables rules needs.
      // runAsNonRoot: false is explicit so a pod-level runAsNonRoot: true does not stop this container.
      securityContext: {
        ...HARDENED,
        capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
        runAsNonRoot: false,
        runAsUser: 0,
        runAsGroup: 0,
      },
      // iptables takes its lock in /run (xtables.lock); the root filesystem stays read-only
      volumeMounts: [{ name: XTABLES_VOLUME, mountPath: '/run' }],
    };
    volumes.push({ name: XTABLES_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
  }
  return { sidecar, init, volumes };
}

/** JSON with sorted keys: the API server re-serialises objects in Go field order */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObj(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** are our containers and volumes in `spec` as we would render them (the parts that decide safety)? */
function intact(spec: Obj, rendered: Rendered): boolean {
  const find = (list: unknown, name: string): Obj | undefined =>
    (Array.isArray(list) ? list : []).find((c: unknown) => isObj(c) && c.name === name);
  const essentials = (c: Obj | undefined) =>
    c &&
    canonical([
      c.image,
      c.command,
      c.args,
      c.securityContext ?? null,
      c.restartPolicy ?? null,
      c.ports ?? null,
    ]);
  const native = rendered.sidecar.restartPolicy === 'Always';
  if (
    essentials(find(native ? spec.initContainers : spec.containers, SIDECAR_NAME)) !==
    essentials(rendered.sidecar)
  )
    return false;
  if (rendered.init && essentials(find(spec.initContainers, INIT_NAME)) !== essentials(rendered.init))
    return false;
  // volumes by name (and ConfigMap name): the API server defaults fields such as configMap.defaultMode
  return rendered.volumes.every((v) => {
    const found = find(spec.volumes, v.name);
    return found !== undefined && (!v.configMap || found.configMap?.name === v.configMap.name);
  });
}

function hashOf(value: unknown): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16)}`;
}

// Container order (native layout): [inferguard-init, inferguard-sidecar, ...user init containers].
// The redirect rules go in first, before anything in the pod can accept a connection; the sidecar
// starts next and (startupProbe) is ready before user init containers or the model run, so there is
// no window where the model port answers unguarded. Classic layout: init first among initContainers,
// sidecar first among containers (no ordering guarantee there; the redirect still fails closed).
function apply(tpl: Template, plan: Plan, rendered: Rendered, hash: string): void {
  const spec = tpl.spec;
  const status: InjectionStatus = {
    version: STATUS_VERSION,
    hash,
    layout: rendered.sidecar.restartPolicy === 'Always' ? 'native' : 'classic',
    capture: rendered.init ? 'redirect' : 'port',
    ports: plan.ports.map((p) => `${p.port}=${p.protocol}:${p.listen}`),
    containers: [...(rendered.init ? [INIT_NAME] : []), SIDECAR_NAME],
    volumes: rendered.volumes.map((v) => v.name),
    renamedPorts: {},
    annotations: [],
  };
  const inits: Obj[] = [];
  if (rendered.init) inits.push(rendered.init);
  if (status.layout === 'native') inits.push(rendered.sidecar);
  if (inits.length > 0) spec.initContainers = [...inits, ...(spec.initContainers ?? [])];
  if (status.layout === 'classic') spec.containers = [rendered.sidecar, ...spec.containers];
  if (rendered.volumes.length > 0) spec.volumes = [...(spec.volumes ?? []), ...rendered.volumes];

  for (const mp of plan.ports) {
    if (!mp.container || !mp.renamed || !mp.name) continue;
    const c = (spec.containers as Obj[]).find((x) => x.name === mp.container)!;
    renameContainerPorts(c, { [mp.name]: mp.renamed });
    (status.renamedPorts[mp.container] ??= {})[mp.renamed] = mp.name;
  }
  const annotations = (tpl.meta.annotations ??= {});
  const DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';
  if (plan.defaultContainer && annotations[DEFAULT_CONTAINER] === undefined) {
    annotations[DEFAULT_CONTAINER] = plan.defaultContainer;
    status.annotations.push(DEFAULT_CONTAINER);
  }
  annotations[ANNOTATION.status] = JSON.stringify(status);
}
