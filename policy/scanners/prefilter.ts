// Prefilters: what goes into the RE2.Set instead of each full pattern.
//
// Why. RE2.Set runs ONE unanchored DFA for all its patterns; the DFA's states are sets of positions in
// all patterns at once. Patterns with wide repetitions (`[A-Za-z0-9_-]{80,120}`, `(?:\S+\s+){0,4}`,
// `.{0,60}`) keep many positions alive over ordinary text, so together they multiply into more states than
// the DFA cache holds, and RE2 thrashes (measured: 48 pack rules in one set, 256 KiB of prose: ~1 s;
// the same rules cut as below: ~1 ms).
//
// What. A prefilter is a PREFIX of the pattern's syntax: the leading narrow elements, then at most a short
// head of the first wide element (`X{16,40}` → `X{3}`), then nothing. Any text the full pattern matches
// contains a match of its prefix, so the set never misses a rule (it only says "maybe"); the rule's own
// RE2 then finds the real matches with offsets. Alternation branches are cut one by one. A pattern whose
// prefix would be empty or match the empty string (`\b[A-Za-z0-9]{40}\b`) has no useful prefilter and runs
// on every scan ("always" rules); so does one the parser does not understand (its full pattern is used).

const QUANT = /\{(\d+)(,(\d*))?\}/y;
const NAMED_TAIL = /\?P?<[A-Za-z_][A-Za-z0-9_]*>/y;
const FLAGS_TAIL = /\?([imsU-]*)(:|\))/y;
const NAMED_GROUP = /\(\?P?<[A-Za-z_][A-Za-z0-9_]*>/y;

/** a repetition wider than this is cut */
const WIDE = 8;
/** how many repetitions of a wide element's atom stay in the prefix */
const HEAD = 3;
/**
 * the same for a run of digits (`\d{13,19}`, `(?:[ -]?\d){9,15}`): digit runs are rare in prose, so a long
 * head keeps few DFA states alive, and a short one would hit on every date and order number
 */
const DIGIT_HEAD = 12;

const DIGIT_ATOM = /^(?:\\d|\[0-9\])$/;
// an optional separator between digits: a class of spaces and punctuation, or one such character
const SEPARATOR_ATOM = /^(?:\[[ .\\/-]+\]|[ .-]|\\[./-])$/;

/** an item that only ever matches digits, optionally separated (a digit atom, or a group of them) */
function digitsOnly(it: Item): boolean {
  if (it.zeroWidth) return false;
  if (it.inner === undefined) return DIGIT_ATOM.test(it.atom);
  return it.inner.every(
    (b) =>
      b.some((x) => x.min > 0 && digitsOnly(x)) &&
      b.every((x) => digitsOnly(x) || (x.inner === undefined && x.max <= 1 && SEPARATOR_ATOM.test(x.atom))),
  );
}

/** how many repetitions of a wide item stay in its head */
function headCount(it: Item): number {
  return Math.min(it.min, digitsOnly(it) ? DIGIT_HEAD : HEAD);
}

interface Item {
  /** source of the atom without its quantifier, e.g. `a`, `[a-z]`, `(?:x|y)` */
  atom: string;
  /** source of the quantifier as written, e.g. `{2,3}?`, `+` or `` */
  quant: string;
  min: number;
  max: number;
  /** zero-width or flag setter: always narrow */
  zeroWidth: boolean;
  /** for groups: opening text (`(?:`, `(?i:`, `(`) and the inner alternation */
  open?: string;
  inner?: Item[][];
}

/** exec a sticky regex at position `at` of `s`, without slicing (patterns can be kilobytes long) */
function stickyAt(re: RegExp, s: string, at: number): RegExpExecArray | null {
  re.lastIndex = at;
  return re.exec(s);
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  alternation(): Item[][] {
    const branches = [this.sequence()];
    while (this.s[this.i] === '|') {
      this.i++;
      branches.push(this.sequence());
    }
    return branches;
  }

  sequence(): Item[] {
    const items: Item[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')')
      items.push(this.item());
    return items;
  }

  item(): Item {
    const start = this.i;
    const base = this.atom();
    const atom = this.s.slice(start, this.i);
    const qStart = this.i;
    let min = 1;
    let max = 1;
    const c = this.s[this.i];
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      min = c === '+' ? 1 : 0;
      max = c === '?' ? 1 : Infinity;
    } else if (c === '{') {
      const m = stickyAt(QUANT, this.s, this.i);
      if (m) {
        this.i += m[0].length;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      }
    }
    if (this.i > qStart && (this.s[this.i] === '?' || this.s[this.i] === '+')) this.i++;
    if (this.s[this.i] === '*' || this.s[this.i] === '+' || this.s[this.i] === '{')
      throw new Error('stacked quantifier');
    return {
      atom,
      quant: this.s.slice(qStart, this.i),
      min,
      max,
      zeroWidth: base.zeroWidth,
      open: base.open,
      inner: base.inner,
    };
  }

  atom(): Pick<Item, 'zeroWidth' | 'open' | 'inner'> {
    const c = this.s[this.i];
    if (c === '(') {
      this.i++;
      let open = '(';
      if (this.s[this.i] === '?') {
        const named = stickyAt(NAMED_TAIL, this.s, this.i);
        if (named) {
          this.i += named[0].length;
          open = '(?:';
        } else {
          const flags = stickyAt(FLAGS_TAIL, this.s, this.i);
          if (!flags) throw new Error('unsupported group');
          this.i += flags[0].length;
          if (flags[2] === ')') return { zeroWidth: true }; // (?i) flag setter
          open = `(?${flags[1]}:`;
        }
      }
      const inner = this.alternation();
      if (this.s[this.i] !== ')') throw new Error('unbalanced');
      this.i++;
      return { zeroWidth: false, open, inner };
    }
    if (c === '[') {
      let j = this.i + 1;
      if (this.s[j] === '^') j++;
      if (this.s[j] === ']') j++;
      while (j < this.s.length && this.s[j] !== ']') {
        if (this.s[j] === '\\') j += 2;
        else if (this.s[j] === '[' && this.s[j + 1] === ':') {
          const e = this.s.indexOf(':]', j + 2);
          if (e < 0) throw new Error('bad class');
          j = e + 2;
        } else j++;
      }
      if (j >= this.s.length) throw new Error('unterminated class');
      this.i = j + 1;
      return { zeroWidth: false };
    }
    if (c === '\\') {
      const e = this.s[this.i + 1];
      if (e === undefined) throw new Error('trailing backslash');
      this.i += 2;
      if (e === 'p' || e === 'P' || e === 'x') {
        if (this.s[this.i] === '{') {
          const close = this.s.indexOf('}', this.i);
          if (close < 0) throw new Error('bad escape');
          this.i = close + 1;
        } else this.i += e === 'x' ? 2 : 1;
      } else if (e === 'Q') throw new Error('\\Q not supported');
      return { zeroWidth: e === 'b' || e === 'B' || e === 'A' || e === 'z' };
    }
    if (c === '^' || c === '$') {
      this.i++;
      return { zeroWidth: true };
    }
    const cp = this.s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return { zeroWidth: false };
  }
}

