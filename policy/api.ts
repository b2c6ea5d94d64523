// Public functions of the engine. See policy/index.ts for the contract.
import type { PolicyProblem } from './types.js';

// CompiledPolicy lives with the compiler (compile.ts); its public fields are the contract above `engine`.
export type { CompiledPolicy } from './compile.js';

export class PolicyLoadError extends Error {
  readonly problems: PolicyProblem[];
  constructor(problems: PolicyProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'PolicyLoadError';
    this.problems = problems;
  }
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

// Loading (load.ts): YAML → schema → merge → packs/overrides → RE2 checks → ResolvedPolicy → compile.
export { loadPolicy, loadPolicyText, validatePolicyText, defaultPolicy, emptyPolicy } from './load.js';
// Several texts validated as ONE policy, merged exactly like a directory of files: the injector's
// ConfigMap webhook checks every *.yaml key of a policy ConfigMap, since the sidecar mounts the whole
// ConfigMap and loads every such key (added for the hardening work; additive).
import { resolveSources, type PolicySource } from './load.js';
export type { PolicySource } from './load.js';
export function validatePolicySources(sources: PolicySource[]): PolicyProblem[] {
  return resolveSources(sources).problems;
}
// Scanning (compile.ts, scan.ts, stream.ts): normalize → RE2 sets → scanners → decisions.
export { compilePolicy, withMode } from './compile.js';
export { scanText, scanRequest, scanResponse, checkToolCall } from './scan.js';
export { createStreamScanner } from './stream.js';
