// Checks a pod spec the way the API server and kubelet would, for the rules an injector can break:
// native-sidecar rules (KEP-753), names, ports, probes, volumes, securityContext. Istio #49221 and
// #52245 shipped patches the API server rejected; the golden tests run every output through this
// (and through the kubernetes-models OpenAPI schema) so ours cannot. Also: Pod Security "restricted".
type Obj = Record<string, any>;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const IANA_SVC_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const HANDLERS = ['exec', 'httpGet', 'tcpSocket', 'grpc'] as const;

/** problems the API server (or the kubelet, for runAsNonRoot) would report; [] when valid */
export function checkPodSpec(spec: Obj, opts: { job?: boolean } = {}): string[] {
  const problems: string[] = [];
  const containers: Obj[] = Array.isArray(spec.containers) ? spec.containers : [];
  const inits: Obj[] = Array.isArray(spec.initContainers) ? spec.initContainers : [];
  if (containers.length === 0) problems.push('spec.containers: at least one container is required');

  const volumes = new Set<string>();
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    if (!DNS_LABEL.test(v.name ?? '')) problems.push(`spec.volumes[${i}].name: invalid "${v.name}"`);
    if (volumes.has(v.name)) problems.push(`spec.volumes[${i}].name: duplicate "${v.name}"`);
    volumes.add(v.name);
  }

  const names = new Set<string>();
  const all: [string, Obj][] = [
    ...inits.map((c, i): [string, Obj] => [`spec.initContainers[${i}]`, c]),
    ...containers.map((c, i): [string, Obj] => [`spec.containers[${i}]`, c]),
  ];
  for (const [at, c] of all) {
    const isInit = at.startsWith('spec.initContainers');
    if (!DNS_LABEL.test(c.name ?? '')) problems.push(`${at}.name: invalid "${c.name}"`);
    if (names.has(c.name))
      problems.push(`${at}.name: duplicate "${c.name}" (names are unique across all containers)`);
    names.add(c.name);
    if (!c.image) problems.push(`${at}.image: required`);

    // restartPolicy on a container: only "Always", only on init containers (native sidecar)
    if (c.restartPolicy !== undefined) {
      if (!isInit) problems.push(`${at}.restartPolicy: forbidden on regular containers`);
      else if (c.restartPolicy !== 'Always') problems.push(`${at}.restartPolicy: only "Always" is supported`);
    }
    const restartable = isInit && c.restartPolicy === 'Always';
    for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle'] as const) {
      if (isInit && !restartable && c[p] !== undefined) {
        problems.push(`${at}.${p}: may not be set for init containers without restartPolicy: Always`);
      }
    }

    const portNames = new Set<string>();
    for (const [j, p] of (c.ports ?? []).entries()) {
      const pat = `${at}.ports[${j}]`;
      if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) {
        problems.push(`${pat}.containerPort: must be 1-65535`);
      }
      if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol))
        problems.push(`${pat}.protocol: invalid`);
      if (p.name !== undefined) {
        if (!IANA_SVC_NAME.test(p.name))
          problems.push(`${pat}.name: "${p.name}" is not a valid IANA_SVC_NAME`);
        if (portNames.has(p.name)) problems.push(`${pat}.name: duplicate "${p.name}"`);
        portNames.add(p.name);
      }
    }

    for (const probeName of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
      const probe = c[probeName];
      if (!probe) continue;
      const pat = `${at}.${probeName}`;
      checkHandler(probe, pat, portNames, problems);
      if (
        probeName === 'startupProbe' &&
        probe.successThreshold !== undefined &&
        probe.successThreshold !== 1
      ) {
        problems.push(`${pat}.successThreshold: must be 1`);
      }
      if (
        probeName === 'livenessProbe' &&
        probe.successThreshold !== undefined &&
        probe.successThreshold !== 1
      ) {
        problems.push(`${pat}.successThreshold: must be 1`);
      }
    }
    for (const hook of ['postStart', 'preStop'] as const) {
      if (c.lifecycle?.[hook])
        checkHandler(c.lifecycle[hook], `${at}.lifecycle.${hook}`, portNames, problems);
    }

    const mountPaths = new Set<string>();
    for (const [j, m] of (c.volumeMounts ?? []).entries()) {
      if (!volumes.has(m.name)) problems.push(`${at}.volumeMounts[${j}].name: volume "${m.name}" not found`);
      if (mountPaths.has(m.mountPath))
        problems.push(`${at}.volumeMounts[${j}].mountPath: duplicate "${m.mountPath}"`);
      mountPaths.add(m.mountPath);
    }
    const envNames = new Set<string>();
    for (const [j, e] of (c.env ?? []).entries()) {
      if (!ENV_NAME.test(e.name ?? '')) problems.push(`${at}.env[${j}].name: invalid "${e.name}"`);
      if (e.value !== undefined && e.valueFrom !== undefined)
        problems.push(`${at}.env[${j}]: value and valueFrom are exclusive`);
      envNames.add(e.name);
    }
    for (const kind of ['cpu', 'memory'] as const) {
      const req = c.resources?.requests?.[kind];
      const lim = c.resources?.limits?.[kind];
      if (req !== undefined && lim !== undefined && quantity(req) > quantity(lim)) {
        problems.push(`${at}.resources.requests.${kind}: must be <= limit`);
      }
    }

    // kubelet: runAsNonRoot with an explicit root uid never starts ("CreateContainerConfigError")
    const nonRoot = c.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
    const uid = c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
    if (nonRoot === true && uid === 0)
      problems.push(`${at}.securityContext: runAsNonRoot with runAsUser 0 cannot start`);
    if (c.securityContext?.privileged === true && c.securityContext?.allowPrivilegeEscalation === false) {
      problems.push(`${at}.securityContext: privileged with allowPrivilegeEscalation false is rejected`);
    }
  }

  if (opts.job && spec.restartPolicy !== 'Never' && spec.restartPolicy !== 'OnFailure') {
    problems.push('spec.restartPolicy: a Job template needs Never or OnFailure');
  }
  return problems;
}

