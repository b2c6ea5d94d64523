// Loading a policy: YAML text → validated, merged, resolved policy → compiled policy.
//
// Loading is a fixed sequence of named stages (STAGES below); each stage adds problems to one
// collector instead of throwing, so a user sees every mistake in one run, sorted by position and
// printed `file:line:col: message` naming the key or rule id. A later stage only runs when the
// earlier ones left nothing to complain about where it matters (a policy with a schema error is not
// resolved: its rules may be half-formed).
//
//   parse     YAML documents (multi-document files, directories) with a LineCounter for positions
//   validate  each document against the JSON Schema (policy/schema.ts), errors mapped to line:col
//   merge     documents in order (docs/policy.md "Directories and multiple documents")
//   defaults  the schema's defaults applied to the merged spec
//   packs     built-in packs named by spec.packs loaded from policy/packs/<name>.yaml
//   rules     pack rules + custom rules, duplicate/reserved ids rejected
//   overrides applied in order by rule id or category
//   tools     tool names listed once, not both allowed and denied, argument ranges that can be met
//   re2       every pattern (rules, tool arguments) compiled with the real RE2 engine
//   tests     test cases checked against the resolved rules
//   resolve   the ResolvedPolicy (enabled rules only, defaults applied) and its hash
//   compile   compilePolicy (policy/compile.ts): RE2 sets and scanners
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import RE2 from 're2';
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  type Document,
  type Node as YamlNode,
  type Pair,
} from 'yaml';
import type { CompiledPolicy } from './compile.js';
import { PolicyLoadError } from './api.js';
import { compilePolicy } from './compile.js';
import { DEFAULT_LEAK_MIN_CHARS, DEFAULT_LIMITS, GUARD_POLICY_SCHEMA, RULE_PACK_SCHEMA } from './schema.js';
import type {
  Action,
  Direction,
  GuardPolicy,
  Origin,
  OverrideSpec,
  PolicyProblem,
  PolicySpec,
  PolicyTestCase,
  ResolvedArgConstraint,
  ResolvedPolicy,
  ResolvedRule,
  RulePack,
  RuleSpec,
  ToolAllowSpec,
} from './types.js';

/** The stages in the order they run (parse…merge in resolveSources, the rest in resolveMerged). */
export const STAGES = [
  'parse',
  'validate',
  'merge',
  'defaults',
  'packs',
  'rules',
  'overrides',
  'tools',
  're2',
  'tests',
  'resolve',
  'compile',
] as const;

/** Stable problem codes (PolicyProblem.code). Documented in docs/policy.md "Errors" (a test keeps them in sync). */
export const PROBLEM_CODES = [
  'io',
  'no_documents',
  'yaml_syntax',
  'schema',
  'wrong_kind',
  'unknown_pack',
  'invalid_pack',
  'duplicate_rule',
  'reserved_rule_id',
  'unknown_rule',
  'unknown_category',
  're2_compile',
  'empty_match',
  'invalid_value',
  'duplicate_tool',
  'invalid_test',
  'compile',
] as const;
export type ProblemCode = (typeof PROBLEM_CODES)[number];

/** Where the engine's own assets live: beside this module, from source (tsx) and from dist/. */
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PACKS_DIR = path.join(HERE, 'packs');
/**
 * policy/default-policy.yaml: beside this module from source; a build that did not copy it into
 * dist/policy/ still finds it in the checkout (dist/policy/ → ../../policy/)
 */
const DEFAULT_POLICY_CANDIDATES = [
  path.join(HERE, 'default-policy.yaml'),
  path.join(HERE, '..', '..', 'policy', 'default-policy.yaml'),
];

/** Rule id prefixes a custom rule may not use (besides the packs' names): the engine's own findings. */
const ENGINE_PREFIXES = ['tools', 'limits', 'leak', 'urls', 'output'];

export interface LoadOptions {
  /** where `spec.packs` names are looked up (tests point this at policy/testdata/packs) */
  packsDir?: string;
  /** accept RulePack documents (the CLI's `policy validate/test` of a pack file) */
  allowPacks?: boolean;
}

export interface PolicySource {
  file: string;
  text: string;
}

// ---------------------------------------------------------------------------------------------
// Problems

type Seg = string | number;

/** A YAML document with what is needed to point back into its text. */
interface SourceDoc {
  file: string;
  doc: Document.Parsed;
  lc: LineCounter;
  /** the document as plain data (after toJS) */
  data: any;
}

interface Loc {
  src: SourceDoc;
  path: Seg[];
  /** point at the key of the last path segment instead of its value */
  key?: boolean;
}

class Problems {
  readonly list: PolicyProblem[] = [];
  readonly #order = new Map<string, number>();

