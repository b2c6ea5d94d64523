import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { runCli } from './testing/cli.js';

describe('inferguard CLI dispatch', () => {
  it('prints the command list and exits 2 without a command', async () => {
    const r = await runCli([]);
    expect(r.code).toBe(2);
    for (const cmd of ['sidecar', 'scan', 'policy', 'eval', 'injector', 'inject', 'init-redirect']) {
      expect(r.stdout).toContain(cmd);
    }
  });

  it('rejects an unknown command with exit 2 and names it', async () => {
    const r = await runCli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });

  it('prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`inferguard ${pkg.version}`);
  });
});