function checkHandler(h: Obj, at: string, portNames: Set<string>, problems: string[]): void {
  const set = HANDLERS.filter((k) => h[k] !== undefined);
  if (set.length !== 1) problems.push(`${at}: exactly one handler must be set (${set.join(', ') || 'none'})`);
  for (const k of ['httpGet', 'tcpSocket'] as const) {
    const port = h[k]?.port;
    if (port === undefined) continue;
    if (typeof port === 'number' && (port < 1 || port > 65535))
      problems.push(`${at}.${k}.port: must be 1-65535`);
    if (typeof port === 'string' && !portNames.has(port)) {
      problems.push(`${at}.${k}.port: named port "${port}" is not declared by this container`);
    }
  }
}

function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return NaN;
  const mult: Record<string, number> = {
    m: 1e-3,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
}

const RESTRICTED_VOLUMES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
];

/** Pod Security Standards "restricted" (v1.30 rules); [] when the pod passes */
export function checkRestricted(spec: Obj): string[] {
  const problems: string[] = [];
  const pod = spec.securityContext ?? {};
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) problems.push('host namespaces are not allowed');
  for (const v of spec.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!type || !RESTRICTED_VOLUMES.includes(type))
      problems.push(`volume "${v.name}" of type ${type} is not allowed`);
  }
  const all: Obj[] = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
  for (const c of all) {
    const sc = c.securityContext ?? {};
    const at = `container "${c.name}"`;
    if (sc.privileged) problems.push(`${at}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation must be false`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) problems.push(`${at}: capabilities must drop ALL`);
    const added: string[] = sc.capabilities?.add ?? [];
    if (added.some((cap) => cap !== 'NET_BIND_SERVICE'))
      problems.push(`${at}: adds capabilities ${added.join(', ')}`);
    if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${at}: runAsNonRoot must be true`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) problems.push(`${at}: runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
      problems.push(`${at}: seccompProfile must be RuntimeDefault or Localhost`);
    for (const p of c.ports ?? []) if (p.hostPort) problems.push(`${at}: hostPort ${p.hostPort}`);
  }
  return problems;
}