  /** files sort in the order they were first seen (load order), then by line and column */
  seen(file: string): void {
    if (!this.#order.has(file)) this.#order.set(file, this.#order.size);
  }

  at(file: string, line: number, col: number, code: ProblemCode, message: string): void {
    this.seen(file);
    this.list.push({ file, line, col, code, message });
  }

  loc(loc: Loc, code: ProblemCode, message: string): void {
    const { line, col } = position(loc);
    this.at(loc.src.file, line, col, code, message);
  }

  get count(): number {
    return this.list.length;
  }

  sorted(): PolicyProblem[] {
    const seen = new Set<string>();
    return this.list
      .filter((p) => {
        const k = `${p.file}\0${p.line}\0${p.col}\0${p.message}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      })
      .sort(
        (a, b) =>
          (this.#order.get(a.file) ?? 0) - (this.#order.get(b.file) ?? 0) ||
          a.line - b.line ||
          a.col - b.col ||
          (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
      );
  }
}

/** Walks the YAML AST along `path`; returns the deepest node reached and the pair holding it. */
function walk(doc: Document.Parsed, segs: Seg[]): { node: YamlNode | null; pair?: Pair; complete: boolean } {
  let node = doc.contents as YamlNode | null;
  let pair: Pair | undefined;
  for (const seg of segs) {
    if (isMap(node)) {
      const p = node.items.find(
        (it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg),
      );
      if (!p) return { node, pair, complete: false };
      pair = p as Pair;
      if (!p.value) return { node: p.key as YamlNode, pair, complete: false };
      node = p.value as YamlNode;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      pair = undefined;
      node = node.items[seg] as YamlNode;
    } else {
      return { node, pair, complete: false };
    }
  }
  return { node, pair, complete: true };
}

function position(loc: Loc): { line: number; col: number } {
  const { node, pair, complete } = walk(loc.src.doc, loc.path);
  let offset: number | undefined;
  if (loc.key && complete && pair && isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
  else if (node?.range) offset = node.range[0];
  else if (loc.src.doc.contents?.range) offset = loc.src.doc.contents.range[0];
  else offset = loc.src.doc.range[0];
  return loc.src.lc.linePos(offset);
}

function originOf(loc: Loc): Origin {
  return { file: loc.src.file, ...position(loc) };
}

// ---------------------------------------------------------------------------------------------
// Naming what a problem is about: `rule "acme.ssn" pattern`, `tool "run_sql" arg "query"`,
// `spec.limits.maxMessages`.

function describe(data: any, segs: Seg[]): string {
  const isPack = data?.kind === 'RulePack';
  const at = (i: number): any => segs.slice(0, i).reduce((v: any, s) => (v == null ? v : v[s]), data);
  const rest = (from: number): string => dotted(segs.slice(from));
  const ruleStart = isPack ? 0 : 1; // ['rules', i] in a pack, ['spec', 'rules', i] in a policy
  if (
    segs.length > ruleStart + 1 &&
    (isPack || segs[0] === 'spec') &&
    segs[ruleStart] === 'rules' &&
    typeof segs[ruleStart + 1] === 'number'
  ) {
    const id = at(ruleStart + 2)?.id;
    if (typeof id === 'string' && id) return join(`rule "${id}"`, rest(ruleStart + 2));
  }
  if (segs[0] === 'spec' && segs[1] === 'tools' && segs[2] === 'allow' && typeof segs[3] === 'number') {
    const name = at(4)?.name;
    if (typeof name === 'string' && name) {
      if (segs[4] === 'args' && segs.length > 5) return join(`tool "${name}" arg "${segs[5]}"`, rest(6));
      return join(`tool "${name}"`, rest(4));
    }
  }
  return dotted(segs);
}

function dotted(segs: Seg[]): string {
  let s = '';
  for (const seg of segs) s += typeof seg === 'number' ? `[${seg}]` : s ? `.${seg}` : seg;
  return s;
}

const join = (a: string, b: string): string => (b ? `${a} ${b}` : a);
const prefixed = (where: string, message: string): string => (where ? `${where}: ${message}` : message);

function typeName(t: string): string {
  return t === 'integer' ? 'an integer' : t === 'array' ? 'a list' : t === 'object' ? 'a mapping' : `a ${t}`;
}

function valueKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return `a ${typeof v}`;
}

/** `(did you mean "spec"?)` for a near miss, else nothing */
function suggest(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 4)) + 1
    ? ` (did you mean "${best}"?)`
    : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

// ---------------------------------------------------------------------------------------------
// Stage: parse

function parseSource(source: PolicySource, problems: Problems): SourceDoc[] {
  problems.seen(source.file);
  const lc = new LineCounter();
  // a byte order mark is invisible in editors: columns on line 1 must not count it
  const text = source.text.startsWith('\uFEFF') ? source.text.slice(1) : source.text;
  const docs = parseAllDocuments(text, {
    lineCounter: lc,
    prettyErrors: false,
    uniqueKeys: true,
    merge: true, // YAML merge keys (`<<: *defaults`), which Kubernetes users reach for to share settings
  });
  if (!Array.isArray(docs)) {
    // an empty stream (only comments or nothing at all)
    problems.at(source.file, 1, 1, 'no_documents', 'no YAML document in file');
    return [];
  }
  const out: SourceDoc[] = [];
  for (const doc of docs) {
    if (doc.errors.length) {
      for (const e of doc.errors) {
        const { line, col } = lc.linePos(e.pos[0]);
        problems.at(source.file, line, col, 'yaml_syntax', `YAML: ${e.message}`);
      }
      continue;
    }
    let data: unknown;
    try {
      data = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const { line, col } = lc.linePos(doc.range[0]);
      problems.at(source.file, line, col, 'yaml_syntax', `YAML: ${(err as Error).message}`);
      continue;
    }
    if (data === null || data === undefined) continue; // `---` with nothing after it
    out.push({ file: source.file, doc, lc, data });
  }
  if (!out.length && !problems.list.some((p) => p.file === source.file)) {
    problems.at(source.file, 1, 1, 'no_documents', 'no YAML document in file');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Stage: validate

// One Ajv with useDefaults: a document is validated on a copy (defaults must not land in the
// document itself: merging needs to know what each document really set), and the merged spec gets
// its defaults from the same compiled schema.
let ajv: Ajv | undefined;
const compiled = new Map<object, ValidateFunction>();

/** A schema compiles once per process, on first use (Ajv's code generation is the slow part). */
function validator(schema: Record<string, unknown>): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    if (!ajv) {
      ajv = new Ajv({
        allErrors: true,
        strict: true,
        strictRequired: false,
        allowUnionTypes: true,
        verbose: true,
        useDefaults: true,
      });
      ajv.addVocabulary(['x-error']);
    }
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

function pointer(instancePath: string): Seg[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

function xError(schema: any, keyword: string): string | undefined {
  const x = schema?.['x-error'];
  if (typeof x === 'string') return x;
  if (x && typeof x === 'object' && typeof x[keyword] === 'string') return x[keyword];
  return undefined;
}

/** Turns Ajv's errors into our messages, each at the key or value it is about. */
function schemaProblems(src: SourceDoc, errors: ErrorObject[], problems: Problems): void {
  // Errors inside a oneOf/anyOf branch only explain why that branch failed; the oneOf/anyOf error
  // itself carries our message.
  const relevant = errors.filter((e) => !/\/(oneOf|anyOf)\/\d+\//.test(e.schemaPath));
  for (const e of relevant) {
    const segs = pointer(e.instancePath);
    const where = describe(src.data, segs);
    const loc: Loc = { src, path: segs };
    const p = e.params as Record<string, any>;
    const got = (): string => {
      const v = e.data;
      if (typeof v === 'string') return ` (got ${JSON.stringify(v.length > 64 ? `${v.slice(0, 63)}…` : v)})`;
      return typeof v === 'number' || typeof v === 'boolean' ? ` (got ${v})` : '';
    };
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String(p.additionalProperty);
        const known = Object.keys((e.parentSchema as any)?.properties ?? {});
        problems.loc(
          { src, path: [...segs, key], key: true },
          'schema',
          prefixed(
            where,
            `unknown key "${key}"${suggest(key, known) || (known.length ? ` (allowed: ${known.join(', ')})` : '')}`,
          ),
        );
        break;
      }
      case 'required':
        problems.loc(loc, 'schema', prefixed(where, `missing required key "${p.missingProperty}"`));
        break;
      case 'type': {
        const types = String(p.type).split(',').map(typeName).join(' or ');
        problems.loc(
          loc,
          'schema',
          prefixed(where || 'document', `must be ${types}, not ${valueKind(e.data)}`),
        );
        break;
      }
      case 'enum':
        problems.loc(loc, 'schema', prefixed(where, `must be one of ${p.allowedValues.join(', ')}${got()}`));
        break;
      case 'const':
        problems.loc(loc, 'schema', prefixed(where, `must be ${JSON.stringify(p.allowedValue)}${got()}`));
        break;
      case 'pattern':
        problems.loc(
          loc,
          'schema',
          prefixed(where, `${xError(e.parentSchema, 'pattern') ?? `must match ${p.pattern}`}${got()}`),
        );
        break;
      case 'oneOf':
      case 'anyOf':
        problems.loc(
          loc,
          'schema',
          prefixed(where, xError(e.parentSchema, e.keyword) ?? e.message ?? 'is invalid'),
        );
        break;
      case 'minItems':
        problems.loc(
          loc,
          'schema',
          prefixed(where, p.limit === 1 ? 'must not be empty' : `must have at least ${p.limit} items`),
        );
        break;
      case 'minLength':
        problems.loc(
          loc,
          'schema',
          prefixed(where, p.limit === 1 ? 'must not be empty' : `must be at least ${p.limit} characters`),
        );
        break;
      case 'minimum':
      case 'maximum':
        problems.loc(loc, 'schema', prefixed(where, `must be ${p.comparison} ${p.limit}${got()}`));
        break;
      case 'uniqueItems':
        problems.loc(
          { src, path: [...segs, p.i] },
          'schema',
          prefixed(where, `must not list ${JSON.stringify((e.data as unknown[])[p.i])} twice`),
        );
        break;
      case 'propertyNames':
        problems.loc(loc, 'schema', prefixed(where, 'names must not be empty'));
        break;
      default:
        problems.loc(loc, 'schema', prefixed(where, e.message ?? 'is invalid'));
    }
  }
}

type Kind = 'GuardPolicy' | 'RulePack';

/** Validates one document; returns its kind when it is valid. */
function validateDoc(src: SourceDoc, problems: Problems, allowPacks: boolean): Kind | undefined {
  const kind =
    src.data && typeof src.data === 'object' && !Array.isArray(src.data) ? src.data.kind : undefined;
  if (kind === 'RulePack' && !allowPacks) {
    problems.loc(
      { src, path: ['kind'] },
      'wrong_kind',
      "kind: a RulePack is not a policy; name built-in packs in a GuardPolicy's spec.packs",
    );
    return undefined;
  }
  const isPack = kind === 'RulePack';
  const validate = validator(isPack ? RULE_PACK_SCHEMA : GUARD_POLICY_SCHEMA);
  if (validate(structuredClone(src.data))) return isPack ? 'RulePack' : 'GuardPolicy';
  if (!isPack && allowPacks && kind !== 'GuardPolicy' && kind !== undefined) {
    problems.loc(
      { src, path: ['kind'] },
      'wrong_kind',
      `kind: must be "GuardPolicy" or "RulePack" (got ${JSON.stringify(kind)})`,
    );
    return undefined;
  }
  schemaProblems(src, validate.errors ?? [], problems);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Stage: merge (docs/policy.md "Directories and multiple documents")

interface Located<T> {
  value: T;
  loc: Loc;
}

interface Merged {
  name: string;
  /** the merged spec without the lists below, before defaults */
  spec: PolicySpec;
  packs: Located<string>[];
  rules: Located<RuleSpec>[];
  overrides: Located<OverrideSpec>[];
  toolAllow: Located<ToolAllowSpec>[];
  toolDeny: Located<string>[];
  tests: Located<PolicyTestCase>[];
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** later wins key by key; lists and scalars are replaced whole */
function deepMerge(target: Record<string, unknown>, src: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(src)) {
    const cur = target[k];
    target[k] = isPlainObject(cur) && isPlainObject(v) ? deepMerge({ ...cur }, v) : structuredClone(v);
  }
  return target;
}

function merge(docs: SourceDoc[]): Merged {
  const m: Merged = {
    name: (docs[0].data as GuardPolicy).metadata.name,
    spec: {},
    packs: [],
    rules: [],
    overrides: [],
    toolAllow: [],
    toolDeny: [],
    tests: [],
  };
  const list = <T>(src: SourceDoc, into: Located<T>[], items: T[] | undefined, at: Seg[]): void => {
    items?.forEach((value, i) => into.push({ value, loc: { src, path: [...at, i] } }));
  };
  for (const src of docs) {
    const spec = (src.data as GuardPolicy).spec;
    for (const [i, name] of (spec.packs ?? []).entries()) {
      if (!m.packs.some((p) => p.value === name))
        m.packs.push({ value: name, loc: { src, path: ['spec', 'packs', i] } });
    }
    list(src, m.rules, spec.rules, ['spec', 'rules']);
    list(src, m.overrides, spec.overrides, ['spec', 'overrides']);
    list(src, m.tests, spec.tests, ['spec', 'tests']);
    list(src, m.toolAllow, spec.tools?.allow, ['spec', 'tools', 'allow']);
    list(src, m.toolDeny, spec.tools?.deny, ['spec', 'tools', 'deny']);
    const { packs: _p, rules: _r, overrides: _o, tests: _t, tools, ...scalars } = spec;
    deepMerge(m.spec as Record<string, unknown>, scalars);
    if (tools?.default) m.spec.tools = { default: tools.default };
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Stage: packs

interface LoadedPack {
  name: string;
  file: string;
  rules: Located<RuleSpec>[];
  tests: Located<PolicyTestCase>[];
}

/** parsed packs by file, reused while the file's text is unchanged (packs are read-only assets) */
const packCache = new Map<string, { text: string; pack?: LoadedPack; problems: PolicyProblem[] }>();

export function knownPacks(packsDir = PACKS_DIR): string[] {
  try {
    return readdirSync(packsDir)
      .filter((f) => f.endsWith('.yaml') && !f.startsWith('.'))
      .map((f) => f.slice(0, -'.yaml'.length))
      .sort();
  } catch {
    return [];
  }
}

function loadPack(file: string, problems: Problems): LoadedPack | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.at(
      file,
      1,
      1,
      'io',
      `cannot read pack: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
    return undefined;
  }
  const cached = packCache.get(file);
  if (cached?.text === text) {
    for (const p of cached.problems) problems.at(p.file, p.line, p.col, p.code as ProblemCode, p.message);
    return cached.pack;
  }
  const own = new Problems();
  const pack = parsePack({ file, text }, own);
  packCache.set(file, { text, pack, problems: own.list });
  for (const p of own.list) problems.at(p.file, p.line, p.col, p.code as ProblemCode, p.message);
  return pack;
}

/** A RulePack file: one document, valid, named like its file, rule ids unique, patterns compile. */
function parsePack(source: PolicySource, problems: Problems): LoadedPack | undefined {
  const before = problems.count;
  const docs = parseSource(source, problems);
  if (problems.count > before) return undefined;
  const src = docs[0];
  if (docs.length > 1) {
    problems.loc(
      { src: docs[1], path: [] },
      'invalid_pack',
      'a pack file holds exactly one RulePack document',
    );
  }
  if (src.data?.kind !== 'RulePack') {
    problems.loc({ src, path: ['kind'] }, 'wrong_kind', `kind: must be "RulePack"`);
    return undefined;
  }
  if (validateDoc(src, problems, true) !== 'RulePack') return undefined;
  const data = structuredClone(src.data) as RulePack;
  validator(RULE_PACK_SCHEMA)(data); // defaults
  // a pack is known by its file name (spec.packs: [secrets] reads secrets.yaml); metadata.name must agree
  const name = path.basename(source.file).replace(/\.ya?ml$/, '');
  if (data.metadata.name !== name) {
    problems.loc(
      { src, path: ['metadata', 'name'] },
      'invalid_pack',
      `metadata.name: must be "${name}", the file's name (got "${data.metadata.name}")`,
    );
  }
  const rules = data.rules.map((r, i) => {
    r.category ??= name;
    return { value: r, loc: { src, path: ['rules', i] } as Loc };
  });
  const seen = new Map<string, Loc>();
  for (const { value: r, loc } of rules) {
    const first = seen.get(r.id);
    if (first)
      problems.loc(
        sub(loc, 'id'),
        'duplicate_rule',
        `duplicate rule id "${r.id}" (first defined at ${fmt(sub(first, 'id'))})`,
      );
    else seen.set(r.id, loc);
    checkRulePattern(r, loc, problems);
  }
  const tests = (data.tests ?? []).map((value, i) => ({ value, loc: { src, path: ['tests', i] } as Loc }));
  return { name, file: source.file, rules, tests };
}

const sub = (loc: Loc, ...more: Seg[]): Loc => ({ src: loc.src, path: [...loc.path, ...more] });

function fmt(loc: Loc): string {
  const { line, col } = position(loc);
  return `${loc.src.file}:${line}:${col}`;
}

// ---------------------------------------------------------------------------------------------
// Stage: re2

interface Re2Verdict {
  /** RE2's reason for refusing the pattern */
  error?: string;
  /** the pattern matches the empty string */
  empty?: boolean;
}

/**
 * What RE2 said about each pattern, by pattern text. Compiling is the slow part of loading (a Unicode
 * class under a counted repetition, `^[\p{L} .-]{1,64}$`, takes RE2 ~100 ms) and a hot reload sees
 * mostly the same patterns again. Only the verdict is kept, not the compiled program; the map is
 * bounded and simply starts over when full.
 */
const re2Verdicts = new Map<string, Re2Verdict>();
const RE2_VERDICTS_MAX = 10_000;

function re2Verdict(pattern: string): Re2Verdict {
  let v = re2Verdicts.get(pattern);
  if (!v) {
    try {
      v = { empty: new RE2(pattern, 'u').test('') };
    } catch (err) {
      v = { error: (err as Error).message };
    }
    if (re2Verdicts.size >= RE2_VERDICTS_MAX) re2Verdicts.clear();
    re2Verdicts.set(pattern, v);
  }
  return v;
}

/** RE2's own reason when it cannot compile the pattern (lookaround, backreference, too large). */
export function re2Error(pattern: string): string | undefined {
  return re2Verdict(pattern).error;
}

function checkRulePattern(r: RuleSpec, loc: Loc, problems: Problems): void {
  if (r.minEntropy !== undefined && r.validate !== 'entropy') {
    problems.loc(
      sub(loc, 'minEntropy'),
      'invalid_value',
      `rule "${r.id}" minEntropy: only applies with validate: entropy`,
    );
  }
  const v = re2Verdict(r.pattern);
  if (v.error !== undefined) {
    problems.loc(sub(loc, 'pattern'), 're2_compile', `rule "${r.id}" pattern: ${v.error} (RE2)`);
  } else if (v.empty) {
    // a rule that matches the empty string fires on every text (and has no span to redact)
    problems.loc(sub(loc, 'pattern'), 'empty_match', `rule "${r.id}" pattern: matches the empty string`);
  }
}

// ---------------------------------------------------------------------------------------------
// Stages after merge: packs, rules, overrides, re2, tests, resolve

interface RuleState {
  spec: RuleSpec;
  loc: Loc;
  pack?: string;
  category: string;
  action: Action;
  directions: Direction[];
  enabled: boolean;
}

/** What the stages after `merge` share. */
interface Resolution {
  m: Merged;
  problems: Problems;
  packsDir: string;
  /** the merged spec with defaults applied; lists index-aligned with `m`'s located lists */
  spec: Required<PolicySpec>;
  tools: Required<NonNullable<PolicySpec['tools']>>;
  known: string[];
  packs: LoadedPack[];
  rules: Map<string, RuleState>;
  /** custom rules that made it into `rules` (their patterns are checked by the re2 stage) */
  custom: RuleState[];
}

/** The stages after merge, in order; each adds problems, none throws. */
function resolveMerged(m: Merged, problems: Problems, packsDir: string): ResolvedPolicy | undefined {
  const r = stageDefaults(m, problems, packsDir);
  stagePacks(r);
  stageRules(r);
  stageOverrides(r); // after rules: overrides may target custom rules and categories
  stageTools(r);
  stageRe2(r);
  stageTests(r); // after overrides: a test may name any rule, enabled or not
  if (problems.count) return undefined;
  return stageResolve(r);
}

/**
 * defaults: the schema's defaults, applied once to the merged document (per-document defaults would
 * let a later document's default undo an earlier document's explicit value)
 */
function stageDefaults(m: Merged, problems: Problems, packsDir: string): Resolution {
  const doc = {
    apiVersion: 'inferguard.io/v1alpha1',
    kind: 'GuardPolicy',
    metadata: { name: m.name },
    spec: {
      ...structuredClone(m.spec),
      rules: m.rules.map((r) => structuredClone(r.value)),
      overrides: m.overrides.map((o) => structuredClone(o.value)),
      tests: m.tests.map((t) => structuredClone(t.value)),
      tools: {
        ...(m.spec.tools?.default ? { default: m.spec.tools.default } : {}),
        allow: m.toolAllow.map((t) => structuredClone(t.value)),
        deny: m.toolDeny.map((t) => t.value),
      },
    },
  };
  validator(GUARD_POLICY_SCHEMA)(doc);
  const spec = doc.spec as Required<PolicySpec>;
  return {
    m,
    problems,
    packsDir,
    spec,
    tools: spec.tools as Required<NonNullable<PolicySpec['tools']>>,
    known: knownPacks(packsDir),
    packs: [],
    rules: new Map(),
    custom: [],
  };
}

/** packs: each name in spec.packs, loaded (and checked, patterns included) from the packs directory */
function stagePacks(r: Resolution): void {
  for (const p of r.m.packs) {
    if (!r.known.includes(p.value)) {
      r.problems.loc(
        p.loc,
        'unknown_pack',
        `spec.packs: unknown pack "${p.value}"${suggest(p.value, r.known)} (known: ${r.known.join(', ') || 'none'})`,
      );
      continue;
    }
    const pack = loadPack(path.join(r.packsDir, `${p.value}.yaml`), r.problems);
    if (pack) r.packs.push(pack);
  }
}

/** rules: packs' rules in pack order, then the policy's own; ids unique, custom ids not reserved */
function stageRules(r: Resolution): void {
  const { rules, problems } = r;
  for (const pack of r.packs) {
    for (const { value, loc } of pack.rules) {
      const prior = rules.get(value.id);
      if (prior) {
        // within one pack this was reported by parsePack; across packs it is reported here
        if (prior.pack !== pack.name) {
          problems.loc(
            sub(loc, 'id'),
            'duplicate_rule',
            `duplicate rule id "${value.id}" (also in pack "${prior.pack}")`,
          );
        }
        continue;
      }
      rules.set(value.id, state(value, loc, pack.name));
    }
  }
  const reserved = new Set([...r.known, ...ENGINE_PREFIXES]);
  r.spec.rules.forEach((rule, i) => {
    const loc = r.m.rules[i].loc;
    const prefix = rule.id.split('.')[0];
    if (rule.id.includes('.') && reserved.has(prefix)) {
      problems.loc(
        sub(loc, 'id'),
        'reserved_rule_id',
        `rule "${rule.id}": the prefix "${prefix}." is reserved for built-in rules; use your own, e.g. "acme.${rule.id.slice(prefix.length + 1)}"`,
      );
    }
    const prior = rules.get(rule.id);
    if (prior) {
      problems.loc(
        sub(loc, 'id'),
        'duplicate_rule',
        prior.pack
          ? `duplicate rule id "${rule.id}" (defined by pack "${prior.pack}")`
          : `duplicate rule id "${rule.id}" (first defined at ${fmt(sub(prior.loc, 'id'))})`,
      );
      return;
    }
    const s = state(rule, loc, undefined);
    rules.set(rule.id, s);
    r.custom.push(s);
  });
}

/** overrides, in order: a later override of the same field wins */
function stageOverrides(r: Resolution): void {
  const { rules, problems } = r;
  const categories = new Set([...rules.values()].map((x) => x.category));
  r.spec.overrides.forEach((o, i) => {
    const loc = r.m.overrides[i].loc;
    let targets: RuleState[];
    if (o.rule !== undefined) {
      const target = rules.get(o.rule);
      if (!target) {
        const prefix = o.rule.split('.')[0];
        const hint =
          r.known.includes(prefix) && !r.packs.some((p) => p.name === prefix)
            ? ` (pack "${prefix}" is not in spec.packs)`
            : suggest(o.rule, rules.keys());
        problems.loc(sub(loc, 'rule'), 'unknown_rule', `override: unknown rule "${o.rule}"${hint}`);
        return;
      }
      targets = [target];
    } else {
      const c = o.category as string;
      if (!categories.has(c)) {
        problems.loc(
          sub(loc, 'category'),
          'unknown_category',
          `override: unknown category "${c}"${suggest(c, categories)} (known: ${[...categories].sort().join(', ') || 'none'})`,
        );
        return;
      }
      targets = [...rules.values()].filter((x) => x.category === c);
    }
    for (const t of targets) {
      if (o.action !== undefined) t.action = o.action;
      if (o.directions !== undefined) t.directions = [...o.directions];
      if (o.enabled !== undefined) t.enabled = o.enabled;
    }
  });
}

/** tools: each name listed once, never both allowed and denied; numeric ranges that can be met */
function stageTools(r: Resolution): void {
  const { problems } = r;
  const allowed = new Map<string, Loc>();
  r.tools.allow.forEach((t, i) => {
    const loc = r.m.toolAllow[i].loc;
    const first = allowed.get(t.name);
    if (first) {
      problems.loc(
        sub(loc, 'name'),
        'duplicate_tool',
        `tool "${t.name}": listed twice in tools.allow (first at ${fmt(sub(first, 'name'))})`,
      );
    } else allowed.set(t.name, loc);
    for (const [arg, c] of Object.entries(t.args ?? {})) {
      if (c.minimum !== undefined && c.maximum !== undefined && c.minimum > c.maximum) {
        problems.loc(
          sub(loc, 'args', arg, 'minimum'),
          'invalid_value',
          `tool "${t.name}" arg "${arg}": minimum ${c.minimum} is greater than maximum ${c.maximum}`,
        );
      }
    }
  });
  r.tools.deny.forEach((name, i) => {
    const first = allowed.get(name);
    if (first) {
      problems.loc(
        r.m.toolDeny[i].loc,
        'duplicate_tool',
        `tool "${name}": both allowed (${fmt(sub(first, 'name'))}) and denied`,
      );
    }
  });
}

/** re2: every pattern of the policy compiled by RE2 (packs' patterns were checked when they loaded) */
function stageRe2(r: Resolution): void {
  for (const rule of r.custom) checkRulePattern(rule.spec, rule.loc, r.problems);
  r.tools.allow.forEach((t, i) => {
    for (const [arg, c] of Object.entries(t.args ?? {})) {
      const at = sub(r.m.toolAllow[i].loc, 'args', arg);
      const reason = c.pattern !== undefined ? re2Error(c.pattern) : undefined;
      if (reason !== undefined) {
        r.problems.loc(
          sub(at, 'pattern'),
          're2_compile',
          `tool "${t.name}" arg "${arg}" pattern: ${reason} (RE2)`,
        );
      }
      c.deny?.forEach((d, j) => {
        const why = re2Error(d);
        if (why !== undefined) {
          r.problems.loc(
            sub(at, 'deny', j),
            're2_compile',
            `tool "${t.name}" arg "${arg}" deny[${j}]: ${why} (RE2)`,
          );
        }
      });
    }
  });
}

/** tests: each case well-formed and naming a rule that exists */
function stageTests(r: Resolution): void {
  r.spec.tests.forEach((t, i) => checkTest(t, r.m.tests[i].loc, r.rules, r.problems));
}

/** resolve: enabled rules only, every default filled in, positions kept, hash computed */
function stageResolve(r: Resolution): ResolvedPolicy {
  const { spec, tools, m } = r;
  const resolved: ResolvedPolicy = {
    name: m.name,
    mode: spec.mode,
    rules: [...r.rules.values()].filter((x) => x.enabled).map(resolvedRule),
    limits: { ...DEFAULT_LIMITS, ...spec.limits },
    tools: {
      default: tools.default ?? 'allow',
      allow: tools.allow.map((t, i) => ({
        name: t.name,
        args: Object.fromEntries(
          Object.entries(t.args ?? {}).map(([arg, c]): [string, ResolvedArgConstraint] => [
            arg,
            { ...c, origin: originOf(sub(m.toolAllow[i].loc, 'args', arg)) },
          ]),
        ),
      })),
      deny: [...new Set(tools.deny)],
    },
    output: {
      urls: {
        allowDomains: spec.output.urls?.allowDomains ?? [],
        blockMarkdownImages: spec.output.urls?.blockMarkdownImages ?? false,
      },
      systemPromptLeakMinChars: leakMinChars(spec.output.systemPromptLeak),
    },
    http: { allowPaths: spec.http.allowPaths ?? [] },
    grpc: { allowMethods: spec.grpc.allowMethods ?? [] },
    tests: spec.tests.map((t, i) => ({ ...t, ...testPosition(m.tests[i].loc) })),
  };
  resolved.hash = hashPolicy(resolved);
  return resolved;
}

function checkTest(t: PolicyTestCase, loc: Loc, rules: Map<string, RuleState>, problems: Problems): void {
  if (t.system !== undefined && t.input !== undefined) {
    problems.loc(
      sub(loc, 'system'),
      'invalid_test',
      'test: "system" only applies to output cases (leak detection)',
    );
  }
  if (t.rule !== undefined && !rules.has(t.rule) && !ENGINE_PREFIXES.includes(t.rule.split('.')[0])) {
    problems.loc(
      sub(loc, 'rule'),
      'invalid_test',
      `test: unknown rule "${t.rule}"${suggest(t.rule, rules.keys())}`,
    );
  }
}

function testPosition(loc: Loc): { file: string; line: number } {
  return { file: loc.src.file, line: position(loc).line };
}

function state(spec: RuleSpec, loc: Loc, pack: string | undefined): RuleState {
  return {
    spec,
    loc,
    pack,
    category: spec.category ?? pack ?? 'custom',
    action: spec.action ?? 'block',
    directions: [...(spec.directions ?? (pack ? ['input'] : ['input', 'output']))],
    enabled: spec.enabled ?? true,
  };
}

function resolvedRule(r: RuleState): ResolvedRule {
  const { id, pattern, description, message, sources, validate, minEntropy } = r.spec;
  const out: ResolvedRule = {
    id,
    pattern,
    category: r.category,
    action: r.action,
    directions: r.directions,
    origin: originOf(sub(r.loc, 'pattern')),
  };
  if (description !== undefined) out.description = description;
  if (message !== undefined) out.message = message;
  if (sources !== undefined) out.sources = [...sources];
  if (validate !== undefined) out.validate = validate;
  if (minEntropy !== undefined) out.minEntropy = minEntropy;
  if (r.pack !== undefined) out.pack = r.pack;
  return out;
}

function leakMinChars(v: boolean | { minChars?: number } | undefined): number {
  if (v === true) return DEFAULT_LEAK_MIN_CHARS;
  if (isPlainObject(v)) return v.minChars ?? DEFAULT_LEAK_MIN_CHARS;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Hash: what the policy does, not where it was written

/** JSON with object keys sorted, undefined dropped: equal values give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** sha256 hex of the resolved policy without positions and tests (they do not change decisions) */
export function hashPolicy(p: ResolvedPolicy): string {
  const { tests: _tests, hash: _hash, ...rest } = p;
  const stripped = {
    ...rest,
    rules: rest.rules.map(({ origin: _o, ...r }) => r),
    tools: {
      ...rest.tools,
      allow: rest.tools.allow.map((t) => ({
        name: t.name,
        args: Object.fromEntries(Object.entries(t.args).map(([k, { origin: _o, ...c }]) => [k, c])),
      })),
    },
  };
  return createHash('sha256').update(canonicalJson(stripped)).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Entry points

export interface LoadResult {
  /** set when there were no problems */
  resolved?: ResolvedPolicy;
  /** set when every source was a single RulePack (CLI `policy validate/test` of a pack file) */
  pack?: { name: string; resolved: ResolvedPolicy };
  problems: PolicyProblem[];
}

/** Runs the stages up to `resolve` (no compile) over already-read sources. */
export function resolveSources(sources: PolicySource[], opts: LoadOptions = {}): LoadResult {
  const problems = new Problems();
  const packsDir = opts.packsDir ?? PACKS_DIR;
  const docs: SourceDoc[] = [];
  for (const s of sources) docs.push(...parseSource(s, problems)); // parse
  if (!docs.length) {
    if (!problems.count)
      problems.at(sources[0]?.file ?? '<policy>', 1, 1, 'no_documents', 'no policy document');
    return { problems: problems.sorted() };
  }
  const kinds = docs.map((d) => validateDoc(d, problems, opts.allowPacks ?? false)); // validate
  if (problems.count) return { problems: problems.sorted() };

  if (kinds.includes('RulePack')) {
    if (docs.length !== 1) {
      problems.loc(
        { src: docs[1], path: [] },
        'invalid_pack',
        'a pack file holds exactly one RulePack document and nothing else',
      );
      return { problems: problems.sorted() };
    }
    return resolvePackSource(sources[0], problems);
  }

  const merged = merge(docs); // merge
  const resolved = resolveMerged(merged, problems, packsDir); // defaults … resolve
  return resolved ? { resolved, problems: [] } : { problems: problems.sorted() };
}

/** A pack file on its own is checked like a pack and resolved as a policy made of only that pack. */
function resolvePackSource(source: PolicySource, problems: Problems): LoadResult {
  const pack = parsePack(source, problems);
  if (!pack || problems.count) return { problems: problems.sorted() };
  const rules = new Map(pack.rules.map(({ value, loc }) => [value.id, state(value, loc, pack.name)]));
  pack.tests.forEach(({ value, loc }) => checkTest(value, loc, rules, problems));
  if (problems.count) return { problems: problems.sorted() };
  const resolved: ResolvedPolicy = {
    ...emptyResolved(pack.name),
    rules: [...rules.values()].filter((r) => r.enabled).map(resolvedRule),
    tests: pack.tests.map(({ value, loc }) => ({ ...value, ...testPosition(loc) })),
  };
  resolved.hash = hashPolicy(resolved);
  return { pack: { name: pack.name, resolved }, resolved, problems: [] };
}

function emptyResolved(name: string): ResolvedPolicy {
  return {
    name,
    mode: 'enforce',
    rules: [],
    limits: { ...DEFAULT_LIMITS },
    tools: { default: 'allow', allow: [], deny: [] },
    output: { urls: { allowDomains: [], blockMarkdownImages: false }, systemPromptLeakMinChars: 0 },
    http: { allowPaths: [] },
    grpc: { allowMethods: [] },
    tests: [],
  };
}

/**
 * Stage compile. load.ts has compiled every pattern on its own, so this only fails when RE2 refuses a
 * whole set (memory): still reported as a problem of the policy, never as a stray exception.
 */
export function compileResolved(
  resolved: ResolvedPolicy,
  file: string,
): { policy?: CompiledPolicy; problems: PolicyProblem[] } {
  try {
    return { policy: compilePolicy(resolved), problems: [] };
  } catch (err) {
    const message = `compile: ${(err as Error).message}`;
    return { problems: [{ file, line: 1, col: 1, code: 'compile' satisfies ProblemCode, message }] };
  }
}

function compileOrThrow(r: LoadResult, file: string): CompiledPolicy {
  if (!r.resolved) throw new PolicyLoadError(r.problems);
  const { policy, problems } = compileResolved(r.resolved, file);
  if (!policy) throw new PolicyLoadError(problems);
  return policy;
}

/** Reads a file or a directory (its *.yaml/*.yml files in name order, no dotfiles, not recursive). */
export async function readSources(
  paths: string | string[],
): Promise<{ sources: PolicySource[]; problems: PolicyProblem[] }> {
  const sources: PolicySource[] = [];
  const problems = new Problems();
  for (const p of Array.isArray(paths) ? paths : [paths]) {
    try {
      // stat follows symlinks: a kubelet ConfigMap mount is `policy.yaml -> ..data/policy.yaml`,
      // `..data -> ..2026_11_26_…`; the dot-prefixed entries are skipped, the links are read through.
      if ((await stat(p)).isDirectory()) {
        const names = (await readdir(p)).filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n)).sort();
        const files: string[] = [];
        for (const n of names) {
          const f = path.join(p, n);
          if ((await stat(f).catch(() => undefined))?.isFile()) files.push(f);
        }
        if (!files.length) problems.at(p, 1, 1, 'no_documents', 'no *.yaml or *.yml files in directory');
        for (const f of files) sources.push({ file: f, text: await readFile(f, 'utf8') });
      } else {
        sources.push({ file: p, text: await readFile(p, 'utf8') });
      }
    } catch (err) {
      problems.at(p, 1, 1, 'io', `cannot read: ${ioReason(err)}`);
    }
  }
  return { sources, problems: problems.sorted() };
}

/** the same as readSources, synchronously (defaultPolicy() is synchronous) */
function readSourcesSync(p: string): PolicySource[] {
  if (statSync(p).isDirectory()) {
    return readdirSync(p)
      .filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n))
      .sort()
      .map((n) => path.join(p, n))
      .filter((f) => statSync(f, { throwIfNoEntry: false })?.isFile())
      .map((f) => ({ file: f, text: readFileSync(f, 'utf8') }));
  }
  return [{ file: p, text: readFileSync(p, 'utf8') }];
}

function ioReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return e.code ?? e.message;
  }
}

