// The engine's public data model. Adapters (sidecar/grpc, sidecar/http), the CLI and the injector
// only ever see these types: the engine is protocol-agnostic and does no network I/O.
//
// Offsets: every `start`/`end` is a UTF-16 code-unit index into the ORIGINAL text the caller passed
// (what String.prototype.slice takes), never into normalized or decoded text.

export type Direction = 'input' | 'output';
export type Action = 'block' | 'redact' | 'monitor' | 'allow';
/** Overall decision for a scan. `monitor` = findings recorded, nothing blocked or changed. */
export type Decision = 'allow' | 'block' | 'redact' | 'monitor';
export type Mode = 'enforce' | 'monitor';

/** Where in an exchange a piece of text came from. `tool` = tool results, `retrieved` = documents. */
export type Source = 'system' | 'user' | 'assistant' | 'tool' | 'retrieved' | 'parameter' | 'output';

/** Post-match validators a rule may name to cut false positives (policy/scanners/validators.ts). */
export type ValidatorName = 'luhn' | 'iban' | 'ssn' | 'entropy' | 'ip';

export interface Finding {
  /** rule id, e.g. `secrets.aws-access-key`, `acme.codename`, `tools.denied`, `limits.maxRequestBytes` */
  rule: string;
  /** e.g. `prompt-injection`, `secrets`, `pii`, `exfiltration`, `tools`, `limits`, `leak`, `custom` */
  category: string;
  /** effective action after overrides (policy `mode: monitor` turns block/redact into monitor) */
  action: Action;
  direction: Direction;
  /** offsets into the original text of `path` (UTF-16 code units); -1 when not text-based */
  start: number;
  end: number;
  /** the rule's message; never contains matched text */
  message?: string;
  /** which part of the exchange, e.g. `messages[2].content`, `tool_calls[0].function.arguments` */
  path?: string;
  /** tool name for tool findings */
  tool?: string;
  /** true when found in decoded (base64/hex/url) content; offsets then cover the encoded run */
  decoded?: boolean;
}

export interface ScanResult {
  decision: Decision;
  findings: Finding[];
  /** the text with every `redact` finding replaced; present when decision is `redact` */
  text?: string;
}

// ---------------------------------------------------------------------------------------------
// Policy as written (after YAML parsing, schema validation and merging). See docs/policy.md.

export interface RuleSpec {
  id: string;
  /** RE2 syntax only */
  pattern: string;
  category?: string;
  description?: string;
  directions?: Direction[];
  action?: Action;
  message?: string;
  /** which sources the rule applies to (input direction); default all */
  sources?: Source[];
  validate?: ValidatorName;
  /** minimum Shannon entropy (bits/char) of the match or of its capture group 1, with validate: entropy */
  minEntropy?: number;
  /** for packs: whether a rule is on unless enabled by an override (default true) */
  enabled?: boolean;
}

export interface OverrideSpec {
  rule?: string;
  category?: string;
  action?: Action;
  directions?: Direction[];
  enabled?: boolean;
}

export interface ArgConstraint {
  pattern?: string;
  deny?: string[];
  enum?: (string | number | boolean)[];
  minimum?: number;
  maximum?: number;
  required?: boolean;
}

export interface ToolAllowSpec {
  name: string;
  args?: Record<string, ArgConstraint>;
}

export interface ToolsSpec {
  default?: 'allow' | 'deny';
  allow?: ToolAllowSpec[];
  deny?: string[];
}

export interface LimitsSpec {
  maxRequestBytes?: number;
  maxMessages?: number;
  maxOutputTokens?: number;
  /** decoded base64/hex/url payload caps */
  maxDecodeDepth?: number;
  maxDecodedBytes?: number;
  /** streaming hold-back cap in characters (unbounded patterns are capped to this) */
  maxHoldback?: number;
}

export interface PolicySpec {
  mode?: Mode;
  packs?: string[];
  overrides?: OverrideSpec[];
  rules?: RuleSpec[];
  limits?: LimitsSpec;
  tools?: ToolsSpec;
  output?: {
    urls?: { allowDomains?: string[]; blockMarkdownImages?: boolean };
    systemPromptLeak?: boolean | { minChars?: number };
  };
  http?: { allowPaths?: string[] };
  grpc?: { allowMethods?: string[] };
  tests?: PolicyTestCase[];
}

export interface PolicyTestCase {
  input?: string;
  output?: string;
  system?: string;
  /** input cases: the source the text stands for (default user) */
  source?: Source;
  expect: Decision;
  rule?: string;
  name?: string;
}

export interface GuardPolicy {
  apiVersion: 'inferguard.io/v1alpha1';
  kind: 'GuardPolicy';
  metadata: { name: string; [k: string]: unknown };
  spec: PolicySpec;
}

