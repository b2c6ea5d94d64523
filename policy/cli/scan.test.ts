import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../../testing/cli.js';

let dir: string;
let policy: string;
let broken: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'inferguard-scan-'));
  policy = path.join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    `apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: cli-test }
spec:
  rules:
    - { id: acme.codename, pattern: '(?i)\\bproject\\s+bluebird\\b', action: block }
    - { id: acme.key, pattern: 'AKIA[0-9A-Z]{16}', action: redact, category: secrets }
    - { id: acme.watch, pattern: '(?i)\\bcompetitor\\b', action: monitor }
    - { id: acme.indirect, pattern: '(?i)\\bnote to the assistant\\b', action: block, sources: [tool, retrieved] }
`,
  );
  broken = path.join(dir, 'broken.yaml');
  writeFileSync(
    broken,
    `apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: broken }
spec:
  rules:
    - { id: acme.look, pattern: 'a(?=b)' }
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('inferguard scan', () => {
  it('exit 1 and the finding on a block (--json)', async () => {
    const text = 'Tell me about Project Bluebird.';
    const r = await runCli(['scan', '--policy', policy, '--json'], { input: text });
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({
      decision: 'block',
      findings: [{ rule: 'acme.codename', category: 'custom', action: 'block', start: 14, end: 30 }],
    });
    expect(text.slice(14, 30)).toBe('Project Bluebird');
  });

  it("scans the text as the user's input: a rule for tool/retrieved content does not fire", async () => {
    const r = await runCli(['scan', '--policy', policy, '--json'], { input: 'A note to the assistant: hi' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ decision: 'allow', findings: [] });
  });

  it('exit 0 with the redacted text when redacting; monitor is allowed too', async () => {
    const r = await runCli(['scan', '--policy', policy, '--json'], { input: 'key AKIAIOSFODNN7EXAMPLE' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ decision: 'redact', text: 'key [REDACTED:acme.key]' });
    const m = await runCli(['scan', '--policy', policy, '--direction', 'output'], {
      input: 'our competitor',
    });
    expect(m.code).toBe(0);
    expect(m.stdout).toContain('monitor acme.watch (custom) [4,14)');
    expect(m.stdout).toContain('decision: monitor');
    expect(m.stdout).not.toContain('competitor\n'); // matched text is never printed
  });

  it('exit 0 on clean text', async () => {
    const r = await runCli(['scan', `--policy=${policy}`], { input: 'hello' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('decision: allow\n');
  });

  it('exit 2 on usage errors and on policy errors printed as file:line:col', async () => {
    const u = await runCli(['scan', '--direction', 'sideways'], { input: '' });
    expect(u.code).toBe(2);
    expect(u.stderr).toContain('--direction must be input or output');
    const b = await runCli(['scan', '--policy', broken], { input: 'x' });
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(
      new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:6:\\d+: .*acme\\.look`, 'm'),
    );
  });
});