// whitespace repeats die at the first non-space character: they keep few DFA positions alive
const SPACE_ATOM = /^(?:\\s|[ ]|\[ \\t\]|\[\\t \])$/;

// Both walks below recurse into groups; memoized per item so a nested pattern is walked once.
const wideMemo = new WeakMap<Item, boolean>();
const strengthMemo = new WeakMap<Item, number>();

function wide(it: Item): boolean {
  let w = wideMemo.get(it);
  if (w === undefined) {
    w =
      !it.zeroWidth &&
      ((it.max > WIDE && !SPACE_ATOM.test(it.atom)) ||
        (it.inner !== undefined && it.inner.some((b) => b.some(wide))));
    wideMemo.set(it, w);
  }
  return w;
}

/** a copy with other repetition bounds (explicit: object spread is a slow path in V8 here) */
function withBounds(it: Item, min: number, max: number): Item {
  return {
    atom: it.atom,
    quant: it.quant,
    min,
    max,
    zeroWidth: it.zeroWidth,
    open: it.open,
    inner: it.inner,
  };
}

/** literal characters an item is sure to contribute (classes and assertions count 0) */
function strength(it: Item): number {
  let v = strengthMemo.get(it);
  if (v === undefined) strengthMemo.set(it, (v = strengthOf(it)));
  return v;
}

function strengthOf(it: Item): number {
  if (it.zeroWidth || it.min === 0) return 0;
  const k = headCount(it);
  if (it.inner !== undefined)
    return k * Math.min(...it.inner.map((b) => b.reduce((n, x) => n + (wide(x) ? 0 : strength(x)), 0)));
  if (it.atom.startsWith('[') || it.atom === '.') return 0;
  if (it.atom.startsWith('\\')) return /^\\[A-Za-z]/.test(it.atom) && !/^\\x/.test(it.atom) ? 0 : k;
  return k;
}