/** One problem found while loading a policy: printed `file:line:col: message`. */
export interface PolicyProblem {
  file: string;
  line: number;
  col: number;
  /** stable snake_case code, e.g. `yaml_syntax`, `schema`, `re2_compile`, `unknown_pack` */
  code: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// Exchanges: what adapters hand the engine, protocol-neutral.

export interface TextSegment {
  /** location in the wire message, echoed back in findings and redactions */
  path: string;
  source: Source;
  /** chat role if any (system, developer, user, assistant, tool) */
  role?: string;
  text: string;
}

export interface ToolDefinition {
  path: string;
  name: string;
}

export interface ToolCall {
  path: string;
  name: string;
  id?: string;
  /** JSON string (OpenAI) or an already-parsed object (TGI, some llama.cpp builds) */
  arguments: string | Record<string, unknown> | undefined;
}

export interface RequestExchange {
  /** gen_ai.operation.name: chat, text_completion, embeddings, generate, infer, ... */
  operation: string;
  model?: string;
  segments: TextSegment[];
  tools?: ToolDefinition[];
  /** tool calls found in the request history (assistant messages) */
  toolCalls?: ToolCall[];
  /** number of messages (for limits.maxMessages) */
  messageCount?: number;
  /** request body size in bytes (for limits.maxRequestBytes) */
  bytes?: number;
  /** requested output tokens (max_tokens and friends), if given */
  maxOutputTokens?: number;
}

export interface RequestVerdict extends Omit<ScanResult, 'text'> {
  /** new text per segment path, for redacted segments */
  redactions: Map<string, string>;
  /** tool definitions to strip from the request (tools.default: deny and tools.deny) */
  removeTools: string[];
  /** when set, the adapter must cap the request's output token limit to this value */
  maxOutputTokens?: number;
  /** set when a limit was exceeded: adapters answer 413 / RESOURCE_EXHAUSTED */
  limitExceeded?: 'maxRequestBytes' | 'maxMessages';
}

export interface ResponseExchange {
  operation: string;
  model?: string;
  segments: TextSegment[];
  toolCalls?: ToolCall[];
}

export interface ScanContext {
  /** the request's system prompt(s), for output leak detection */
  systemPrompt?: string;
  /** input: the source the text stands for, which rules with `sources` see (default user) */
  source?: Source;
}

export interface ResponseVerdict extends Omit<ScanResult, 'text'> {
  redactions: Map<string, string>;
}

/** Result of feeding a stream scanner. */
export interface StreamStep {
  /** text that can be released to the client now (redactions already applied) */
  release: string;
  /** findings that became certain with this step */
  findings: Finding[];
  /** true once a block finding was seen: release nothing more, end the stream per SPEC §5 */
  blocked: boolean;
}

export interface StreamScanner {
  /** feed the next text chunk; returns what may be released */
  write(chunk: string): StreamStep;
  /** end of stream: flushes the held-back tail (after the final scan) */
  end(): StreamStep;
  /** characters currently held back */
  readonly held: number;
}

// ---------------------------------------------------------------------------------------------
// The seam between loading (load.ts: YAML, schema, packs, overrides, merge) and compiling
// (compile.ts: RE2 sets, scanners). Loading has already checked that every pattern compiles on its
// own; compile() groups them into sets.

export interface Origin {
  file: string;
  line: number;
  col: number;
}

export interface ResolvedRule {
  id: string;
  pattern: string;
  category: string;
  action: Action;
  directions: Direction[];
  description?: string;
  message?: string;
  sources?: Source[];
  validate?: ValidatorName;
  minEntropy?: number;
  /** the pack it came from, or undefined for a policy's own rule */
  pack?: string;
  origin: Origin;
}

export interface ResolvedArgConstraint extends ArgConstraint {
  origin?: Origin;
}

export interface ResolvedPolicy {
  name: string;
  mode: Mode;
  /** enabled rules only, overrides applied, in a stable order (packs in order, then custom rules) */
  rules: ResolvedRule[];
  limits: Required<LimitsSpec>;
  tools: {
    default: 'allow' | 'deny';
    allow: { name: string; args: Record<string, ResolvedArgConstraint> }[];
    deny: string[];
  };
  output: {
    urls: { allowDomains: string[]; blockMarkdownImages: boolean };
    /** 0 = off; else minimum length (characters, normalized) of a repeated system-prompt span */
    systemPromptLeakMinChars: number;
  };
  http: { allowPaths: string[] };
  grpc: { allowMethods: string[] };
  tests: (PolicyTestCase & { file?: string; line?: number })[];
  /**
   * sha256 hex of the canonical JSON of this resolved policy without positions (origins, test
   * file/line) and without tests: equal for equal behaviour. Set by the loader (load.ts);
   * compilePolicy copies it to CompiledPolicy.hash (and computes the same thing when absent).
   */
  hash?: string;
}

/** A built-in rule pack file (policy/packs/<name>.yaml). */
export interface RulePack {
  apiVersion: 'inferguard.io/v1alpha1';
  kind: 'RulePack';
  metadata: { name: string; description?: string };
  rules: RuleSpec[];
  tests?: PolicyTestCase[];
}
