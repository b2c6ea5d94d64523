// `inferguard policy validate FILE…` and `inferguard policy test FILE…` (SPEC §2).
//
// Each FILE is a policy file or a directory of policy files (merged, docs/policy.md) or a single
// RulePack file (policy/packs/<name>.yaml), so pack authors get the same checks and test runner.
// Exit codes: 0 all good, 1 a test case failed, 2 usage error or a policy that does not load.
import type { CompiledPolicy } from '../compile.js';
import { formatProblem, scanText } from '../index.js';
import { compileResolved, resolvePaths } from '../load.js';
import type { Decision, PolicyProblem, PolicyTestCase } from '../types.js';

const USAGE = `usage: inferguard policy validate FILE…
       inferguard policy test FILE…

  validate  check each policy (file or directory) and print "FILE: ok", or every problem as
            FILE:LINE:COL: message on stderr (exit 2)
  test      run the tests: cases of each policy through the engine and print PASS/FAIL per case
            (exit 1 on any failure, 2 when a policy does not load)
`;

export async function run(args: string[]): Promise<number> {
  const [sub, ...files] = args;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if ((sub !== 'validate' && sub !== 'test') || !files.length || files.some((f) => f.startsWith('-'))) {
    const bad = files.find((f) => f.startsWith('-'));
    process.stderr.write(
      `${sub === undefined ? '' : bad ? `inferguard policy: unknown flag "${bad}"\n` : sub === 'validate' || sub === 'test' ? `inferguard policy ${sub}: no FILE given\n` : `inferguard policy: unknown subcommand "${sub}"\n`}${USAGE}`,
    );
    return 2;
  }
  return sub === 'validate' ? validate(files) : test(files);
}

/** Loads one FILE (or directory) all the way to a compiled policy, or its problems. */
async function load(file: string): Promise<{ policy?: CompiledPolicy; problems: PolicyProblem[] }> {
  const r = await resolvePaths(file, { allowPacks: true });
  return r.resolved ? compileResolved(r.resolved, file) : { problems: r.problems };
}

async function validate(files: string[]): Promise<number> {
  let code = 0;
  for (const file of files) {
    const { problems } = await load(file);
    if (problems.length) {
      code = 2;
      process.stderr.write(problems.map((p) => `${formatProblem(p)}\n`).join(''));
    } else {
      process.stdout.write(`${file}: ok\n`);
    }
  }
  return code;
}

/** a test case's label: its name, else the start of its text */
function label(t: PolicyTestCase): string {
  if (t.name) return t.name;
  const text = t.input ?? t.output ?? '';
  return JSON.stringify(text.length > 48 ? `${text.slice(0, 47)}…` : text);
}

async function test(files: string[]): Promise<number> {
  let passed = 0;
  let failed = 0;
  let broken = false;
  for (const file of files) {
    const { policy, problems } = await load(file);
    if (!policy) {
      broken = true;
      process.stderr.write(problems.map((p) => `${formatProblem(p)}\n`).join(''));
      continue;
    }
    if (!policy.tests.length) {
      process.stdout.write(`${file}: no tests\n`);
      continue;
    }
    for (const t of policy.tests) {
      const where = `${t.file ?? file}:${t.line ?? 0}`;
      const direction = t.output !== undefined ? 'output' : 'input';
      const text = (t.output ?? t.input) as string;
      let got: Decision;
      let rules: string[];
      try {
        const r = scanText(policy, text, direction, {
          ...(t.system !== undefined ? { systemPrompt: t.system } : {}),
          ...(t.source !== undefined ? { source: t.source } : {}),
        });
        got = r.decision;
        rules = [...new Set(r.findings.map((f) => f.rule))];
      } catch (err) {
        failed++;
        process.stdout.write(`FAIL ${where} ${label(t)}: engine error: ${(err as Error).message}\n`);
        continue;
      }
      const problems: string[] = [];
      if (got !== t.expect) problems.push(`expected ${t.expect}, got ${got}`);
      if (t.rule !== undefined && !rules.includes(t.rule)) problems.push(`expected rule ${t.rule} to fire`);
      if (problems.length) {
        failed++;
        const fired = rules.length ? rules.join(', ') : 'none';
        process.stdout.write(`FAIL ${where} ${label(t)}: ${problems.join('; ')} (rules: ${fired})\n`);
      } else {
        passed++;
        process.stdout.write(`PASS ${where} ${label(t)}\n`);
      }
    }
  }
  process.stdout.write(`${passed} passed, ${failed} failed${broken ? ', some policies did not load' : ''}\n`);
  return broken ? 2 : failed ? 1 : 0;
}
