// Hand-built ResolvedPolicy objects (the compiler's input) for tests and benchmarks, so the scanning half
// of the engine is exercised without the YAML loader.
import type { Action, Direction, ResolvedPolicy, ResolvedRule, Source, ValidatorName } from '../types.js';
import { compilePolicy, type CompiledPolicy } from '../compile.js';

export interface RuleInput {
  id: string;
  pattern: string;
  action?: Action;
  category?: string;
  directions?: Direction[];
  sources?: Source[];
  validate?: ValidatorName;
  message?: string;
}

export function rule(r: RuleInput): ResolvedRule {
  return {
    id: r.id,
    pattern: r.pattern,
    category: r.category ?? 'custom',
    action: r.action ?? 'block',
    directions: r.directions ?? ['input', 'output'],
    sources: r.sources,
    validate: r.validate,
    message: r.message,
    origin: { file: 'test.yaml', line: 1, col: 1 },
  };
}

export function resolved(
  over: Partial<Omit<ResolvedPolicy, 'rules'>> & { rules?: RuleInput[] } = {},
): ResolvedPolicy {
  return {
    name: over.name ?? 'test',
    mode: over.mode ?? 'enforce',
    rules: (over.rules ?? []).map(rule),
    limits: {
      maxRequestBytes: 4_194_304,
      maxMessages: 512,
      maxOutputTokens: 0,
      maxDecodeDepth: 2,
      maxDecodedBytes: 65_536,
      maxHoldback: 256,
      ...over.limits,
    },
    tools: over.tools ?? { default: 'allow', allow: [], deny: [] },
    output: over.output ?? {
      urls: { allowDomains: [], blockMarkdownImages: false },
      systemPromptLeakMinChars: 0,
    },
    http: over.http ?? { allowPaths: [] },
    grpc: over.grpc ?? { allowMethods: [] },
    tests: over.tests ?? [],
  };
}

export function compiled(over: Parameters<typeof resolved>[0] = {}): CompiledPolicy {
  return compilePolicy(resolved(over));
}
