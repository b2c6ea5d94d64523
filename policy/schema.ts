// The JSON Schemas of the two YAML formats the engine reads: a GuardPolicy (users' policies) and a
// RulePack (policy/packs/<name>.yaml). Schema first: the loader validates every document with these,
// defaults live here beside the keys they belong to, and the same objects are published as
// policy/schema/*.schema.json for editors (a test keeps the files in sync with this module).
//
// `x-error` is our own annotation: the message the loader prints when a `pattern`, `oneOf` or `anyOf`
// at that node fails (Ajv's generic text would say "must match pattern ^…$", which helps nobody).
// Editors ignore unknown keywords, Ajv is told about it as a vocabulary.
import type {
  ArgConstraint,
  LimitsSpec,
  OverrideSpec,
  PolicySpec,
  PolicyTestCase,
  RuleSpec,
  ToolAllowSpec,
  ToolsSpec,
} from './types.js';

type Schema = Record<string, unknown>;

/**
 * The `properties` of an object schema for the TypeScript type T (policy/types.ts): the compiler
 * refuses a schema that misses one of T's keys or has one T does not, so the two cannot drift apart.
 */
const props = <T>(p: { [K in keyof Required<T>]: Schema }): Schema => p;

export const API_VERSION = 'inferguard.io/v1alpha1';

/** lowercase dotted rule ids: `secrets.aws-access-key`, `acme.codename` */
export const RULE_ID_PATTERN = '^[a-z0-9][a-z0-9._-]*$';
/** pack and category names: `prompt-injection`, `pii` */
export const NAME_PATTERN = '^[a-z0-9][a-z0-9-]*$';
/** `GET /health`, `POST /v1/*`: one method, one absolute path, an optional trailing `*` */
export const HTTP_ALLOW_PATH_PATTERN = '^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|\\*) /[^\\s*]*\\*?$';
/** `/inference.GRPCInferenceService/ServerLive`, `/grpc.health.v1.Health/*` */
export const GRPC_ALLOW_METHOD_PATTERN = '^/[A-Za-z_][A-Za-z0-9_.]*/([A-Za-z_][A-Za-z0-9_]*|\\*)$';
/** function names as OpenAI, Anthropic and MCP spell them */
export const TOOL_NAME_PATTERN = '^[A-Za-z0-9_.:/-]{1,128}$';

/** Defaults of `spec.limits`, also what `emptyPolicy()` uses. See docs/policy.md. */
export const DEFAULT_LIMITS = {
  maxRequestBytes: 4_194_304,
  maxMessages: 512,
  maxOutputTokens: 0,
  maxDecodeDepth: 2,
  maxDecodedBytes: 65_536,
  maxHoldback: 256,
} as const;

/** `systemPromptLeak: true` means this many characters */
export const DEFAULT_LEAK_MIN_CHARS = 40;

const DIRECTIONS = ['input', 'output'];
const ACTIONS = ['block', 'redact', 'monitor', 'allow'];
const DECISIONS = ['allow', 'block', 'redact', 'monitor'];
const SOURCES = ['system', 'user', 'assistant', 'tool', 'retrieved', 'parameter', 'output'];
const VALIDATORS = ['luhn', 'iban', 'ssn', 'entropy', 'ip'];

const nonEmptyString: Schema = { type: 'string', minLength: 1 };

const directions = (dflt?: string[]): Schema => ({
  type: 'array',
  description: 'which traffic the rule checks: input (prompts, tool results) and/or output (model text)',
  items: { type: 'string', enum: DIRECTIONS },
  minItems: 1,
  uniqueItems: true,
  ...(dflt ? { default: dflt } : {}),
});

