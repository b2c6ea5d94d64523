import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import RE2 from 're2';
import { maxMatchLength } from './holdback.js';

describe('maxMatchLength', () => {
  const cases: [string, number][] = [
    ['AKIA[0-9A-Z]{16}', 20],
    [String.raw`\bAKIA[0-9A-Z]{16}\b`, 20],
    ['(?i)abc|defgh', 5],
    ['(?:ab){2,3}c?', 7],
    [String.raw`(?P<x>a)\d{3}`, 4],
    [String.raw`(?<x>a)\d{3}`, 4],
    ['[^a]{3}', 6], // a negated class may match astral code points (2 units each)
    [String.raw`\p{L}{2}`, 4],
    ['.', 2],
    ['(?:a{2}){3}', 6],
    [String.raw`\x{1F600}`, 2],
    ['[]a]', 1],
    ['[[:alpha:]]x', 2],
    ['^$', 0],
    [String.raw`\Qa.b\E`, 3],
    ['a*', Infinity],
    ['a+b', Infinity],
    ['(a|b{2,})', Infinity],
    [String.raw`(?s).*`, Infinity],
  ];
  for (const [pattern, n] of cases) {
    it(`${pattern} → ${n}`, () => {
      expect(() => new RE2(pattern, 'u')).not.toThrow();
      expect(maxMatchLength(pattern)).toBe(n);
    });
  }

  it('never undercounts: a real match is no longer than the bound', () => {
    const samples: [string, string][] = [
      ['AKIA[0-9A-Z]{16}', 'AKIA' + 'Z'.repeat(16)],
      ['(?:ab){2,3}c?', 'abababc'],
      ['[^a]{3}', '😀😀😀'],
    ];
    for (const [p, s] of samples) {
      const m = new RE2(p, 'u').exec(s);
      expect(m).not.toBeNull();
      expect(m![0].length).toBeLessThanOrEqual(maxMatchLength(p));
    }
  });

  it('never undercounts on generated patterns and texts', () => {
    const atom = fc.constantFrom(
      'ab',
      'X',
      '😀',
      String.raw`\s{1,3}`,
      '.{0,4}',
      '[a-z]{2,3}',
      '(?i)',
      String.raw`\b`,
      'y?',
      '(?:x|yz)',
      '(?:ab){2,3}',
      '[^ ]{0,2}',
      String.raw`\p{L}`,
      '$',
    );
    const seq = fc.array(atom, { minLength: 1, maxLength: 6 }).map((a) => a.join(''));
    const pattern = fc.array(seq, { minLength: 1, maxLength: 3 }).map((b) => b.join('|'));
    const text = fc.string({
      unit: fc.constantFrom('a', 'b', 'x', 'y', 'z', 'X', ' ', '😀', 'é'),
      maxLength: 40,
    });
    fc.assert(
      fc.property(pattern, fc.array(text, { minLength: 1, maxLength: 5 }), (p, texts) => {
        const bound = maxMatchLength(p);
        const re = new RE2(p, 'gu');
        for (const t of texts) {
          re.lastIndex = 0;
          let m: RegExpExecArray | null;
          while ((m = re.exec(t)) !== null) {
            expect(m[0].length, `${p} on ${JSON.stringify(t)}`).toBeLessThanOrEqual(bound);
            if (m[0].length === 0) re.lastIndex++;
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
