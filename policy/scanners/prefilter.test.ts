import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import RE2 from 're2';
import { parse } from 'yaml';
import { prefilter, prefilterClauses, prefilterParts, withoutCaptures } from './prefilter.js';
import { normalize } from '../normalize.js';

const PACKS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'packs');

describe('prefilter', () => {
  const cases: [string, string | null][] = [
    ['AKIA[0-9A-Z]{16}', 'AKIA[0-9A-Z]{3}'],
    // whitespace repeats are narrow: this pattern goes into the set whole
    [
      String.raw`(?i)\bignore\s+(?:all\s+)?previous\s+instructions`,
      String.raw`(?i)\bignore\s+(?:all\s+)?previous\s+instructions`,
    ],
    // the run with the most literal characters wins
    [String.raw`(?i)[^\n]{0,40}\bzq[^\n]{0,40}instructions`, '(?i)instructions'],
    [String.raw`\b\d{1,3}\.\d{1,3}`, String.raw`\b\d{1,3}\.\d{1,3}`],
    [String.raw`\b[\w.-]*(?:cohere|co_api)\s*=`, String.raw`(?:cohere|co_api)\s*=`],
    [String.raw`\b[A-Za-z0-9]{40}\b`, String.raw`\b[A-Za-z0-9]{3}`],
    [String.raw`x*`, null],
    ['abc|d+', 'abc|d{1}'],
    ['abc|.*', null],
    [String.raw`(?P<k>key)=(\w{20,})`, String.raw`(?P<k>key)=(\w{3})`],
  ];
  for (const [pattern, want] of cases) {
    it(`${pattern} → ${want}`, () => {
      expect(prefilter(pattern).pattern).toBe(want);
    });
  }

  it('keeps flag setters that reach a chosen segment, across alternation branches', () => {
    const f = prefilter(String.raw`ab.{0,50}(?i)cdefgh.{0,50}|xyz`).pattern!;
    expect(f).toBe('(?i)cdefgh|(?i)xyz');
    expect(new RE2(f, 'u').test('XYZ')).toBe(true);
    expect(prefilter(String.raw`zz.{0,50}q(?i)|XYZ`).pattern).toBe('zz|(?i)XYZ');
  });

  it('never misses on generated patterns and texts', () => {
    const atom = fc.constantFrom(
      'ab',
      'X',
      String.raw`\s+`,
      '.{0,12}',
      '[a-z]{9,12}',
      '(?i)',
      '(?-i)',
      String.raw`\b`,
      'y*',
      'z+',
      '(?:x|yz)',
      '(?:ab){2,9}',
      '[^ ]{0,20}',
      '(?i:q)',
    );
    const seq = fc.array(atom, { minLength: 1, maxLength: 6 }).map((a) => a.join(''));
    const pattern = fc.array(seq, { minLength: 1, maxLength: 3 }).map((b) => b.join('|'));
    const text = fc.string({
      unit: fc.constantFrom('a', 'b', 'x', 'y', 'z', 'q', 'X', 'Y', 'Q', 'A', 'B', ' ', '.'),
      maxLength: 60,
    });
    fc.assert(
      fc.property(pattern, fc.array(text, { minLength: 1, maxLength: 5 }), (p, texts) => {
        const full = new RE2(p, 'u');
        const parts = prefilterParts(p);
        if (parts === null) return;
        expect(parts).toContain(prefilter(p).pattern);
        for (const f of parts) {
          const pre = new RE2(f, 'u');
          for (const t of texts)
            if (full.test(t)) expect(pre.test(t), `${p} ⊄ ${f} on ${JSON.stringify(t)}`).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('gives a plain sequence several parts that must all hit', () => {
    expect(prefilterParts(String.raw`(?i)\bsecret[^\n]{0,80}\bpassword[^\n]{0,80}token`)).toEqual([
      String.raw`(?i)\bpassword`,
      String.raw`(?i)\bsecret`,
      '(?i)token',
    ]);
    expect(prefilterParts('abc|d+')).toEqual(['abc|d{1}']);
    expect(prefilterParts('x*')).toBeNull();
  });

  it('never misses with clauses: a text the pattern matches satisfies every part of some clause', () => {
    const atom = fc.constantFrom(
      'ab',
      'with',
      'no',
      'X',
      String.raw`\s+`,
      '.{0,12}',
      '[a-z]{9,12}',
      '(?i)',
      '(?-i)',
      String.raw`\b`,
      'y*',
      '(?:x|yz)',
      '(?:ab){2,9}',
      '[^ ]{0,20}',
      '(?i:q)',
      String.raw`\d{10,14}`,
      String.raw`(?:[ -]?\d){9,12}`,
      String.raw`[0-9]{2}`,
    );
    const seq = fc.array(atom, { minLength: 1, maxLength: 7 }).map((a) => a.join(''));
    const pattern = fc.array(seq, { minLength: 1, maxLength: 4 }).map((b) => b.join('|'));
    const text = fc.string({
      unit: fc.constantFrom(
        'a',
        'x',
        'y',
        'q',
        'X',
        'Q',
        'A',
        'with',
        'no',
        'WITH',
        ' ',
        '.',
        '-',
        '1',
        '2',
        '345',
      ),
      maxLength: 60,
    });
    fc.assert(
      fc.property(pattern, fc.array(text, { minLength: 1, maxLength: 5 }), (p, texts) => {
        const full = new RE2(p, 'u');
        const clauses = prefilterClauses(p, 100); // every weak branch gets its parts: the widest test
        if (clauses === null) return;
        const compiled = clauses.map((c) => c.map((f) => new RE2(f, 'u')));
        for (const t of texts) {
          if (!full.test(t)) continue;
          const ok = compiled.some((c) => c.every((re) => re.test(t)));
          expect(ok, `${p} → ${JSON.stringify(clauses)} on ${JSON.stringify(t)}`).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('gives each weak branch of a top-level alternation its own clause of parts', () => {
    const p = String.raw`(?i)\bunfiltered\s+(?:\S+\s+){0,3}ai\b|with\s+no\s+(?:\S+\s+){0,2}rules`;
    expect(prefilterClauses(p)).toEqual([
      [String.raw`(?i)\bunfiltered\s+`],
      [String.raw`(?i)with\s+no\s+`, '(?i)rules'],
    ]);
    // a plain sequence keeps its one clause of parts; no prefilter → null
    expect(prefilterClauses('abc.{0,40}defgh')).toEqual([prefilterParts('abc.{0,40}defgh')]);
    expect(prefilterClauses('x*|abc')).toBeNull();
  });

  it('keeps a long head of a digit run, so dates and order numbers do not run a card rule', () => {
    const card = String.raw`\b[2-6]\d{3}(?:[ -]?\d){9,15}\b`;
    expect(prefilter(card).pattern).toBe(String.raw`\b[2-6]\d{3}(?:[ -]?\d){9}`);
    const pre = new RE2(prefilter(card).pattern!, 'u');
    expect(pre.test('Order #12345 shipped on 2024-05-01.')).toBe(false);
    expect(pre.test('charge 5500-0000-0000-0004 please')).toBe(true);
    // other wide runs keep the short head
    expect(prefilter(String.raw`\bsk-[A-Za-z0-9]{20,}`).pattern).toBe(String.raw`\bsk-[A-Za-z0-9]{3}`);
  });

  it('falls back to the full pattern when it cannot parse it', () => {
    expect(prefilter(String.raw`\Qa+b\E{20}`).pattern).toBe(String.raw`\Qa+b\E{20}`);
  });

  // The property the engine relies on: whenever a rule matches, its prefilter matches too.
  it("never misses: on every pack test input, each matching rule's prefilter matches", () => {
    let checked = 0;
    for (const file of readdirSync(PACKS).filter((f) => f.endsWith('.yaml'))) {
      const pack = parse(readFileSync(path.join(PACKS, file), 'utf8')) as {
        rules: { id: string; pattern: string }[];
        tests?: { input?: string; output?: string }[];
      };
      const texts = (pack.tests ?? []).flatMap((t) => [t.input, t.output]).filter((t): t is string => !!t);
      for (const r of pack.rules) {
        const full = new RE2(r.pattern, 'u');
        const pres = (prefilterParts(r.pattern) ?? []).map((f) => new RE2(f, 'u'));
        const clauses = (prefilterClauses(r.pattern) ?? []).map((c) => c.map((f) => new RE2(f, 'u')));
        for (const t of texts) {
          const n = normalize(t).text;
          if (!full.test(n)) continue;
          checked++;
          for (const pre of pres) expect(pre.test(n), `${r.id} on a pack test`).toBe(true);
          if (clauses.length > 0)
            expect(
              clauses.some((c) => c.every((pre) => pre.test(n))),
              `${r.id}'s clauses on a pack test`,
            ).toBe(true);
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});

describe('withoutCaptures', () => {
  it('turns capturing groups into non-capturing ones, leaving classes, escapes and flags alone', () => {
    expect(withoutCaptures(String.raw`(a+)+$`)).toBe(String.raw`(?:a+)+$`);
    expect(withoutCaptures(String.raw`(?P<k>x)(?<v>y)(?i:z)(?i)\(\)[()](w)`)).toBe(
      String.raw`(?:x)(?:y)(?i:z)(?i)\(\)[()](?:w)`,
    );
    expect(withoutCaptures(String.raw`[](]\[(a)`)).toBe(String.raw`[](]\[(?:a)`);
    for (const p of [String.raw`(a|b(c))\d{2}`, String.raw`[^)(]+(x)`]) {
      const a = new RE2(p, 'u');
      const b = new RE2(withoutCaptures(p), 'u');
      for (const t of ['abc12', 'ac', 'zz)x', '((x']) expect(b.exec(t)?.[0]).toBe(a.exec(t)?.[0]);
    }
  });
});
