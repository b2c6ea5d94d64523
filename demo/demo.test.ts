// Runs `npm run demo` for real (fake vLLM + fake Triton, the sidecar as a child process, an OTLP
// receiver) and checks what a person running it would read: every verdict and rule in the table, the
// secrets never reaching the client, the block spans in the tree, exit code 0. Keeps the demo from
// rotting as the sidecar and engine change.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../testing/cli.js';

const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

function runDemo(): Promise<{ code: number | null; out: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'demo', 'run.ts')], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, ms: Date.now() - started }));
  });
}

/** the table row for a request, cut into columns where the header's column titles start */
function row(out: string, name: string): string[] {
  const lines = out.split('\n');
  const header = lines.find((l) => /^\s+request\s+protocol\s+verdict\s+status\s+rule\s+latency/.test(l));
  if (!header) throw new Error(`no verdict table in:\n${out}`);
  const starts = [
    0,
    ...['request', 'protocol', 'verdict', 'status', 'rule', 'latency'].map((t) => header.indexOf(t)),
  ];
  const line = lines.find((l) => l.slice(starts[1]).startsWith(name + '  '));
  if (!line) throw new Error(`no row for "${name}" in:\n${out}`);
  return starts.map((at, i) => line.slice(at, starts[i + 1]).trim());
}

describe('npm run demo', () => {
  it(
    'shows every verdict the policy should produce, the block spans, and exits 0',
    { timeout: 120_000 },
    async () => {
      const { code, out } = await runDemo();
      expect(code, out).toBe(0);

      const expected: [string, string, string, string?][] = [
        ['benign chat', 'HTTP', 'allowed'],
        ['benign chat, streamed', 'HTTP', 'allowed'],
        ['prompt injection', 'HTTP', 'blocked', 'prompt-injection.'],
        ['injection hidden by zero-width chars', 'HTTP', 'blocked', 'prompt-injection.'],
        ['answer leaks an AWS key', 'HTTP', 'blocked', 'secrets.aws-access-key'],
        ['streamed token split over chunks', 'HTTP', 'blocked mid-stream', 'secrets.'],
        ['answer with PII', 'HTTP', 'redacted', 'pii.'],
        ['model calls a forbidden tool', 'HTTP', 'blocked', 'tools.'],
        ['model calls an allowed tool', 'HTTP', 'allowed'],
        ['benign ModelInfer', 'gRPC', 'allowed'],
        ['prompt injection via ModelInfer', 'gRPC', 'blocked', 'prompt-injection.'],
        ['ModelStreamInfer streams a token', 'gRPC', 'blocked mid-stream', 'secrets.'],
        ['ModelInfer answer leaks an AWS key', 'gRPC', 'blocked', 'secrets.aws-access-key'],
      ];
      for (const [name, protocol, verdict, rule] of expected) {
        const [mark, , proto, v, status, ruleCol, latency] = row(out, name);
        if (!rule) expect(ruleCol, name).toBe('');
        expect(mark, name).toBe('✓');
        expect(proto, name).toBe(protocol);
        expect(v, name).toBe(verdict);
        if (verdict.startsWith('blocked') && protocol === 'gRPC')
          expect(status, name).toMatch(/^PERMISSION_DENIED/);
        if (verdict === 'blocked')
          expect(status, name).toMatch(protocol === 'HTTP' ? /^403$/ : /^PERMISSION_DENIED$/);
        if (rule) expect(ruleCol, name).toContain(rule);
        expect(latency, name).toMatch(/^(\+|answered in )-?\d+\.\d\d ms/);
      }
      for (const name of [
        'answer leaks an AWS key',
        'streamed token split over chunks',
        'ModelStreamInfer streams a token',
        'ModelInfer answer leaks an AWS key',
      ]) {
        expect(out).toContain(`✓ ${name}: the client never received the secret`);
      }
      // the spans: one trace per request we traced, block spans with rule attributes, pod identity
      expect(out).toMatch(/on every span: service\.name="inferguard-sidecar"/);
      expect(out).toContain('k8s.pod.name="demo-model-0"');
      expect(out).toMatch(/trace [0-9a-f]{32} {2}HTTP · prompt injection\n/);
      expect(out).toContain('inferguard.rule.id="prompt-injection.');
      expect(out).toContain('inferguard.direction="output"');
      expect(out).toContain('rpc.method="inference.GRPCInferenceService/ModelInfer"');
      expect(out).toContain('rpc.method="inference.GRPCInferenceService/ModelStreamInfer"');
      expect(out.match(/ ERROR /g)?.length ?? 0).toBeGreaterThanOrEqual(9);
      expect(out).toContain('all verdicts as expected');
      // nothing the model "leaked" is printed by the demo either
      expect(out).not.toContain(['AKIA', 'ZQ3DMF7Y', 'XW2JH5TN'].join(''));
      expect(out).not.toContain('R7xV2qLmN9kT4wYc8sBf3hJd6pZa1EoGu5Ki');
    },
  );
});
