// Validation of policy ConfigMaps (labelled inferguard.io/policy: "true"), shared by the validating
// webhook (/validate-policy) and `inferguard inject`, so a manifest with a broken policy fails offline
// exactly as `kubectl apply` would fail against the webhook.
import { formatProblem, validatePolicySources, type PolicyProblem } from '../policy/index.js';
import { POLICY_CONFIGMAP_KEY, POLICY_CONFIGMAP_LABEL } from './annotations.js';

const MAX_PROBLEMS_SHOWN = 20;

export type PolicyCheck =
  | { ok: true; reason: 'valid_policy' | 'not_a_policy' }
  | { ok: false; reason: 'missing_policy_key' | 'invalid_policy' | 'validation_error'; message: string };

export function isPolicyConfigMap(o: unknown): boolean {
  const cm = o as { kind?: unknown; metadata?: { labels?: Record<string, unknown> } } | null;
  return (
    cm?.metadata?.labels?.[POLICY_CONFIGMAP_LABEL] === 'true' &&
    (cm.kind === undefined || cm.kind === 'ConfigMap')
  );
}

export function checkPolicyConfigMap(cm: unknown): PolicyCheck {
  if (!isPolicyConfigMap(cm)) return { ok: true, reason: 'not_a_policy' };
  const text = (cm as { data?: Record<string, unknown> }).data?.[POLICY_CONFIGMAP_KEY];
  if (typeof text !== 'string') {
    return {
      ok: false,
      reason: 'missing_policy_key',
      message: `${POLICY_CONFIGMAP_KEY}:1:1: a ConfigMap labelled ${POLICY_CONFIGMAP_LABEL}: "true" must hold its policy under data."${POLICY_CONFIGMAP_KEY}"`,
    };
  }
  // The sidecar mounts the whole ConfigMap as a directory and loads EVERY *.yaml/*.yml key in it, merged
  // in name order (docs/policy.md), so every such key is validated, together, the same way. Checking
  // policy.yaml alone let a broken second key through admission (found by the hardening work); the
  // sidecar then refused to start or kept its last good policy.
  const data = (cm as { data?: Record<string, unknown> }).data ?? {};
  const isPolicyFile = (n: string): boolean => !n.startsWith('.') && /\.ya?ml$/.test(n);
  const binary = Object.keys((cm as { binaryData?: Record<string, unknown> }).binaryData ?? {}).filter(
    isPolicyFile,
  );
  if (binary.length > 0) {
    return {
      ok: false,
      reason: 'invalid_policy',
      message: `${binary[0]}:1:1: policy files belong under data, not binaryData (the sidecar would load it unchecked)`,
    };
  }
  const sources = Object.keys(data)
    .filter(isPolicyFile)
    .sort()
    .map((file) => ({ file, text: typeof data[file] === 'string' ? data[file] : String(data[file]) }));
  let problems: PolicyProblem[];
  try {
    problems = validatePolicySources(sources);
  } catch (err) {
    // an engine fault rejects (fail closed): a policy we could not check is not known to be good
    return {
      ok: false,
      reason: 'validation_error',
      message: `policy validation failed: ${(err as Error).message}`,
    };
  }
  if (problems.length === 0) return { ok: true, reason: 'valid_policy' };
  const shown = problems.slice(0, MAX_PROBLEMS_SHOWN).map(formatProblem);
  if (problems.length > MAX_PROBLEMS_SHOWN) shown.push(`… and ${problems.length - MAX_PROBLEMS_SHOWN} more`);
  return { ok: false, reason: 'invalid_policy', message: shown.join('\n') };
}
