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
// Scanning (compile.ts, scan.ts, stream.ts): normalize → RE2 sets → scanners → decisions.
export { compilePolicy, withMode } from './compile.js';
export { scanText, scanRequest, scanResponse, checkToolCall } from './scan.js';
export { createStreamScanner } from './stream.js';
