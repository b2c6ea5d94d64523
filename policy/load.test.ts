import {
  mkdtempSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatProblem, PolicyLoadError } from './api.js';
import {
  defaultPolicy,
  emptyPolicy,
  hashPolicy,
  knownPacks,
  loadPolicy,
  PROBLEM_CODES,
  loadPolicyText,
  resolvePaths,
  resolveSources,
  validatePolicyText,
  type LoadResult,
} from './load.js';
import { GUARD_POLICY_SCHEMA, SCHEMA_FILES } from './schema.js';
import type { ResolvedPolicy } from './types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TESTDATA = path.join(HERE, 'testdata');
const PACKS = path.join(TESTDATA, 'packs');
const opts = { packsDir: PACKS };
const td = (f: string): string => path.join(TESTDATA, f);

const tmp = mkdtempSync(path.join(tmpdir(), 'inferguard-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** problems as the CLI prints them, with the testdata directory shortened to `testdata/` */
function lines(r: LoadResult): string[] {
  return r.problems.map((p) =>
    formatProblem(p)
      .split(TESTDATA + path.sep)
      .join('testdata/'),
  );
}

function resolved(r: LoadResult): ResolvedPolicy {
  expect(lines(r)).toEqual([]);
  return r.resolved as ResolvedPolicy;
}

const policy = (spec: string, name = 'p'): string =>
  `apiVersion: inferguard.io/v1alpha1\nkind: GuardPolicy\nmetadata: { name: ${name} }\nspec:\n${spec}`;

describe('a valid policy', () => {
  it('resolves packs, overrides, custom rules and defaults', async () => {
    const p = resolved(await resolvePaths(td('valid.yaml'), opts));
    expect(p.name).toBe('acme-chat');
    expect(p.mode).toBe('enforce');
    // packs in order, then custom rules; overrides applied; disabled rules dropped unless re-enabled
    expect(p.rules.map((r) => [r.id, r.category, r.action, r.directions.join('+'), r.pack ?? '-'])).toEqual([
      ['alpha.override-phrase', 'injection', 'block', 'input', 'alpha'],
      ['alpha.token', 'alpha', 'block', 'input+output', 'alpha'],
      ['alpha.off-by-default', 'alpha', 'block', 'input', 'alpha'],
      ['beta.email', 'pii', 'monitor', 'output', 'beta'],
      ['beta.phone', 'pii', 'block', 'output', 'beta'],
      ['acme.codename', 'custom', 'block', 'input+output', '-'],
      ['acme.ticket', 'internal', 'redact', 'input+output', '-'], // custom rules: both directions by default
    ]);
    const codename = p.rules.find((r) => r.id === 'acme.codename');
    expect(codename).toMatchObject({
      message: 'internal codename',
      origin: { file: td('valid.yaml'), line: 16, col: 16 },
    });
    expect(p.rules.find((r) => r.id === 'acme.ticket')?.sources).toEqual(['user', 'tool']);
    expect(p.rules[0].origin).toEqual({ file: path.join(PACKS, 'alpha.yaml'), line: 8, col: 14 });
    expect(p.limits).toEqual({
      maxRequestBytes: 1048576,
      maxMessages: 256,
      maxOutputTokens: 4096,
      maxDecodeDepth: 2,
      maxDecodedBytes: 65536,
      maxHoldback: 256,
    });
    expect(p.tools.default).toBe('deny');
    expect(p.tools.deny).toEqual(['shell_exec']);
    expect(p.tools.allow.map((t) => t.name)).toEqual(['get_weather', 'run_sql']);
    expect(p.tools.allow[0].args.city).toEqual({
      pattern: '^[\\p{L} .-]{1,64}$',
      required: true,
      origin: { file: td('valid.yaml'), line: 30, col: 23 },
    });
    expect(p.tools.allow[1].args.limit).toMatchObject({ minimum: 1, maximum: 100, required: false });
    expect(p.output).toEqual({
      urls: { allowDomains: ['example.com', '*.acme.internal'], blockMarkdownImages: true },
      systemPromptLeakMinChars: 40,
    });
    expect(p.http.allowPaths).toEqual(['GET /health', 'GET /v1/models*']);
    expect(p.grpc.allowMethods).toEqual(['/inference.GRPCInferenceService/ServerLive']);
    expect(p.tests).toEqual([
      {
        name: 'codename',
        input: 'Tell me about Project Bluebird',
        expect: 'block',
        rule: 'acme.codename',
        file: td('valid.yaml'),
        line: 40,
      },
      { input: 'How do I ignore whitespace in git diff?', expect: 'allow', file: td('valid.yaml'), line: 41 },
    ]);
    expect(p.hash).toBe(hashPolicy(p));
  });

  it('compiles into the policy the engine scans with', async () => {
    const c = await loadPolicy(td('valid.yaml'), opts);
    const r = resolved(await resolvePaths(td('valid.yaml'), opts));
    expect(c).toMatchObject({ name: 'acme-chat', mode: 'enforce', ruleCount: 7, hash: r.hash });
    expect(c.limits.maxOutputTokens).toBe(4096);
    expect(c.http.allowPaths).toEqual(['GET /health', 'GET /v1/models*']);
    expect(c.tests).toHaveLength(2);
  });

  it('applies documented defaults to a minimal policy: no packs, enforce, allow tools, leak off', () => {
    const r = resolved(
      resolveSources([{ file: 'min.yaml', text: policy('  rules: [{ id: a.b, pattern: x }]\n') }], opts),
    );
    expect(r.mode).toBe('enforce');
    expect(r.rules).toEqual([
      {
        id: 'a.b',
        pattern: 'x',
        category: 'custom',
        action: 'block',
        directions: ['input', 'output'],
        origin: { file: 'min.yaml', line: 5, col: 31 },
      },
    ]);
    expect(r.limits).toEqual({
      maxRequestBytes: 4194304,
      maxMessages: 512,
      maxOutputTokens: 0,
      maxDecodeDepth: 2,
      maxDecodedBytes: 65536,
      maxHoldback: 256,
    });
    expect(r.tools).toEqual({ default: 'allow', allow: [], deny: [] });
    expect(r.output).toEqual({
      urls: { allowDomains: [], blockMarkdownImages: false },
      systemPromptLeakMinChars: 0,
    });
    expect(r.http.allowPaths).toEqual([]);
    expect(r.tests).toEqual([]);
  });

  it('accepts patterns that are pathological for backtracking engines: RE2 runs them in linear time', () => {
    const text = policy(
      "  rules:\n    - { id: acme.nested, pattern: '(a+)+$' }\n    - { id: acme.star, pattern: '(.*a){12}' }\n",
    );
    expect(resolved(resolveSources([{ file: 'redos.yaml', text }], opts)).rules.map((x) => x.id)).toEqual([
      'acme.nested',
      'acme.star',
    ]);
  });

  it('understands YAML anchors and merge keys', () => {
    const text = policy(
      "  rules:\n    - &base { id: acme.a, pattern: 'aaa', directions: [input, output], action: redact }\n    - { <<: *base, id: acme.b, pattern: 'bbb' }\n",
    );
    const r = resolved(resolveSources([{ file: 'anchors.yaml', text }], opts));
    expect(r.rules.map((x) => [x.id, x.pattern, x.action, x.directions.join('+')])).toEqual([
      ['acme.a', 'aaa', 'redact', 'input+output'],
      ['acme.b', 'bbb', 'redact', 'input+output'],
    ]);
  });

  it('reads systemPromptLeak as off, on (40 chars) or a custom length', () => {
    const leak = (v: string): number =>
      resolved(
        resolveSources([{ file: 'l.yaml', text: policy(`  output: { systemPromptLeak: ${v} }\n`) }], opts),
      ).output.systemPromptLeakMinChars;
    expect([leak('false'), leak('true'), leak('{}'), leak('{ minChars: 64 }')]).toEqual([0, 40, 40, 64]);
  });

  it('applies overrides in order: the later one wins', () => {
    const r = resolved(
      resolveSources(
        [
          {
            file: 'o.yaml',
            text: policy(
              '  packs: [beta]\n  overrides:\n    - { category: pii, action: monitor }\n    - { rule: beta.phone, action: redact }\n    - { rule: beta.email, enabled: false }\n',
            ),
          },
        ],
        opts,
      ),
    );
    expect(r.rules.map((x) => [x.id, x.action])).toEqual([['beta.phone', 'redact']]);
  });

  it('keeps actions under mode: monitor (the engine downgrades them at decision time)', () => {
    const r = resolved(
      resolveSources([{ file: 'm.yaml', text: policy('  mode: monitor\n  packs: [beta]\n') }], opts),
    );
    expect(r.mode).toBe('monitor');
    expect(r.rules.map((x) => x.action)).toEqual(['redact', 'block']);
  });
});

describe('problems are collected, sorted and point at the key or value', () => {
  it('schema errors: unknown keys, enums, types, patterns, required keys, one-of rules', async () => {
    expect(lines(await resolvePaths(td('bad-schema.yaml'), opts))).toEqual([
      'testdata/bad-schema.yaml:3:31: metadata: unknown key "owner" (allowed: name, namespace, description, labels, annotations)',
      'testdata/bad-schema.yaml:5:9: spec.mode: must be one of enforce, monitor (got "enforcing")',
      'testdata/bad-schema.yaml:8:5: spec.limits: unknown key "maxRequestByte" (did you mean "maxRequestBytes"?)',
      'testdata/bad-schema.yaml:9:18: spec.limits.maxMessages: must be >= 0 (got -1)',
      'testdata/bad-schema.yaml:11:11: rule "Acme.SSN" id: must be a lowercase dotted id: letters a-z, digits, ".", "_", "-", starting with a letter or digit, e.g. "acme.codename" (got "Acme.SSN")',
      'testdata/bad-schema.yaml:13:7: rule "acme.no-pattern": missing required key "pattern"',
      'testdata/bad-schema.yaml:14:15: rule "acme.no-pattern" action: must be one of block, redact, monitor, allow (got "deny")',
      'testdata/bad-schema.yaml:19:25: tool "get_weather" arg "city": unknown key "patern" (did you mean "pattern"?)',
      'testdata/bad-schema.yaml:20:24: spec.http.allowPaths[0]: must be "METHOD /path" with an optional trailing "*", e.g. "GET /health" or "GET /v1/models*" (got "GET health")',
      'testdata/bad-schema.yaml:22:7: spec.overrides[0]: an override names exactly one of "rule" or "category"',
      'testdata/bad-schema.yaml:23:7: spec.overrides[1]: an override changes at least one of "action", "directions" or "enabled"',
      'testdata/bad-schema.yaml:25:7: spec.tests[0]: a test case needs exactly one of "input" or "output"',
      'testdata/bad-schema.yaml:26:29: spec.tests[1].expect: must be one of allow, block, redact, monitor (got "blocked")',
      'testdata/bad-schema.yaml:27:3: spec: unknown key "sepc" (did you mean "grpc"?)',
    ]);
  });

  it("patterns RE2 cannot compile carry RE2's own reason; empty matches are refused", async () => {
    const r = await resolvePaths(td('bad-re2.yaml'), opts);
    expect(lines(r)).toEqual([
      'testdata/bad-re2.yaml:7:16: rule "acme.lookahead" pattern: invalid perl operator: (?= (RE2)',
      'testdata/bad-re2.yaml:9:16: rule "acme.backref" pattern: invalid escape sequence: \\1 (RE2)',
      'testdata/bad-re2.yaml:11:16: rule "acme.huge" pattern: pattern too large - compile failed (RE2)',
      'testdata/bad-re2.yaml:13:16: rule "acme.ssn" pattern: missing ): (\\d{3}-\\d{2}-\\d{4} (RE2)',
      'testdata/bad-re2.yaml:15:16: rule "acme.everything" pattern: matches the empty string',
      'testdata/bad-re2.yaml:20:29: tool "run_sql" arg "query" pattern: invalid perl operator: (?! (RE2)',
      'testdata/bad-re2.yaml:20:55: tool "run_sql" arg "query" deny[1]: invalid perl operator: (?<= (RE2)',
    ]);
    expect(r.problems.map((p) => p.code)).toEqual([
      're2_compile',
      're2_compile',
      're2_compile',
      're2_compile',
      'empty_match',
      're2_compile',
      're2_compile',
    ]);
  });

  it('references: unknown packs, rules, categories; duplicate ids and tools; test cases', async () => {
    expect(lines(await resolvePaths(td('bad-refs.yaml'), opts))).toEqual([
      'testdata/bad-refs.yaml:5:18: spec.packs: unknown pack "betta" (did you mean "beta"?) (known: alpha, beta)',
      'testdata/bad-refs.yaml:7:15: override: unknown rule "alpha.tokn" (did you mean "alpha.token"?)',
      'testdata/bad-refs.yaml:8:15: override: unknown rule "beta.email" (pack "beta" is not in spec.packs)',
      'testdata/bad-refs.yaml:9:19: override: unknown category "injecton" (did you mean "injection"?) (known: alpha, custom, injection)',
      'testdata/bad-refs.yaml:13:11: duplicate rule id "acme.one" (first defined at testdata/bad-refs.yaml:11:11)',
      'testdata/bad-refs.yaml:15:11: duplicate rule id "alpha.token" (defined by pack "alpha")',
      'testdata/bad-refs.yaml:15:11: rule "alpha.token": the prefix "alpha." is reserved for built-in rules; use your own, e.g. "acme.token"',
      'testdata/bad-refs.yaml:19:52: tool "run_sql" arg "limit": minimum 10 is greater than maximum 1',
      'testdata/bad-refs.yaml:20:17: tool "run_sql": listed twice in tools.allow (first at testdata/bad-refs.yaml:19:17)',
      'testdata/bad-refs.yaml:21:12: tool "run_sql": both allowed (testdata/bad-refs.yaml:19:17) and denied',
      'testdata/bad-refs.yaml:23:42: test: unknown rule "acme.onee" (did you mean "acme.one"?)',
      'testdata/bad-refs.yaml:24:29: test: "system" only applies to output cases (leak detection)',
    ]);
  });

  it('YAML syntax errors, with every document of the file checked', async () => {
    // inline, not a fixture file: prettier (npm run lint) cannot format a file that is not YAML
    const text = policy('  mode: enforce\n  mode: monitor\n  packs: [alpha\n', 'bad-yaml');
    expect(lines(resolveSources([{ file: 'testdata/bad-yaml.yaml', text }], opts))).toEqual([
      'testdata/bad-yaml.yaml:6:3: YAML: Map keys must be unique',
      'testdata/bad-yaml.yaml:8:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
  });

  it('refuses a document that is not a GuardPolicy, naming what it is', () => {
    const pack = readFileSync(path.join(PACKS, 'beta.yaml'), 'utf8');
    expect(validatePolicyText(pack, 'cm.yaml').map(formatProblem)).toEqual([
      "cm.yaml:2:7: kind: a RulePack is not a policy; name built-in packs in a GuardPolicy's spec.packs",
    ]);
    expect(validatePolicyText('- a\n- b\n', 'list.yaml').map(formatProblem)).toEqual([
      'list.yaml:1:1: document: must be a mapping, not a list',
    ]);
    // Windows editors: a byte order mark and CRLF line ends do not shift positions
    expect(
      validatePolicyText(
        '\uFEFFapiVersion: x\r\nkind: GuardPolicy\r\nmetadata: {name: a}\r\nspec: {mode: x}\r\n',
        'w.yaml',
      ).map(formatProblem),
    ).toEqual([
      'w.yaml:1:13: apiVersion: must be "inferguard.io/v1alpha1" (got "x")',
      'w.yaml:4:14: spec.mode: must be one of enforce, monitor (got "x")',
    ]);
    expect(validatePolicyText('# nothing\n', 'empty.yaml').map(formatProblem)).toEqual([
      'empty.yaml:1:1: no YAML document in file',
    ]);
    expect(
      validatePolicyText(
        'apiVersion: inferguard.io/v1\nkind: GuardPolicy\nmetadata: {name: x}\nspec: {}\n',
        'v.yaml',
      ).map(formatProblem),
    ).toEqual(['v.yaml:1:13: apiVersion: must be "inferguard.io/v1alpha1" (got "inferguard.io/v1")']);
  });

  it('checks gRPC method names, argument lists and leak lengths; the CLI names unknown kinds', () => {
    const text = policy(
      "  grpc: { allowMethods: ['inference.GRPCInferenceService/ModelInfer'] }\n  tools: { allow: [{ name: f, args: { x: { enum: [] } } }] }\n  output: { systemPromptLeak: { minChars: 4 } }\n",
    );
    expect(validatePolicyText(text, 'g.yaml').map(formatProblem)).toEqual([
      'g.yaml:5:26: spec.grpc.allowMethods[0]: must be "/package.Service/Method" or "/package.Service/*" (got "inference.GRPCInferenceService/ModelInfer")',
      'g.yaml:6:50: tool "f" arg "x" enum: must not be empty',
      'g.yaml:7:43: spec.output.systemPromptLeak.minChars: must be >= 8 (got 4)',
    ]);
    const other = 'apiVersion: inferguard.io/v1alpha1\nkind: Deployment\nmetadata: { name: x }\n';
    expect(
      resolveSources([{ file: 'k.yaml', text: other }], { allowPacks: true }).problems.map(formatProblem),
    ).toEqual(['k.yaml:2:7: kind: must be "GuardPolicy" or "RulePack" (got "Deployment")']);
  });

  it('loadPolicyText throws PolicyLoadError carrying every problem', () => {
    const text = policy("  mode: off\n  rules:\n    - { id: a.b, pattern: '(' }\n");
    expect(validatePolicyText(text, 'x.yaml').map(formatProblem)).toEqual([
      'x.yaml:5:9: spec.mode: must be one of enforce, monitor (got "off")',
    ]);
    let err: unknown;
    try {
      loadPolicyText(text, 'x.yaml', opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).problems.map((p) => p.code)).toEqual(['schema']);
    expect((err as Error).message).toBe('x.yaml:5:9: spec.mode: must be one of enforce, monitor (got "off")');
    // once the schema is fine, the RE2 stage reports the pattern
    expect(
      validatePolicyText(policy("  rules:\n    - { id: a.b, pattern: '(' }\n"), 'x.yaml').map(formatProblem),
    ).toEqual(['x.yaml:6:27: rule "a.b" pattern: missing ): ( (RE2)']);
  });

  it('reports files that cannot be read', async () => {
    const missing = path.join(tmp, 'nope.yaml');
    expect((await resolvePaths(missing)).problems.map(formatProblem)).toEqual([
      `${missing}:1:1: cannot read: no such file or directory`,
    ]);
    const empty = path.join(tmp, 'empty-dir');
    mkdirSync(empty);
    expect((await resolvePaths(empty)).problems.map(formatProblem)).toEqual([
      `${empty}:1:1: no *.yaml or *.yml files in directory`,
    ]);
  });
});

describe('multiple documents and directories merge predictably', () => {
  it('merges documents in order: lists add up, scalars and objects later-wins key by key', async () => {
    const r = resolved(await resolvePaths(td('multi-doc.yaml'), opts));
    expect(r.name).toBe('multi'); // the first document names the policy
    expect(r.mode).toBe('monitor'); // set by the first, not unset by later documents
    // packs union in first-seen order; beta.phone disabled; beta.email overridden by the third document
    expect(r.rules.map((x) => `${x.id}:${x.action}:${x.directions.join('+')}`)).toEqual([
      'alpha.override-phrase:block:input',
      'alpha.token:block:input+output',
      'beta.email:block:input',
      'acme.first:block:input+output',
      'acme.second:block:output',
    ]);
    expect(r.limits).toMatchObject({ maxMessages: 20, maxHoldback: 100 });
    expect(r.output.urls).toEqual({ allowDomains: ['a.example'], blockMarkdownImages: true });
    expect(r.tools).toEqual({
      default: 'deny',
      allow: [
        { name: 'a', args: {} },
        { name: 'c', args: {} },
      ],
      deny: ['b'],
    });
    expect(r.rules.find((x) => x.id === 'acme.second')?.origin).toEqual({
      file: td('multi-doc.yaml'),
      line: 24,
      col: 35,
    });
  });

  it('reads a directory in name order, *.yaml and *.yml only, skipping dotfiles', async () => {
    const r = resolved(await resolvePaths(td('dir-merge'), opts));
    expect(r.name).toBe('dir-policy');
    expect(r.mode).toBe('monitor');
    expect(r.http.allowPaths).toEqual(['GET /v1/models']); // a list inside an object: the later document replaces it
    expect(r.rules.map((x) => [x.id, path.basename(x.origin.file)])).toEqual([
      ['alpha.override-phrase', 'alpha.yaml'],
      ['alpha.token', 'alpha.yaml'],
      ['acme.base', '10-base.yaml'],
      ['acme.team', '20-team.yml'],
    ]);
  });

  it('gives the same hash to the same policy however it is laid out', async () => {
    const one = resolved(await resolvePaths(td('dir-merge'), opts));
    const texts = readdirSync(td('dir-merge'))
      .filter((f) => /^\d.*\.ya?ml$/.test(f))
      .sort()
      .map((f) => readFileSync(path.join(td('dir-merge'), f), 'utf8'));
    const joined = resolved(
      resolveSources([{ file: 'all.yaml', text: `# one file now\n${texts.join('---\n')}` }], opts),
    );
    expect(joined.hash).toBe(one.hash);
    expect(joined.rules[2].origin).not.toEqual(one.rules[2].origin);
    const changed = resolved(
      resolveSources([{ file: 'all.yaml', text: texts.join('---\n').replace("'team'", "'teams'") }], opts),
    );
    expect(changed.hash).not.toBe(one.hash);
    expect(one.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reports a duplicate rule id across files at the second, naming the first', async () => {
    const dir = path.join(tmp, 'dup');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'a.yaml'), policy('  rules:\n    - id: acme.x\n      pattern: x\n', 'a'));
    writeFileSync(path.join(dir, 'b.yaml'), policy('  mode: bogus\n', 'b'));
    writeFileSync(path.join(dir, 'c.yaml'), policy('  rules:\n    - id: acme.x\n      pattern: y\n', 'c'));
    // schema problems stop the load before merging: only b.yaml's mistake is reported
    expect(lines(await resolvePaths(dir))).toEqual([
      `${dir}/b.yaml:5:9: spec.mode: must be one of enforce, monitor (got "bogus")`,
    ]);
    writeFileSync(path.join(dir, 'b.yaml'), policy('  mode: monitor\n', 'b'));
    expect(lines(await resolvePaths(dir))).toEqual([
      `${dir}/c.yaml:6:11: duplicate rule id "acme.x" (first defined at ${dir}/a.yaml:6:11)`,
    ]);
  });

  it('reads a kubelet ConfigMap mount through its ..data symlinks', async () => {
    // what the kubelet writes for a ConfigMap volume: a timestamped directory, `..data` pointing at
    // it, and one symlink per key pointing through `..data`
    const mount = path.join(tmp, 'configmap');
    const stamp = '..2026_11_26_16_00_00.123456789';
    mkdirSync(path.join(mount, stamp), { recursive: true });
    copyFileSync(td('valid.yaml'), path.join(mount, stamp, 'policy.yaml'));
    writeFileSync(
      path.join(mount, stamp, 'extra.yaml'),
      policy('  rules:\n    - { id: acme.extra, pattern: extra }\n', 'extra'),
    );
    symlinkSync(stamp, path.join(mount, '..data'));
    symlinkSync('..data/policy.yaml', path.join(mount, 'policy.yaml'));
    symlinkSync('..data/extra.yaml', path.join(mount, 'extra.yaml'));
    const r = resolved(await resolvePaths(mount, opts));
    expect(r.name).toBe('extra'); // extra.yaml sorts before policy.yaml
    expect(r.rules.map((x) => x.id)).toContain('acme.codename');
    expect(r.rules.filter((x) => x.id === 'acme.codename')).toHaveLength(1); // read once, not via ..data too
    expect(r.rules.find((x) => x.id === 'acme.codename')?.origin.file).toBe(path.join(mount, 'policy.yaml'));
    // a broken key is reported under the name the user knows
    writeFileSync(
      path.join(mount, stamp, 'extra.yaml'),
      policy('  limits: { maxMessages: many }\n', 'extra'),
    );
    expect(lines(await resolvePaths(mount, opts))).toEqual([
      `${mount}/extra.yaml:5:26: spec.limits.maxMessages: must be an integer, not a string`,
    ]);
  });
});

describe('packs', () => {
  it('checks a pack file: name matches the file, ids are unique, patterns compile', async () => {
    const dir = path.join(tmp, 'packs-bad');
    mkdirSync(dir);
    writeFileSync(
      path.join(dir, 'gamma.yaml'),
      'apiVersion: inferguard.io/v1alpha1\nkind: RulePack\nmetadata: { name: gama }\nrules:\n  - { id: g.x, pattern: x }\n  - { id: gamma.y, pattern: "a(?=b)" }\n  - { id: g.x, pattern: z }\n',
    );
    const r = resolveSources([{ file: 'p.yaml', text: policy('  packs: [gamma]\n') }], { packsDir: dir });
    expect(r.problems.map(formatProblem)).toEqual([
      `${dir}/gamma.yaml:3:19: metadata.name: must be "gamma", the file's name (got "gama")`,
      `${dir}/gamma.yaml:6:29: rule "gamma.y" pattern: invalid perl operator: (?= (RE2)`,
      `${dir}/gamma.yaml:7:11: duplicate rule id "g.x" (first defined at ${dir}/gamma.yaml:5:11)`,
    ]);
    expect(knownPacks(dir)).toEqual(['gamma']);
  });

  it('a pack file on its own resolves to a policy of just that pack, with its tests', async () => {
    const r = await resolvePaths(path.join(PACKS, 'alpha.yaml'), { allowPacks: true });
    expect(lines(r)).toEqual([]);
    expect(r.pack?.name).toBe('alpha');
    expect(r.resolved?.rules.map((x) => x.id)).toEqual(['alpha.override-phrase', 'alpha.token']);
    expect(r.resolved?.tests.map((t) => [t.expect, t.line])).toEqual([
      ['block', 18],
      ['allow', 19],
    ]);
  });

  it('every built-in pack in policy/packs is valid', async () => {
    for (const name of knownPacks()) {
      const r = await resolvePaths(path.join(HERE, 'packs', `${name}.yaml`), { allowPacks: true });
      expect(r.problems.map(formatProblem), name).toEqual([]);
      expect(r.resolved?.rules.length, name).toBeGreaterThan(0);
    }
  });

  it('the built-in default and empty policies load', () => {
    const d = defaultPolicy();
    expect(d.name).toBe('default'); // policy/default-policy.yaml, not a stand-in
    expect(d.ruleCount).toBeGreaterThan(0);
    expect(d.mode).toBe('enforce');
    expect(d).toBe(defaultPolicy()); // loaded once, immutable
    const e = emptyPolicy();
    expect(e).toMatchObject({
      name: 'empty',
      ruleCount: 0,
      mode: 'enforce',
      limits: { maxRequestBytes: 4194304 },
    });
    expect(e.hash).not.toBe(d.hash);
  });
});

describe('the published JSON Schema', () => {
  it('policy/schema/*.json are the schemas the loader uses (UPDATE_SCHEMA=1 rewrites them)', () => {
    for (const [file, schema] of Object.entries(SCHEMA_FILES)) {
      const target = path.join(HERE, 'schema', file);
      // compared as data: the files are kept in prettier's layout
      if (process.env.UPDATE_SCHEMA) writeFileSync(target, `${JSON.stringify(schema, null, 2)}\n`);
      expect(JSON.parse(readFileSync(target, 'utf8')), file).toEqual(schema);
    }
  });

  it('an editor using the published file accepts the valid fixture and flags the broken one', () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(
      JSON.parse(readFileSync(path.join(HERE, 'schema', 'guardpolicy.schema.json'), 'utf8')),
    );
    expect(validate(parse(readFileSync(td('valid.yaml'), 'utf8')))).toBe(true);
    expect(validate(parse(readFileSync(td('bad-schema.yaml'), 'utf8')))).toBe(false);
    expect(GUARD_POLICY_SCHEMA.$id).toBe('https://inferguard.io/schemas/guardpolicy.schema.json');
  });
});

describe('docs/policy.md', () => {
  const doc = readFileSync(path.join(HERE, '..', 'docs', 'policy.md'), 'utf8');

  it('its complete example is a valid policy whose tests pass on the built-in packs', () => {
    const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
    expect(validatePolicyText(example, 'acme-chat.yaml').map(formatProblem)).toEqual([]);
    expect(loadPolicyText(example, 'acme-chat.yaml').name).toBe('acme-chat');
  });

  it('lists every problem code, and no other', () => {
    const table = doc.slice(doc.indexOf('| code | meaning |'));
    const listed = [...table.matchAll(/^\| `([a-z_0-9]+)`(?:, `([a-z_0-9]+)`)? \|/gm)].flatMap((m) =>
      m.slice(1).filter(Boolean),
    );
    expect(listed.sort()).toEqual([...PROBLEM_CODES].sort());
  });
});

describe('robustness', () => {
  it('never throws on mangled policies: every problem is a position inside the file', () => {
    const valid = readFileSync(td('valid.yaml'), 'utf8');
    const lineCount = valid.split('\n').length;
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(),
        text: fc.constantFrom(
          ':',
          '- ',
          '{',
          ']',
          '\n',
          '  ',
          '"',
          "'",
          '&a ',
          '*a',
          '<<: *a',
          '---\n',
          '\t',
          '(?=',
          '0',
        ),
      }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        let text = valid;
        for (const m of ms) {
          const at = m.at % (text.length + 1);
          text =
            m.kind === 'delete'
              ? text.slice(0, at) + text.slice(at + m.len)
              : text.slice(0, at) + m.text + text.slice(at);
        }
        const r = resolveSources([{ file: 'm.yaml', text }], opts);
        if (r.resolved) return r.problems.length === 0;
        expect(r.problems.length).toBeGreaterThan(0);
        for (const p of r.problems) {
          if (p.file !== 'm.yaml') continue; // a pack's own position
          expect(p.line).toBeGreaterThanOrEqual(1);
          expect(p.line).toBeLessThanOrEqual(lineCount + 40);
          expect(p.col).toBeGreaterThanOrEqual(1);
          expect(p.message).not.toBe('');
        }
        return true;
      }),
      { numRuns: 100, seed: 20261126 },
    );
  });
});
