// Compilation: ResolvedPolicy (load.ts) → CompiledPolicy, everything a scan needs precomputed.
//
// Stages, in order:
//   1. rules     one RE2 per rule (global, for offsets) + its longest possible match (hold-back)
//   2. sets      per direction, every rule's prefilter (scanners/prefilter.ts: a cut of the pattern that
//                any match contains) in one RE2.Set: a scan runs the set once over the text (cost grows
//                with input length, not rule count), then execs only the rules that hit. A rule's entries
//                form clauses (one per weak top-level branch, else one): it runs when every entry of
//                one of its clauses hit
//   3. tools     allow/deny lookup tables, argument constraints compiled to RE2
//   4. output    URL allow-list (exact hosts and `*.` suffixes), system-prompt leak length
//   5. hash      the loader's hash, or the same canonical sha256 when compiling a hand-built policy
//
// RE2.Set takes one flag set for all its patterns. Every pattern is compiled with `u` and carries its own
// inline flags (`(?i)`, `(?s)`), so one set per direction suffices; a set that RE2 refuses (over its memory
// budget) is split in halves until each part compiles.
import { createHash } from 'node:crypto';
import RE2 from 're2';
import type {
  Action,
  Direction,
  LimitsSpec,
  Mode,
  PolicyTestCase,
  ResolvedPolicy,
  Source,
  ValidatorName,
} from './types.js';
import { VALIDATORS, type Validator } from './scanners/validators.js';
import { maxMatchLength } from './scanners/holdback.js';
import { prefilterClauses, withoutCaptures } from './scanners/prefilter.js';

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
  /** engine internals (scan.ts, stream.ts); not part of the public contract */
  readonly engine: Engine;
}

export interface CompiledRule {
  readonly id: string;
  readonly category: string;
  readonly action: Action;
  readonly message?: string;
  /** null = every source */
  readonly sources: ReadonlySet<Source> | null;
  readonly validate?: Validator;
  readonly validatorName?: ValidatorName;
  readonly minEntropy?: number;
  /** global RE2, for offsets; shared: callers reset lastIndex before use (scans are synchronous) */
  readonly re: RE2;
  /** longest possible match in UTF-16 units (Infinity when unbounded) */
  readonly maxLength: number;
}

export interface RuleGroup {
  readonly rules: readonly CompiledRule[];
  /**
   * sets of prefilters (scanners/prefilter.ts) and, for each of its patterns, the rule index and the
   * clause index (negative for the encoding markers, MARK_*)
   */
  readonly sets: readonly {
    readonly set: InstanceType<typeof RE2.Set>;
    readonly ruleIndex: Int32Array;
    readonly clauseIndex: Int32Array;
  }[];
  /** rules without a useful prefilter: run on every scan */
  readonly always: Int32Array;
  /** per clause: its rule (clauses of one rule are consecutive, in rule order) */
  readonly clauseRule: Int32Array;
  /** per clause: how many of its set entries must hit before its rule runs (all of them) */
  readonly required: Int32Array;
  /** per clause hit counter, zero between scans (scans are synchronous, so one per group suffices) */
  readonly counts: Int32Array;
  /** streaming hold-back in normalized characters: longest rule match, capped at limits.maxHoldback */
  readonly holdback: number;
}

export interface CompiledArg {
  readonly name: string;
  readonly required: boolean;
  readonly pattern?: RE2;
  readonly deny: readonly RE2[];
  readonly enum?: readonly (string | number | boolean)[];
  readonly minimum?: number;
  readonly maximum?: number;
}

export interface CompiledTools {
  readonly default: 'allow' | 'deny';
  /** allowed tool name → its argument constraints */
  readonly allow: ReadonlyMap<string, readonly CompiledArg[]>;
  readonly deny: ReadonlySet<string>;
}

export interface UrlPolicy {
  /** exact hosts (lower case, punycode) */
  readonly hosts: ReadonlySet<string>;
  /** `*.acme.internal` → `.acme.internal` */
  readonly suffixes: readonly string[];
  /** true when allowDomains is non-empty: other hosts are blocked */
  readonly restrictHosts: boolean;
  readonly blockMarkdownImages: boolean;
}

export interface Engine {
  readonly input: RuleGroup;
  readonly output: RuleGroup;
  readonly tools: CompiledTools;
  /** null when the policy sets neither allowDomains nor blockMarkdownImages */
  readonly urls: UrlPolicy | null;
  /** 0 = leak detection off */
  readonly leakMinChars: number;
}