const metadata: Schema = {
  type: 'object',
  description: 'Kubernetes-style object metadata; only name is used',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: {
      type: 'string',
      pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$',
      'x-error': 'must be a lowercase DNS-style name (letters, digits, "-", "."), e.g. "acme-chat"',
    },
    namespace: nonEmptyString,
    description: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

/** A rule as written in a policy (`spec.rules[]`) or a pack (`rules[]`). */
const rule = (pack: boolean): Schema => ({
  type: 'object',
  required: ['id', 'pattern'],
  additionalProperties: false,
  properties: props<RuleSpec>({
    id: {
      type: 'string',
      pattern: RULE_ID_PATTERN,
      'x-error':
        'must be a lowercase dotted id: letters a-z, digits, ".", "_", "-", starting with a letter or digit, e.g. "acme.codename"',
    },
    pattern: { type: 'string', minLength: 1, description: 'RE2 syntax: no lookaround, no backreferences' },
    category: {
      type: 'string',
      pattern: NAME_PATTERN,
      'x-error': 'must be a lowercase name (letters, digits, "-"), e.g. "pii"',
      description: pack ? 'defaults to the pack name' : 'defaults to "custom"',
      ...(pack ? {} : { default: 'custom' }),
    },
    description: { type: 'string' },
    // a pack's author tunes each rule's directions; a user's own rule (a codename, an internal host)
    // usually must not pass either way
    directions: directions(pack ? ['input'] : ['input', 'output']),
    action: { type: 'string', enum: ACTIONS, default: 'block' },
    message: { type: 'string', description: 'shown to clients and in spans; never include matched text' },
    sources: {
      type: 'array',
      description: 'input sources the rule applies to; default all',
      items: { type: 'string', enum: SOURCES },
      minItems: 1,
      uniqueItems: true,
    },
    validate: { type: 'string', enum: VALIDATORS },
    minEntropy: { type: 'number', minimum: 0, maximum: 8 },
    enabled: { type: 'boolean', default: true },
  }),
});

const testCase: Schema = {
  type: 'object',
  required: ['expect'],
  additionalProperties: false,
  properties: props<PolicyTestCase>({
    name: { type: 'string' },
    input: { type: 'string', description: 'scanned in the input direction' },
    output: { type: 'string', description: 'scanned in the output direction' },
    system: { type: 'string', description: 'system prompt for output cases (leak detection)' },
    source: {
      type: 'string',
      enum: SOURCES,
      description: 'input cases: the source the text stands for (rules with `sources` see it); default user',
    },
    expect: { type: 'string', enum: DECISIONS },
    rule: { type: 'string', pattern: RULE_ID_PATTERN, 'x-error': 'must be a rule id' },
  }),
  oneOf: [{ required: ['input'] }, { required: ['output'] }],
  'x-error': 'a test case needs exactly one of "input" or "output"',
};

const override: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: props<OverrideSpec>({
    rule: { type: 'string', pattern: RULE_ID_PATTERN, 'x-error': 'must be a rule id, e.g. "pii.email"' },
    category: { type: 'string', pattern: NAME_PATTERN, 'x-error': 'must be a category name, e.g. "pii"' },
    action: { type: 'string', enum: ACTIONS },
    directions: directions(),
    enabled: { type: 'boolean' },
  }),
  oneOf: [{ required: ['rule'] }, { required: ['category'] }],
  anyOf: [{ required: ['action'] }, { required: ['directions'] }, { required: ['enabled'] }],
  'x-error': {
    oneOf: 'an override names exactly one of "rule" or "category"',
    anyOf: 'an override changes at least one of "action", "directions" or "enabled"',
  },
};

const argConstraint: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: props<ArgConstraint>({
    pattern: { type: 'string', minLength: 1, description: 'RE2; the whole value must match (anchor it)' },
    deny: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
    enum: {
      type: 'array',
      items: { type: ['string', 'number', 'boolean'] },
      minItems: 1,
    },
    minimum: { type: 'number' },
    maximum: { type: 'number' },
    required: { type: 'boolean', default: false },
  }),
};

const toolName: Schema = {
  type: 'string',
  pattern: TOOL_NAME_PATTERN,
  'x-error': 'must be a tool name: 1-128 of letters, digits, "_", "-", ".", ":", "/"',
};

const limits: Schema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: props<LimitsSpec>({
    maxRequestBytes: {
      type: 'integer',
      minimum: 0,
      default: DEFAULT_LIMITS.maxRequestBytes,
      description: '0 = no limit',
    },
    maxMessages: {
      type: 'integer',
      minimum: 0,
      default: DEFAULT_LIMITS.maxMessages,
      description: '0 = no limit',
    },
    maxOutputTokens: {
      type: 'integer',
      minimum: 0,
      default: DEFAULT_LIMITS.maxOutputTokens,
      description: 'cap on requested output tokens; 0 = no cap',
    },
    maxDecodeDepth: { type: 'integer', minimum: 0, maximum: 8, default: DEFAULT_LIMITS.maxDecodeDepth },
    maxDecodedBytes: {
      type: 'integer',
      minimum: 0,
      maximum: 16_777_216,
      default: DEFAULT_LIMITS.maxDecodedBytes,
    },
    maxHoldback: { type: 'integer', minimum: 1, maximum: 1_048_576, default: DEFAULT_LIMITS.maxHoldback },
  }),
};