/** the head of a wide item: a few repetitions of its atom, or the prefix of its group */
function head(it: Item): string {
  if (it.min === 0) return '';
  if (it.inner !== undefined) {
    const inner = prefixAlternation(it.inner);
    if (inner === '') return '';
    return wide(withBounds(it, 1, 1)) ? `${it.open}${inner})` : `${it.open}${inner}){${headCount(it)}}`;
  }
  return `${it.atom}{${headCount(it)}}`;
}

/** PREFIX cut of a sequence: narrow items, then the head of the first wide one */
function prefixSequence(items: Item[]): string {
  let out = '';
  for (const it of items) {
    if (!wide(it)) {
      out += it.atom + it.quant;
      continue;
    }
    out += head(it);
    break;
  }
  return out;
}

/** '' when some branch has no prefix (then the alternation as a whole has none) */
function prefixAlternation(branches: Item[][]): string {
  const parts = branches.map(prefixSequence);
  return parts.some((p) => p === '') ? '' : parts.join('|');
}

/**
 * SUBSTRING cut of a top-level branch: every run of narrow items between wide ones (plus the next wide
 * item's head) occurs inside any match, so the set may use whichever is most selective — the one with the
 * most literal characters. Flag setters in front of the chosen run are kept.
 */
interface Segment {
  text: string;
  strength: number;
}

/** every run of narrow items (plus the head of the wide item that ends it), each with its flags */
function segmentsOf(items: Item[], inherited: string): { segments: Segment[]; flags: string } {
  const segments: Segment[] = [];
  let flags = inherited;
  let run = '';
  let runStrength = 0;
  let runFlags = inherited;
  const close = (tail: string, tailStrength: number) => {
    if (run + tail !== '')
      segments.push({ text: runFlags + run + tail, strength: runStrength + tailStrength });
  };
  for (const it of items) {
    if (it.zeroWidth && it.atom.startsWith('(?')) {
      flags += it.atom; // (?i): applies to everything after it
      run += it.atom;
      continue;
    }
    if (!wide(it)) {
      run += it.atom + it.quant;
      runStrength += strength(it);
      continue;
    }
    const h = head(it);
    close(h, h === '' ? 0 : strength(withBounds(it, it.min, it.min)));
    run = '';
    runStrength = 0;
    runFlags = flags;
  }
  close('', 0);
  return { segments, flags };
}

function substringSequence(items: Item[], inherited: string): [string, string] {
  const { segments, flags } = segmentsOf(items, inherited);
  let best: Segment | null = null;
  for (const sg of segments) if (best === null || sg.strength > best.strength) best = sg;
  return [best?.text ?? '', flags];
}

/**
 * In RE2 a flag setter like `(?i)` lasts to the end of its group, across `|`: each branch's segment is
 * prefixed with every setter written before it, in this branch or an earlier one.
 */
function substringAlternation(branches: Item[][]): string {
  const parts: string[] = [];
  let flags = '';
  for (const b of branches) {
    const [seg, after] = substringSequence(b, flags);
    if (seg === '') return '';
    parts.push(seg);
    flags = after;
  }
  return parts.join('|');
}

export interface Prefilter {
  /** pattern for the set; null = run this rule on every scan */
  pattern: string | null;
}

/** The set pattern for a rule's pattern (see the header). */
export function prefilter(pattern: string): Prefilter {
  return prefilterOf(pattern, parsed(pattern));
}

/** the pattern's top-level branches; null when the parser does not understand it */
function parsed(pattern: string): Item[][] | null {
  try {
    const p = new Parser(pattern);
    const alt = p.alternation();
    return p.i === pattern.length ? alt : null;
  } catch {
    return null;
  }
}

function prefilterOf(pattern: string, alt: Item[][] | null): Prefilter {
  if (alt === null) return { pattern };
  let cut: string;
  try {
    cut = substringAlternation(alt);
    if (cut === '') return { pattern: null };
  } catch {
    return { pattern };
  }
  // a cut that matches the empty string says "maybe" for every text: no better than no filter.
  // (Decided on the syntax: compiling every cut with RE2 made policy compilation ~10× slower.)
  const c = consumes(cut);
  if (c === null) return { pattern };
  if (!c) return { pattern: null };
  return { pattern: cut };
}

