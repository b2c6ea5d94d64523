// Injector settings from flags and INFERGUARD_* environment variables (flags win), shared by
// `inferguard injector` and `inferguard inject` so both render the same sidecar.
import { DEFAULT_SETTINGS, type InjectorSettings } from './mutate.js';

/** flag name → env var, default and meaning (printed by --help, documented in docs/injector.md) */
export const SETTING_FLAGS = {
  'sidecar-image': {
    env: 'INFERGUARD_SIDECAR_IMAGE',
    help: `sidecar image (default ${DEFAULT_SETTINGS.image})`,
  },
  'sidecar-cpu': {
    env: 'INFERGUARD_SIDECAR_CPU',
    help: `sidecar CPU request = limit (default ${DEFAULT_SETTINGS.cpu})`,
  },
  'sidecar-memory': {
    env: 'INFERGUARD_SIDECAR_MEMORY',
    help: `sidecar memory request = limit (default ${DEFAULT_SETTINGS.memory})`,
  },
  'sidecar-log-level': {
    env: 'INFERGUARD_SIDECAR_LOG_LEVEL',
    help: `sidecar --log-level (default ${DEFAULT_SETTINGS.logLevel})`,
  },
  'image-pull-policy': {
    env: 'INFERGUARD_IMAGE_PULL_POLICY',
    help: 'Always | IfNotPresent | Never (default IfNotPresent)',
  },
  'otel-endpoint': {
    env: 'INFERGUARD_OTEL_ENDPOINT',
    help: 'OTEL_EXPORTER_OTLP_ENDPOINT given to sidecars (unset: they get OTEL_TRACES_EXPORTER=none)',
  },
  'otel-protocol': {
    env: 'INFERGUARD_OTEL_PROTOCOL',
    help: 'OTEL_EXPORTER_OTLP_PROTOCOL given to sidecars (grpc | http/protobuf)',
  },
  'otel-service-name': {
    env: 'INFERGUARD_OTEL_SERVICE_NAME',
    help: `OTEL_SERVICE_NAME given to sidecars (default ${DEFAULT_SETTINGS.otelServiceName})`,
  },
  'allowed-image-prefixes': {
    env: 'INFERGUARD_ALLOWED_IMAGE_PREFIXES',
    help: 'comma-separated prefixes an inferguard.io/image annotation must start with (default: any image)',
  },
  'default-capture': {
    env: 'INFERGUARD_DEFAULT_CAPTURE',
    help: 'inferguard.io/capture for pods without it: redirect | port (default redirect)',
  },
  'default-fail': {
    env: 'INFERGUARD_DEFAULT_FAIL',
    help: 'inferguard.io/fail for pods without it: closed | open (default closed)',
  },
  'default-native-sidecar': {
    env: 'INFERGUARD_DEFAULT_NATIVE_SIDECAR',
    help: 'inferguard.io/native-sidecar for pods without it: true | false (default true)',
  },
  'injector-namespace': {
    env: 'INFERGUARD_NAMESPACE',
    help: `the injector's own namespace, never injected (default ${DEFAULT_SETTINGS.injectorNamespace})`,
  },
} as const;

export type SettingFlag = keyof typeof SETTING_FLAGS;

export class UsageError extends Error {}

export function settingsFrom(
  flags: Partial<Record<SettingFlag, string>>,
  env: NodeJS.ProcessEnv,
): InjectorSettings {
  const get = (f: SettingFlag): string | undefined => {
    const v = flags[f] ?? env[SETTING_FLAGS[f].env];
    return v === '' ? undefined : v;
  };
  const pull = get('image-pull-policy');
  if (pull !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pull)) {
    throw new UsageError(`--image-pull-policy: "${pull}" is not one of Always, IfNotPresent, Never`);
  }
  const s: InjectorSettings = {
    image: get('sidecar-image') ?? DEFAULT_SETTINGS.image,
    imagePullPolicy: (pull as InjectorSettings['imagePullPolicy']) ?? DEFAULT_SETTINGS.imagePullPolicy,
    cpu: get('sidecar-cpu') ?? DEFAULT_SETTINGS.cpu,
    memory: get('sidecar-memory') ?? DEFAULT_SETTINGS.memory,
    logLevel: get('sidecar-log-level') ?? DEFAULT_SETTINGS.logLevel,
    otelServiceName: get('otel-service-name') ?? DEFAULT_SETTINGS.otelServiceName,
    injectorNamespace: get('injector-namespace') ?? DEFAULT_SETTINGS.injectorNamespace,
  };
  const endpoint = get('otel-endpoint');
  if (endpoint) s.otelEndpoint = endpoint;
  const protocol = get('otel-protocol');
  if (protocol) s.otelProtocol = protocol;
  const choice = <T extends string>(f: SettingFlag, allowed: readonly T[]): T | undefined => {
    const v = get(f);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v))
      throw new UsageError(`--${f}: "${v}" is not one of ${allowed.join(', ')}`);
    return v as T;
  };
  const capture = choice('default-capture', ['redirect', 'port'] as const);
  if (capture) s.capture = capture;
  const fail = choice('default-fail', ['closed', 'open'] as const);
  if (fail) s.fail = fail;
  const native = choice('default-native-sidecar', ['true', 'false'] as const);
  if (native) s.nativeSidecar = native === 'true';
  const prefixes = get('allowed-image-prefixes')
    ?.split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (prefixes?.length) s.allowedImagePrefixes = prefixes;
  return s;
}

/** parseArgs option table for the setting flags */
export function settingOptions(): Record<SettingFlag, { type: 'string' }> {
  return Object.fromEntries(
    Object.keys(SETTING_FLAGS).map((k) => [k, { type: 'string' as const }]),
  ) as Record<SettingFlag, { type: 'string' }>;
}

export function settingsHelp(exclude: SettingFlag[] = []): string {
  const arg: Record<SettingFlag, string> = {
    'sidecar-image': 'IMAGE',
    'sidecar-cpu': 'QUANTITY',
    'sidecar-memory': 'QUANTITY',
    'sidecar-log-level': 'LEVEL',
    'image-pull-policy': 'POLICY',
    'otel-endpoint': 'URL',
    'otel-protocol': 'PROTOCOL',
    'otel-service-name': 'NAME',
    'allowed-image-prefixes': 'P,…',
    'default-capture': 'MODE',
    'default-fail': 'MODE',
    'default-native-sidecar': 'BOOL',
    'injector-namespace': 'NS',
  };
  return Object.entries(SETTING_FLAGS)
    .filter(([flag]) => !exclude.includes(flag as SettingFlag))
    .map(([flag, d]) => `  ${`--${flag} ${arg[flag as SettingFlag]}`.padEnd(31)} ${d.help} [$${d.env}]`)
    .join('\n');
}
