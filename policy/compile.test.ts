import { describe, expect, it } from 'vitest';
import { compilePolicy, withMode } from './compile.js';
import { resolved } from './scanners/test-policy.js';
import { scanText } from './scan.js';

describe('compilePolicy', () => {
  it('puts the rules of each direction into RE2 sets and execs only the rules that hit', () => {
    const rules = Array.from({ length: 1000 }, (_, i) => ({
      id: `r${i}`,
      pattern: String.raw`(?i)\bcodeword${i}x\b`,
      directions: [i % 2 ? 'output' : 'input'] as ('input' | 'output')[],
    }));
    const p = compilePolicy(resolved({ rules }));
    expect(p.ruleCount).toBe(1000);
    expect(p.engine.input.rules).toHaveLength(500);
    expect(p.engine.output.rules).toHaveLength(500);
    const inSets = p.engine.input.sets.reduce((n, s) => n + s.ruleIndex.filter((i) => i >= 0).length, 0);
    expect(inSets).toBe(500);
    const r = scanText(p, 'say CODEWORD998X and codeword3x and codeword4x', 'input');
    expect(r.findings.map((f) => f.rule)).toEqual(['r998', 'r4']);
    expect(scanText(p, 'codeword3x', 'output').findings.map((f) => f.rule)).toEqual(['r3']);
  });

  it('computes the streaming hold-back per direction, capped at limits.maxHoldback', () => {
    const p = compilePolicy(
      resolved({
        rules: [
          { id: 'key', pattern: 'AKIA[0-9A-Z]{16}', directions: ['output'] },
          { id: 'open', pattern: 'begin.*end', directions: ['input'] },
        ],
        limits: { maxHoldback: 100 } as never,
      }),
    );
    expect(p.engine.output.holdback).toBe(20);
    expect(p.engine.input.holdback).toBe(100);
    const leak = compilePolicy(
      resolved({
        output: { urls: { allowDomains: [], blockMarkdownImages: false }, systemPromptLeakMinChars: 60 },
      }),
    );
    expect(leak.engine.output.holdback).toBe(60);
  });

  it('keeps the loader hash, or computes a stable one that ignores positions', () => {
    expect(compilePolicy({ ...resolved(), hash: 'abc' }).hash).toBe('abc');
    const a = resolved({ rules: [{ id: 'x', pattern: 'x' }] });
    const b = resolved({ rules: [{ id: 'x', pattern: 'x' }] });
    b.rules[0].origin = { file: 'other.yaml', line: 9, col: 3 };
    expect(compilePolicy(a).hash).toMatch(/^[0-9a-f]{64}$/);
    expect(compilePolicy(a).hash).toBe(compilePolicy(b).hash);
    expect(compilePolicy(resolved({ rules: [{ id: 'x', pattern: 'y' }] })).hash).not.toBe(
      compilePolicy(a).hash,
    );
  });

  it('is immutable; withMode returns a copy sharing the compiled engine', () => {
    const p = compilePolicy(resolved({ rules: [{ id: 'x', pattern: 'x' }] }));
    expect(Object.isFrozen(p)).toBe(true);
    const m = withMode(p, 'monitor');
    expect(m.mode).toBe('monitor');
    expect(p.mode).toBe('enforce');
    expect(m.engine).toBe(p.engine);
    expect(withMode(p, 'enforce')).toBe(p);
  });

  it('throws on a pattern RE2 cannot compile (the loader reports it first, with its position)', () => {
    expect(() => compilePolicy(resolved({ rules: [{ id: 'bad', pattern: '(?<=a)b' }] }))).toThrow(
      /invalid perl operator/,
    );
  });
});