/** RE2.Set memory budget per set; sets that need more are split. */
const SET_MAX_MEM = 64 << 20;
/** Hold-back reserved for URLs when the URL scanner is on (longest URL we inspect). */
export const URL_MAX_LENGTH = 2048;
/** set entries that are not rules: a possible base64/hex run, a possible %-encoded run */
export const MARK_BASE64 = -1;
export const MARK_PERCENT = -2;
/** an HTML character reference, a \uXXXX escape (what normalize.ts decodes when two are in a token) */
export const MARK_ENTITY = -3;
export const MARK_ESCAPE = -4;
const ENCODED_BASE64_HINT = '[A-Za-z0-9+/_-]{16}';
const ENCODED_PERCENT_HINT = '%[0-9A-Fa-f]{2}[^\\s%]*%[0-9A-Fa-f]{2}';
const ENTITY_HINT = '&(?:#[0-9xX]|lt;|gt;|amp;|quot;|apos;|nbsp;)';
const ESCAPE_HINT = '\\\\u[0-9A-Fa-f]{4}';

/** the rule's own RE2: without capture groups unless a validator needs group 1 */
function compileOffsets(pattern: string, keepGroups: boolean): RE2 {
  if (!keepGroups) {
    try {
      return new RE2(withoutCaptures(pattern), 'gu');
    } catch {
      // fall through: the pattern as written (load.ts has checked it compiles)
    }
  }
  return new RE2(pattern, 'gu');
}

function compileRule(r: ResolvedPolicy['rules'][number]): CompiledRule {
  return {
    id: r.id,
    category: r.category,
    action: r.action,
    message: r.message,
    sources: r.sources && r.sources.length > 0 ? new Set(r.sources) : null,
    validate: r.validate ? VALIDATORS[r.validate] : undefined,
    validatorName: r.validate,
    minEntropy: r.minEntropy,
    re: compileOffsets(r.pattern, r.validate !== undefined),
    maxLength: maxMatchLength(r.pattern),
  };
}

/**
 * Sets over `entries` ([rule index, clause index, set pattern]); a part RE2 refuses is split in halves. A
 * single prefilter RE2 refuses (a cut the syntax walk got wrong) goes to `refused`: its rule then runs on
 * every scan, which is slower but never misses.
 */
function buildSets(entries: readonly [number, number, string][], refused: number[]): RuleGroup['sets'] {
  const out: { set: InstanceType<typeof RE2.Set>; ruleIndex: Int32Array; clauseIndex: Int32Array }[] = [];
  const build = (from: number, to: number) => {
    if (to <= from) return;
    const part = entries.slice(from, to);
    try {
      const set = new RE2.Set(
        part.map(([, , p]) => p),
        'u',
        { maxMem: SET_MAX_MEM },
      );
      out.push({
        set,
        ruleIndex: Int32Array.from(part.map(([i]) => i)),
        clauseIndex: Int32Array.from(part.map(([, c]) => c)),
      });
    } catch {
      if (to - from === 1) {
        refused.push(part[0][0]);
        return;
      }
      const mid = (from + to) >>> 1;
      build(from, mid);
      build(mid, to);
    }
  };
  build(0, entries.length);
  return out;
}

function compileGroup(resolved: ResolvedPolicy, direction: Direction, extraHoldback: number): RuleGroup {
  const picked = resolved.rules.filter((r) => r.directions.includes(direction));
  const rules = picked.map(compileRule);
  const entries: [number, number, string][] = [];
  const always: number[] = [];
  const clauseRule: number[] = [];
  const requiredList: number[] = [];
  picked.forEach((r, i) => {
    const clauses = prefilterClauses(r.pattern);
    if (clauses === null) always.push(i);
    else {
      for (const parts of clauses) {
        const c = clauseRule.length;
        clauseRule.push(i);
        requiredList.push(parts.length);
        for (const f of parts) entries.push([i, c, f]);
      }
    }
  });
  const required = Int32Array.from(requiredList);
  // markers ride along in the set so a scan learns for free whether any text could be encoded
  if (entries.length > 0 || always.length > 0) {
    entries.push(
      [MARK_BASE64, MARK_BASE64, ENCODED_BASE64_HINT],
      [MARK_PERCENT, MARK_PERCENT, ENCODED_PERCENT_HINT],
      [MARK_ENTITY, MARK_ENTITY, ENTITY_HINT],
      [MARK_ESCAPE, MARK_ESCAPE, ESCAPE_HINT],
    );
  }
  const refused: number[] = [];
  let sets = buildSets(entries, refused);
  if (refused.length > 0) {
    // run those rules always, and rebuild without any of their entries (an AND with a missing part
    // would never be satisfied)
    const bad = new Set(refused.filter((i) => i >= 0));
    for (const i of bad) always.push(i);
    // (their clauses stay, never satisfied: no entry of theirs is left in the sets)
    sets = buildSets(
      entries.filter(([i]) => !bad.has(i)),
      [],
    );
  }
  let longest = extraHoldback;
  for (const r of rules) longest = Math.max(longest, r.maxLength);
  const cap = resolved.limits.maxHoldback > 0 ? resolved.limits.maxHoldback : 4096;
  return {
    rules,
    sets,
    always: Int32Array.from(always),
    clauseRule: Int32Array.from(clauseRule),
    required,
    counts: new Int32Array(clauseRule.length),
    holdback: Math.min(longest, cap),
  };
}

