// Public functions of the engine. See policy/index.ts for the contract.
// (Skeleton: implementations land in load.ts, compile.ts, scan.ts, stream.ts.)
import type {
  Direction,
  Finding,
  LimitsSpec,
  Mode,
  PolicyProblem,
  PolicyTestCase,
  RequestExchange,
  RequestVerdict,
  ResponseExchange,
  ResponseVerdict,
  ScanContext,
  ScanResult,
  StreamScanner,
  ToolCall,
} from './types.js';

export interface CompiledPolicy {
  readonly name: string;
  /** sha256 hex of the effective policy, exported as a metric label and in /readyz */
  readonly hash: string;
  readonly mode: Mode;
  readonly limits: Readonly<Required<LimitsSpec>>;
  readonly http: { readonly allowPaths: readonly string[] };
  readonly grpc: { readonly allowMethods: readonly string[] };
  readonly tests: readonly (PolicyTestCase & { file?: string; line?: number })[];
  readonly ruleCount: number;
}

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

const todo = (name: string): never => {
  throw new Error(`policy.${name} is not implemented yet`);
};

// Loading (load.ts): YAML → schema → merge → packs/overrides → RE2 checks → ResolvedPolicy → compile.
export { loadPolicy, loadPolicyText, validatePolicyText, defaultPolicy, emptyPolicy } from './load.js';
export function withMode(_p: CompiledPolicy, _mode: Mode): CompiledPolicy {
  return todo('withMode');
}
export function scanText(
  _p: CompiledPolicy,
  _text: string,
  _direction: Direction,
  _ctx?: ScanContext,
): ScanResult {
  return todo('scanText');
}
export function scanRequest(_p: CompiledPolicy, _req: RequestExchange): RequestVerdict {
  return todo('scanRequest');
}
export function scanResponse(
  _p: CompiledPolicy,
  _res: ResponseExchange,
  _ctx?: ScanContext,
): ResponseVerdict {
  return todo('scanResponse');
}
export function checkToolCall(_p: CompiledPolicy, _call: ToolCall, _direction: Direction): Finding[] {
  return todo('checkToolCall');
}
export function createStreamScanner(
  _p: CompiledPolicy,
  _opts: { direction: Direction; path?: string; systemPrompt?: string },
): StreamScanner {
  return todo('createStreamScanner');
}