/** whether every match of `pattern` is at least one character long; null = cannot tell */
function consumes(pattern: string): boolean | null {
  try {
    const p = new Parser(pattern);
    const alt = p.alternation();
    return p.i === pattern.length ? altConsumes(alt) : null;
  } catch {
    return null;
  }
}

function altConsumes(branches: Item[][]): boolean {
  return branches.every((b) =>
    b.some((it) => !it.zeroWidth && it.min > 0 && (it.inner === undefined || altConsumes(it.inner))),
  );
}

/**
 * a branch whose best segment has this many literal characters is selective enough alone; weaker ones
 * (two common words) get their other segments as further parts
 */
const STRONG_ENOUGH = 10;

/** most set entries one rule gets: all must match before the rule runs */
const MAX_PARTS = 3;

/**
 * Set entries for a rule: every one of them occurs in any match, so the rule runs only when ALL of them hit
 * (an AND the set itself cannot express). A plain sequence gives its strongest segments (up to 3, each
 * with at least one literal character); a top-level alternation gives the one alternation prefilter.
 * null = run the rule on every scan.
 */
export function prefilterParts(pattern: string): string[] | null {
  const single = prefilter(pattern).pattern;
  if (single === null) return null;
  let alt: Item[][];
  try {
    const p = new Parser(pattern);
    alt = p.alternation();
    if (p.i !== pattern.length || alt.length !== 1) return [single];
  } catch {
    return [single];
  }
  const parts = strongParts(alt[0], '');
  if (!parts.includes(single)) parts.unshift(single);
  return [...new Set(parts)].slice(0, MAX_PARTS);
}

/** the strongest segments of one sequence (at least one literal character each, all consuming), best first */
function strongParts(items: Item[], inherited: string): string[] {
  return strongOf(segmentsOf(items, inherited).segments);
}

function strongOf(segments: Segment[]): string[] {
  return segments
    .filter((sg) => sg.strength > 0)
    .sort((a, b) => b.strength - a.strength)
    .slice(0, MAX_PARTS)
    .map((sg) => sg.text)
    .filter((t) => consumes(t) === true);
}

/**
 * Set entries for a rule as clauses: the rule runs when EVERY part of SOME clause hit. Any match of the
 * rule matches one of its top-level branches, and every part of that branch's clause occurs inside it, so
 * nothing is missed. A plain sequence has one clause (prefilterParts); a top-level alternation gets one
 * clause per branch, each with that branch's strongest segments (a branch's best segment alone is often a
 * pair of common words, "with no", while the branch needs all its words). Falls back to one clause of
 * prefilterParts when a branch yields no part. null = run the rule on every scan.
 */
export function prefilterClauses(pattern: string, strongEnough = STRONG_ENOUGH): string[][] | null {
  const alt = parsed(pattern);
  if (alt === null || alt.length === 1) {
    const parts = prefilterParts(pattern);
    return parts === null ? null : [parts];
  }
  // an alternation's prefilterParts is its one alternation prefilter: the fallback clause
  const single = prefilterOf(pattern, alt).pattern;
  if (single === null) return null;
  const clauses: string[][] = [];
  let flags = '';
  for (const b of alt) {
    const { segments, flags: after } = segmentsOf(b, flags);
    let best: Segment | null = null;
    for (const sg of segments) if (best === null || sg.strength > best.strength) best = sg;
    if (best === null || consumes(best.text) !== true) return [[single]];
    if (best.strength >= strongEnough) clauses.push([best.text]);
    else {
      const strong = strongOf(segments);
      if (!strong.includes(best.text)) strong.unshift(best.text);
      clauses.push([...new Set(strong)].slice(0, MAX_PARTS));
    }
    flags = after;
  }
  return clauses;
}

/**
 * The pattern with every capturing group made non-capturing. Offsets need only the match bounds, which
 * RE2 finds with its DFAs; asking for submatches makes it run a slower engine over the whole match.
 * Rules with a validator keep their groups (the validator reads group 1).
 */
export function withoutCaptures(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      out += pattern.slice(i, i + 2);
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      // a ] right after [ or [^ is a literal
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') out += pattern[++i];
      continue;
    }
    if (c === '(') {
      if (pattern[i + 1] !== '?') {
        out += '(?:';
        continue;
      }
      const named = stickyAt(NAMED_GROUP, pattern, i);
      if (named) {
        out += '(?:';
        i += named[0].length - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}