function compileTools(t: ResolvedPolicy['tools']): CompiledTools {
  const allow = new Map<string, CompiledArg[]>();
  for (const a of t.allow) {
    const args: CompiledArg[] = Object.entries(a.args ?? {}).map(([name, c]) => ({
      name,
      required: c.required === true,
      pattern: c.pattern !== undefined ? new RE2(c.pattern, 'u') : undefined,
      deny: (c.deny ?? []).map((d) => new RE2(d, 'u')),
      enum: c.enum,
      minimum: c.minimum,
      maximum: c.maximum,
    }));
    allow.set(a.name, args);
  }
  return { default: t.default, allow, deny: new Set(t.deny) };
}

function compileUrls(u: ResolvedPolicy['output']['urls']): UrlPolicy | null {
  if (u.allowDomains.length === 0 && !u.blockMarkdownImages) return null;
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  for (const d of u.allowDomains) {
    const lower = d.trim().toLowerCase();
    if (lower.startsWith('*.')) suffixes.push(toAsciiHost(lower.slice(1)));
    else hosts.add(toAsciiHost(lower));
  }
  return {
    hosts,
    suffixes,
    restrictHosts: u.allowDomains.length > 0,
    blockMarkdownImages: u.blockMarkdownImages,
  };
}

/** an allow-listed IDN is compared in its punycode form, as URL parsing yields it */
function toAsciiHost(h: string): string {
  const dot = h.startsWith('.');
  try {
    const ascii = new URL(`http://${dot ? h.slice(1) : h}/`).hostname;
    return dot ? `.${ascii}` : ascii;
  } catch {
    return h;
  }
}

function canonicalHash(r: ResolvedPolicy): string {
  // positions and tests do not change behaviour; everything else does
  const strip = (_k: string, v: unknown) => v;
  const body = {
    name: r.name,
    mode: r.mode,
    rules: r.rules.map(({ origin: _o, ...rest }) => rest),
    limits: r.limits,
    tools: {
      default: r.tools.default,
      allow: r.tools.allow.map((a) => ({
        name: a.name,
        args: Object.fromEntries(Object.entries(a.args ?? {}).map(([k, { origin: _o, ...c }]) => [k, c])),
      })),
      deny: r.tools.deny,
    },
    output: r.output,
    http: r.http,
    grpc: r.grpc,
  };
  return createHash('sha256').update(JSON.stringify(body, strip)).digest('hex');
}

/** Compile a resolved policy. Throws only if a pattern does not compile (load.ts has checked them). */
export function compilePolicy(resolved: ResolvedPolicy): CompiledPolicy {
  const urls = compileUrls(resolved.output.urls);
  const leak = resolved.output.systemPromptLeakMinChars;
  const engine: Engine = {
    input: compileGroup(resolved, 'input', 0),
    output: compileGroup(resolved, 'output', Math.max(leak, urls ? URL_MAX_LENGTH : 0)),
    tools: compileTools(resolved.tools),
    urls,
    leakMinChars: leak,
  };
  return Object.freeze({
    name: resolved.name,
    hash: resolved.hash ?? canonicalHash(resolved),
    mode: resolved.mode,
    limits: Object.freeze({ ...resolved.limits }),
    http: Object.freeze({ allowPaths: Object.freeze([...resolved.http.allowPaths]) }),
    grpc: Object.freeze({ allowMethods: Object.freeze([...resolved.grpc.allowMethods]) }),
    tests: Object.freeze([...resolved.tests]),
    ruleCount: resolved.rules.length,
    engine,
  });
}

/** The same policy with its mode overridden (sidecar `--mode`); shares the compiled engine. */
export function withMode(p: CompiledPolicy, mode: Mode): CompiledPolicy {
  if (p.mode === mode) return p;
  return Object.freeze({ ...p, mode });
}