/** Reads, resolves (no compile) and reports: what `policy validate` and the tests use. */
export async function resolvePaths(paths: string | string[], opts: LoadOptions = {}): Promise<LoadResult> {
  const { sources, problems } = await readSources(paths);
  if (problems.length) return { problems };
  return resolveSources(sources, opts);
}

/** file or directory (merged), or several; undefined = the built-in default policy */
export async function loadPolicy(paths?: string | string[], opts: LoadOptions = {}): Promise<CompiledPolicy> {
  if (paths === undefined || (Array.isArray(paths) && !paths.length)) return defaultPolicy();
  return compileOrThrow(await resolvePaths(paths, opts), Array.isArray(paths) ? paths[0] : paths);
}

export function loadPolicyText(text: string, file: string, opts: LoadOptions = {}): CompiledPolicy {
  return compileOrThrow(resolveSources([{ file, text }], opts), file);
}

/** every problem of a policy text (empty when valid): the injector's ConfigMap webhook uses this */
export function validatePolicyText(text: string, file: string, opts: LoadOptions = {}): PolicyProblem[] {
  return resolveSources([{ file, text }], opts).problems;
}

let builtinDefault: CompiledPolicy | undefined;
let builtinEmpty: CompiledPolicy | undefined;

/** policy/default-policy.yaml (all built-in packs, tools allowed), loaded once */
export function defaultPolicy(): CompiledPolicy {
  if (!builtinDefault) {
    const file = DEFAULT_POLICY_CANDIDATES.find((f) => existsSync(f));
    if (!file) {
      // a packaging mistake, said loudly: a silent stand-in would enforce something else
      throw new PolicyLoadError([
        {
          file: DEFAULT_POLICY_CANDIDATES[0],
          line: 1,
          col: 1,
          code: 'io',
          message: 'cannot read: the built-in default policy is missing from this installation',
        },
      ]);
    }
    builtinDefault = compileOrThrow(resolveSources(readSourcesSync(file)), file);
  }
  return builtinDefault;
}

/** no rules at all, default limits, tools allowed: benchmarks and pass-through comparisons */
export function emptyPolicy(): CompiledPolicy {
  if (!builtinEmpty) {
    const resolved = emptyResolved('empty');
    resolved.hash = hashPolicy(resolved);
    builtinEmpty = compilePolicy(resolved);
  }
  return builtinEmpty;
}
