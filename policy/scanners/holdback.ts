// Longest possible match of an RE2 pattern, in UTF-16 code units, or Infinity when unbounded.
//
// The streaming matcher holds back this many normalized characters: a match that starts before the
// held-back tail is then entirely inside text already seen, so it is certain. Unbounded patterns
// (`*`, `+`, `{n,}`) are capped by the caller at `limits.maxHoldback` (docs/policy.md explains the cap).
//
// A small recursive-descent walk over RE2 syntax: literals, escapes, classes, groups (incl. inline
// flags and named groups), alternation and quantifiers. Anything it does not understand yields
// Infinity, which is always safe (the cap applies).

const QUANT = /\{(\d+)(,(\d*))?\}/y;
const FLAGS = /[imsU-]*/y;
const OCTAL = /[0-7]{0,2}/y;

/** width of one atom: 1 for what can only match a BMP unit, 2 for what may match an astral code point */
const ASTRAL = 2;

export function maxMatchLength(pattern: string): number {
  try {
    const p = new Parser(pattern);
    const n = p.alternation();
    if (p.i !== pattern.length) return Infinity;
    return n;
  } catch {
    return Infinity;
  }
}

/** exec a sticky regex at position `at` of `s`, without slicing (patterns can be kilobytes long) */
function stickyAt(re: RegExp, s: string, at: number): RegExpExecArray | null {
  re.lastIndex = at;
  return re.exec(s);
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  alternation(): number {
    let best = this.sequence();
    while (this.s[this.i] === '|') {
      this.i++;
      best = Math.max(best, this.sequence());
    }
    return best;
  }

  sequence(): number {
    let total = 0;
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      const atom = this.atom();
      total += this.quantified(atom);
    }
    return total;
  }

  quantified(atom: number): number {
    let n = atom;
    for (;;) {
      const c = this.s[this.i];
      if (c === '*' || c === '+') {
        this.i++;
        n = atom === 0 ? 0 : Infinity;
      } else if (c === '?') {
        this.i++;
      } else if (c === '{') {
        const m = stickyAt(QUANT, this.s, this.i);
        if (!m) return n; // a literal `{` (RE2 accepts it)
        this.i += m[0].length;
        const max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
        n = atom === 0 ? 0 : atom * max;
      } else {
        return n;
      }
      // lazy / possessive suffix
      if (this.s[this.i] === '?') this.i++;
    }
  }

  atom(): number {
    const c = this.s[this.i];
    if (c === '(') return this.group();
    if (c === '[') return this.klass();
    if (c === '\\') return this.escape();
    if (c === '^' || c === '$') {
      this.i++;
      return 0;
    }
    if (c === '.') {
      this.i++;
      return ASTRAL;
    }
    const cp = this.s.codePointAt(this.i)!;
    const w = cp > 0xffff ? 2 : 1;
    this.i += w;
    return w;
  }

  group(): number {
    this.i++; // (
    if (this.s[this.i] === '?') {
      this.i++;
      if (this.s[this.i] === 'P' && this.s[this.i + 1] === '<') {
        this.i = this.s.indexOf('>', this.i) + 1;
        if (this.i === 0) throw new Error('bad group');
      } else if (this.s[this.i] === '<') {
        this.i = this.s.indexOf('>', this.i) + 1;
        if (this.i === 0) throw new Error('bad group');
      } else {
        // flags: (?i) or (?i:...) or (?:...)
        const m = stickyAt(FLAGS, this.s, this.i)!;
        this.i += m[0].length;
        if (this.s[this.i] === ')') {
          this.i++;
          return 0; // flag setter, matches nothing
        }
        if (this.s[this.i] !== ':') throw new Error('unsupported group');
        this.i++;
      }
    }
    const n = this.alternation();
    if (this.s[this.i] !== ')') throw new Error('unbalanced');
    this.i++;
    return n;
  }

  klass(): number {
    // find the closing ]: a ] right after [ or [^ is literal; [:alpha:] and escapes are skipped
    let j = this.i + 1;
    if (this.s[j] === '^') j++;
    if (this.s[j] === ']') j++;
    let astral = this.s[this.i + 1] === '^';
    while (j < this.s.length && this.s[j] !== ']') {
      if (this.s[j] === '\\') {
        const e = this.s[j + 1];
        if (e === 'p' || e === 'P' || e === 'x') astral = true;
        j += 2;
        if (this.s[j - 1] === 'p' || this.s[j - 1] === 'P' || this.s[j - 1] === 'x') {
          if (this.s[j] === '{') j = this.s.indexOf('}', j) + 1;
          else if (this.s[j - 1] !== 'x') j++;
        }
        continue;
      }
      if (this.s[j] === '[' && this.s[j + 1] === ':') {
        j = this.s.indexOf(':]', j + 2) + 2;
        if (j === 1) throw new Error('bad class');
        continue;
      }
      if (this.s.codePointAt(j)! > 0xffff) astral = true;
      j++;
    }
    if (j >= this.s.length) throw new Error('unterminated class');
    this.i = j + 1;
    return astral ? ASTRAL : 1;
  }

  escape(): number {
    const e = this.s[this.i + 1];
    if (e === undefined) throw new Error('trailing backslash');
    this.i += 2;
    switch (e) {
      case 'b':
      case 'B':
      case 'A':
      case 'z':
        return 0;
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 's':
      case 'S':
        return e === e.toLowerCase() ? 1 : ASTRAL;
      case 'p':
      case 'P':
        if (this.s[this.i] === '{') {
          this.i = this.s.indexOf('}', this.i) + 1;
          if (this.i === 0) throw new Error('bad \\p');
        } else this.i++;
        return ASTRAL;
      case 'x':
        if (this.s[this.i] === '{') {
          const close = this.s.indexOf('}', this.i);
          if (close < 0) throw new Error('bad \\x');
          const cp = parseInt(this.s.slice(this.i + 1, close), 16);
          this.i = close + 1;
          return cp > 0xffff ? 2 : 1;
        }
        this.i += 2;
        return 1;
      case 'Q': {
        const close = this.s.indexOf('\\E', this.i);
        const lit = close < 0 ? this.s.slice(this.i) : this.s.slice(this.i, close);
        this.i = close < 0 ? this.s.length : close + 2;
        return lit.length;
      }
      case 'C':
        return ASTRAL;
      default:
        if (e >= '0' && e <= '7') {
          // octal \123
          const m = stickyAt(OCTAL, this.s, this.i)!;
          this.i += m[0].length;
        }
        return 1;
    }
  }
}
