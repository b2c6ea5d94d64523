// The engine's only entry point. Nothing else leaves policy/.
//
// CONTRACT (implemented across policy/*.ts; adapters and CLI rely on exactly these names):
//
//   loadPolicy(paths?: string | string[]): Promise<CompiledPolicy>
//       file or directory (merged, see docs/policy.md); undefined = built-in default policy.
//       Throws PolicyLoadError (.problems: PolicyProblem[], sorted by file/line/col).
//   loadPolicyText(text: string, file: string): CompiledPolicy     (throws PolicyLoadError)
//   validatePolicyText(text: string, file: string): PolicyProblem[] (used by the injector's ConfigMap webhook)
//   validatePolicySources(sources: {file, text}[]): PolicyProblem[]  several texts merged as one policy,
//       like a directory (the ConfigMap webhook: every *.yaml key of the ConfigMap)
//   defaultPolicy(): CompiledPolicy     built-in default (all packs, tools default allow)
//   emptyPolicy(): CompiledPolicy       no rules at all (benchmarks, pass-through comparisons)
//   formatProblem(p: PolicyProblem): string   -> "file:line:col: message"
//   withMode(p, mode): CompiledPolicy   the same policy with its mode overridden (sidecar --mode)
//
//   scanText(p, text, direction, ctx?): ScanResult
//   scanRequest(p, req: RequestExchange): RequestVerdict
//   scanResponse(p, res: ResponseExchange, ctx?: ScanContext): ResponseVerdict
//   checkToolCall(p, call: ToolCall, direction): Finding[]
//   createStreamScanner(p, { direction, path?, systemPrompt? }): StreamScanner
//
// CompiledPolicy is immutable; hot reload swaps the whole object. Its public fields:
//   name, hash (sha256 hex of the normalized spec), mode, limits (resolved with defaults),
//   http.allowPaths, grpc.allowMethods, tests, and ruleCount.

export * from './types.js';
export * from './api.js';