const spec: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: props<PolicySpec>({
    mode: { type: 'string', enum: ['enforce', 'monitor'], default: 'enforce' },
    packs: {
      type: 'array',
      default: [],
      items: { type: 'string', pattern: NAME_PATTERN, 'x-error': 'must be a pack name, e.g. "secrets"' },
    },
    overrides: { type: 'array', default: [], items: override },
    rules: { type: 'array', default: [], items: rule(false) },
    limits,
    tools: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: props<ToolsSpec>({
        default: { type: 'string', enum: ['allow', 'deny'], default: 'allow' },
        allow: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: props<ToolAllowSpec>({
              name: toolName,
              args: {
                type: 'object',
                default: {},
                propertyNames: { minLength: 1 },
                additionalProperties: argConstraint,
              },
            }),
          },
        },
        deny: { type: 'array', default: [], items: toolName },
      }),
    },
    output: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: props<NonNullable<PolicySpec['output']>>({
        urls: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: props<NonNullable<NonNullable<PolicySpec['output']>['urls']>>({
            allowDomains: {
              type: 'array',
              description: 'absent = URLs are not checked; listed = only these domains may appear in output',
              minItems: 1,
              items: {
                type: 'string',
                pattern:
                  '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
                'x-error':
                  'must be a domain, optionally starting with "*." (e.g. "example.com", "*.acme.internal")',
              },
            },
            blockMarkdownImages: { type: 'boolean', default: false },
          }),
        },
        systemPromptLeak: {
          type: ['boolean', 'object'],
          default: false,
          additionalProperties: false,
          properties: { minChars: { type: 'integer', minimum: 8, default: DEFAULT_LEAK_MIN_CHARS } },
        },
      }),
    },
    http: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: props<NonNullable<PolicySpec['http']>>({
        allowPaths: {
          type: 'array',
          default: [],
          items: {
            type: 'string',
            pattern: HTTP_ALLOW_PATH_PATTERN,
            'x-error':
              'must be "METHOD /path" with an optional trailing "*", e.g. "GET /health" or "GET /v1/models*"',
          },
        },
      }),
    },
    grpc: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: props<NonNullable<PolicySpec['grpc']>>({
        allowMethods: {
          type: 'array',
          default: [],
          items: {
            type: 'string',
            pattern: GRPC_ALLOW_METHOD_PATTERN,
            'x-error': 'must be "/package.Service/Method" or "/package.Service/*"',
          },
        },
      }),
    },
    tests: { type: 'array', default: [], items: testCase },
  }),
};

const envelope = (kind: string): Schema => ({
  apiVersion: { const: API_VERSION },
  kind: { const: kind },
  metadata,
});

export const GUARD_POLICY_SCHEMA: Schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://inferguard.io/schemas/guardpolicy.schema.json',
  title: 'inferguard GuardPolicy',
  description: 'A guard policy for the inferguard sidecar. Reference: docs/policy.md',
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  additionalProperties: false,
  properties: { ...envelope('GuardPolicy'), spec },
};

export const RULE_PACK_SCHEMA: Schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://inferguard.io/schemas/rulepack.schema.json',
  title: 'inferguard RulePack',
  description: 'A built-in rule pack (policy/packs/<name>.yaml). Reference: docs/policy.md',
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'rules'],
  additionalProperties: false,
  properties: {
    ...envelope('RulePack'),
    rules: { type: 'array', minItems: 1, items: rule(true) },
    tests: { type: 'array', default: [], items: testCase },
  },
};

/** file names the schemas are published under, in policy/schema/ */
export const SCHEMA_FILES: Record<string, Schema> = {
  'guardpolicy.schema.json': GUARD_POLICY_SCHEMA,
  'rulepack.schema.json': RULE_PACK_SCHEMA,
};
