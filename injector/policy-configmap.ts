// Validation of policy ConfigMaps (labelled inferguard.io/policy: "true"), shared by the validating
// webhook (/validate-policy) and `inferguard inject`, so a manifest with a broken policy fails offline
// exactly as `kubectl apply` would fail against the webhook.
import { formatProblem, validatePolicyText, type PolicyProblem } from '../policy/index.js';
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
  let problems: PolicyProblem[];
  try {
    problems = validatePolicyText(text, POLICY_CONFIGMAP_KEY);
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
