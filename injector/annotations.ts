// Every `inferguard.io/*` key the injector reads or writes, in one place, with its allowed values and
// default. docs/annotations.md is checked against this table by annotations.test.ts (both directions),
// so a key cannot be added here without being documented, nor documented without existing.

export const PREFIX = 'inferguard.io/';

export const ANNOTATION = {
  inject: 'inferguard.io/inject',
  ports: 'inferguard.io/ports',
  policy: 'inferguard.io/policy',
  capture: 'inferguard.io/capture',
  mode: 'inferguard.io/mode',
  fail: 'inferguard.io/fail',
  nativeSidecar: 'inferguard.io/native-sidecar',
  image: 'inferguard.io/image',
  cpu: 'inferguard.io/cpu',
  memory: 'inferguard.io/memory',
  logLevel: 'inferguard.io/log-level',
  status: 'inferguard.io/status',
} as const;

/** namespace label that scopes the webhook (the MutatingWebhookConfiguration's namespaceSelector) */
export const NAMESPACE_LABEL = 'inferguard.io/injection';
/** ConfigMap label that sends a policy ConfigMap through /validate-policy */
export const POLICY_CONFIGMAP_LABEL = 'inferguard.io/policy';
/** the key a policy ConfigMap must hold */
export const POLICY_CONFIGMAP_KEY = 'policy.yaml';

export type AnnotationKey = (typeof ANNOTATION)[keyof typeof ANNOTATION];

export interface AnnotationDoc {
  key: AnnotationKey;
  /** human description of the allowed values, used verbatim in denial messages */
  values: string;
  default: string;
  /** who sets it: the user, or the injector itself */
  writtenBy: 'user' | 'injector';
}

export const ANNOTATION_DOCS: readonly AnnotationDoc[] = [
  { key: ANNOTATION.inject, values: '"true" or "false"', default: 'not injected', writtenBy: 'user' },
  {
    key: ANNOTATION.ports,
    values:
      'comma-separated PORT=PROTOCOL (or bare PORT), PORT 1-65535, PROTOCOL http or grpc, e.g. "8000=http,8001=grpc"',
    default: 'every declared TCP containerPort; grpc if its name contains "grpc" or "h2c", else http',
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.policy,
    values:
      'the name of a ConfigMap in the pod\'s namespace holding key "policy.yaml" (a DNS-1123 subdomain)',
    default: 'built-in default policy',
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.capture,
    values: '"redirect" or "port"',
    default: "the injector's --default-capture (redirect)",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.mode,
    values: '"enforce" or "monitor"',
    default: "the policy's spec.mode",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.fail,
    values: '"closed" or "open"',
    default: "the injector's --default-fail (closed)",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.nativeSidecar,
    values: '"true" or "false"',
    default: "the injector's --default-native-sidecar (true)",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.image,
    values: 'a container image reference without whitespace',
    default: "the injector's --sidecar-image",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.cpu,
    values: 'a Kubernetes CPU quantity, e.g. "250m" or "1"',
    default: "the injector's --sidecar-cpu",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.memory,
    values: 'a Kubernetes memory quantity, e.g. "256Mi"',
    default: "the injector's --sidecar-memory",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.logLevel,
    values: '"trace", "debug", "info", "warn" or "error"',
    default: "the injector's --sidecar-log-level",
    writtenBy: 'user',
  },
  {
    key: ANNOTATION.status,
    values: 'JSON written by the injector (what was injected and a hash of the settings)',
    default: 'absent',
    writtenBy: 'injector',
  },
];

const KNOWN = new Set<string>(Object.values(ANNOTATION));

export function isKnownAnnotation(key: string): boolean {
  return KNOWN.has(key);
}

export function describeAllowed(key: AnnotationKey): string {
  return ANNOTATION_DOCS.find((d) => d.key === key)?.values ?? '';
}
