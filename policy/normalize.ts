// Normalization: every scanner sees text the way a model reads it, not the way an attacker spelled it.
//
// Pipeline per code point (one pass, offsets kept):
//   1. Unicode tag characters (U+E0000–U+E007F) are removed; the ones that spell ASCII (U+E0020–U+E007E)
//      are collected as hidden text, which the scanner scans as decoded content.
//   2. Invisible characters are removed: zero-width (U+200B–U+200F, U+2060–U+2064, U+FEFF), bidi controls
//      (U+202A–U+202E, U+2066–U+2069, U+061C), soft hyphen, combining grapheme joiner, variation selectors,
//      combining marks (a base letter keeps its identity: `é` → `e`), and C0/C1 controls other than whitespace.
//   3. NFKC (fullwidth, mathematical alphanumerics, ligatures → plain letters), then confusable folding
//      (lookalikes → Latin, from the `confusables` package's Unicode-derived table): always for symbols
//      and Latin-script letters (ß excepted); for Cyrillic/Greek/Armenian/Cherokee/Coptic letters only
//      inside a word that mixes them with Latin, or a word of near-perfect lookalikes next to a Latin
//      word (a pass over the words at the end). Russian, Greek, Japanese words keep their real letters.
//   4. Whitespace runs (any Unicode whitespace, newlines included) collapse to one ASCII space.
// Case is preserved: rules say `(?i)` when they mean it.
//
// Every normalized UTF-16 unit remembers the [start, end) of the original code units it came from, so a
// finding in normalized text maps back to the original (`toOriginal`).
//
// Fast path: the text is encoded to UTF-8 once (the pattern scanners need those bytes anyway) and a
// byte scanner skips runs of printable ASCII with single spaces four bytes at a time; only the
// characters it stops at go through the per-character pipeline. Text it never stops in — most prompts —
// is returned as is, with no offset map, and its bytes go straight to RE2. When the only changes are
// one-to-one (newlines and tabs → space, `é` → `e`), the map is the identity (null) too; when they are
// only ASCII control whitespace, the bytes are patched in place and reused. Otherwise the normalized text
// is written as UTF-8 into a second buffer as it is built, for RE2, and its string is joined only when
// something reads it (decoding, the leak scanner, the streaming matcher). `normalizeEachChar` is the
// same pipeline without the scanner, the reference the fast path is property-tested against.
import { confusablesMap } from 'confusables';
import RE2 from 're2';

export interface NormalizedText {
  /** the normalized text that rules run on */
  readonly text: string;
  /** normalized → original offsets; null = identity (text unchanged) */
  readonly map: OffsetMap | null;
  /** length of the original text */
  readonly originalLength: number;
  /** length of `text` (known without building it: the fast path builds `text` on first read) */
  readonly textLength: number;
  /** ASCII spelled with Unicode tag characters, with its span in the original text */
  readonly hidden: readonly HiddenText[];
}

/**
 * Piecewise map from normalized to original offsets: one segment per unchanged run (offsets shift by a
 * constant) and one per changed code point (all its output units map to its whole original span). Size
 * grows with the number of changes, not the text length.
 */
export interface OffsetMap {
  readonly count: number;
  /** normalized start of each segment (ascending) */
  readonly norm: Int32Array;
  /** original start and end of each segment */
  readonly orig: Int32Array;
  readonly origEnd: Int32Array;
  /** 1 = unchanged run (one-to-one), 0 = changed code point (many-to-span) */
  readonly same: Uint8Array;
}

export interface HiddenText {
  start: number;
  end: number;
  text: string;
}

function segmentOf(m: OffsetMap, pos: number): number {
  let lo = 0;
  let hi = m.count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (m.norm[mid] <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function startOf(m: OffsetMap, pos: number): number {
  const k = segmentOf(m, pos);
  return m.same[k] === 1 ? m.orig[k] + (pos - m.norm[k]) : m.orig[k];
}

function endOf(m: OffsetMap, pos: number): number {
  const k = segmentOf(m, pos);
  return m.same[k] === 1 ? m.orig[k] + (pos - m.norm[k]) + 1 : m.origEnd[k];
}

/** Map a normalized span [start, end) back to the original text's [start, end). */
export function toOriginal(n: NormalizedText, start: number, end: number): [number, number] {
  const m = n.map;
  if (m === null) return [start, end];
  const len = n.textLength;
  if (len === 0) return [0, 0];
  const s = start < len ? startOf(m, start) : n.originalLength;
  const e = end > start ? endOf(m, Math.min(end, len) - 1) : s;
  return [s, e];
}

/** Original offset where normalized position `pos` begins (pos may equal the normalized length). */
export function originalAt(n: NormalizedText, pos: number): number {
  if (n.map === null) return pos;
  return pos < n.textLength ? startOf(n.map, pos) : n.originalLength;
}

// Folding of one code point: NFKC then confusables. Cached (bounded: at most FOLD_CACHE_MAX distinct
// code points, so an attacker cycling through Unicode cannot grow memory).
const FOLD_CACHE_MAX = 65_536;
const foldCache = new Map<number, string>();

// A few entries of the upstream table that fold to a letter of the wrong shape for prompt text.
const CONFUSABLE_FIXES: Record<string, string> = { ι: 'i', Ι: 'I', κ: 'k', τ: 't', χ: 'x', ԍ: 'g' };
// Latin letters the table folds although they are letters of real words (German ß is not a B).
const KEEP_LATIN = new Set(['ß', 'ẞ']);

// Scripts whose letters are used to fake Latin ones. A letter of these scripts folds only inside a word
// that mixes it with Latin letters (`іgnоrе`), or when the whole word is made of near-perfect lookalikes
// and sits next to a Latin word (`а` in `ignore а rule`); a Russian or Greek word stays as written, so
// rules for those languages see the real text. Letters of other scripts (kana, Han, Arabic, …) never fold.
const LOOKALIKE_SCRIPT =
  /^[\p{Script=Cyrillic}\p{Script=Greek}\p{Script=Armenian}\p{Script=Cherokee}\p{Script=Coptic}]$/u;
const LETTER = /^\p{L}$/u;
const LATIN_LETTER = /^\p{Script=Latin}$/u;
const WORD_CHAR = /^[\p{L}\p{M}\p{N}]$/u;
const DECIMAL_DIGIT = /^\p{Nd}$/u;
// Lookalikes so close that a word made only of them reads as Latin (Cyrillic and Greek).
const STRICT = new Set([...'аеосрхуіјѕһԁԛԝӏАВЕКМНОРСТХУІЈЅҮοινΑΒΕΖΗΙΚΜΝΟΡΤΥΧ']);

function confusable(ch: string): string | undefined {
  const fix = CONFUSABLE_FIXES[ch];
  if (fix !== undefined) return fix;
  if (KEEP_LATIN.has(ch)) return undefined;
  const v = confusablesMap.get(ch);
  // only letter/digit targets: the table also maps some punctuation, which would change meaning
  if (v !== undefined && /^[A-Za-z0-9]{1,2}$/.test(v)) return v;
  return undefined;
}

/** Folded always (by `fold`): Latin-script letters and non-letters; not digits of other scripts (١). */
function foldsAlways(ch: string): boolean {
  if (LETTER.test(ch)) return LATIN_LETTER.test(ch);
  return !DECIMAL_DIGIT.test(ch);
}

function fold(cp: number): string {
  const cached = foldCache.get(cp);
  if (cached !== undefined) return cached;
  const nfkc = String.fromCodePoint(cp).normalize('NFKC');
  let out = '';
  for (const ch of nfkc) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) {
      out += ch;
      continue;
    }
    if (isInvisible(c)) continue;
    out += (foldsAlways(ch) ? confusable(ch) : undefined) ?? ch;
  }
  if (foldCache.size < FOLD_CACHE_MAX) foldCache.set(cp, out);
  return out;
}

// Per BMP code unit, for the word-level pass: 0 = not looked at, SEP = ends a word, LATIN = Latin letter,
// NEUTRAL = other word character, LOOK = lookalike-script letter without a one-unit fold, else
// LOOK_BASE + (target code unit) with STRICT_BIT when the letter is a near-perfect lookalike.
const SEP = 1;
const LATIN = 2;
const NEUTRAL = 3;
const LOOK = 4;
const LOOK_BASE = 0x100;
const STRICT_BIT = 0x10000;
const WORD_CLASS = new Int32Array(0x10000);

function wordClass(c: number): number {
  let v = WORD_CLASS[c];
  if (v !== 0) return v;
  const ch = String.fromCharCode(c);
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) v = LATIN;
  else if (c < 0x80) v = c >= 0x30 && c <= 0x39 ? NEUTRAL : SEP;
  else if (!WORD_CHAR.test(ch)) v = SEP;
  else if (LOOKALIKE_SCRIPT.test(ch) && LETTER.test(ch)) {
    const t = confusable(ch);
    v = t !== undefined && t.length === 1 ? LOOK_BASE + t.charCodeAt(0) : LOOK;
    if (v !== LOOK && STRICT.has(ch)) v |= STRICT_BIT;
  } else v = LATIN_LETTER.test(ch) ? LATIN : NEUTRAL;
  WORD_CLASS[c] = v;
  return v;
}

const W_LATIN = 1; // has a Latin letter (and maybe lookalikes: then it is mixed and folds)
const W_STRICT = 2; // only near-perfect lookalike letters: folds next to a Latin word
const W_OTHER = 3; // a real word of another script, or no letters that matter

/**
 * Fold lookalike-script letters where they fake Latin (see LOOKALIKE_SCRIPT). One-to-one in UTF-16
 * units, so the offset map stays valid.
 */
function foldMixedWords(text: string): string {
  const starts: number[] = [];
  const ends: number[] = [];
  const kinds: number[] = [];
  const len = text.length;
  let i = 0;
  let anyLook = false;
  while (i < len) {
    while (i < len && wordClass(text.charCodeAt(i)) === SEP) i++;
    if (i >= len) break;
    const s = i;
    let latin = false;
    let look = false;
    let strictOnly = true;
    for (; i < len; i++) {
      const v = wordClass(text.charCodeAt(i));
      if (v === SEP) break;
      if (v === LATIN) latin = true;
      else if (v >= LOOK) {
        look = true;
        if ((v & STRICT_BIT) === 0) strictOnly = false;
      }
    }
    if (look) anyLook = true;
    if (!look && !latin) continue; // digits, CJK: not a neighbour that decides anything
    starts.push(s);
    ends.push(i);
    kinds.push(latin ? W_LATIN : strictOnly ? W_STRICT : W_OTHER);
  }
  if (!anyLook) return text;
  const fold = new Uint8Array(kinds.length);
  let prev = 0; // kind of the nearest non-strict word on the left
  for (let k = 0; k < kinds.length; k++) {
    if (kinds[k] === W_STRICT) fold[k] = prev === W_LATIN ? 1 : 0;
    else {
      prev = kinds[k];
      fold[k] = kinds[k] === W_LATIN ? 1 : 0;
    }
  }
  let next = 0;
  for (let k = kinds.length - 1; k >= 0; k--) {
    if (kinds[k] === W_STRICT) {
      if (next === W_LATIN) fold[k] = 1;
    } else next = kinds[k];
  }
  const parts: string[] = [];
  let pos = 0;
  for (let k = 0; k < kinds.length; k++) {
    if (fold[k] === 0) continue;
    for (let j = starts[k]; j < ends[k]; j++) {
      const v = wordClass(text.charCodeAt(j));
      if (v < LOOK_BASE) continue;
      parts.push(text.slice(pos, j), String.fromCharCode((v & ~STRICT_BIT) - LOOK_BASE));
      pos = j + 1;
    }
  }
  if (pos === 0) return text;
  parts.push(text.slice(pos));
  return parts.join('');
}

function isInvisible(c: number): boolean {
  return (
    (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x206f) ||
    c === 0xfeff ||
    c === 0x00ad ||
    c === 0x034f ||
    c === 0x061c ||
    c === 0x180e ||
    c === 0x115f ||
    c === 0x1160 ||
    c === 0x3164 ||
    c === 0xffa0 ||
    (c >= 0xfe00 && c <= 0xfe0f) ||
    (c >= 0xe0100 && c <= 0xe01ef) ||
    (c >= 0x0300 && c <= 0x036f) ||
    (c >= 0x1ab0 && c <= 0x1aff) ||
    (c >= 0x1dc0 && c <= 0x1dff) ||
    (c >= 0x20d0 && c <= 0x20ff) ||
    (c >= 0xfe20 && c <= 0xfe2f) ||
    (c >= 0x80 && c <= 0x9f) ||
    (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0b && c !== 0x0c && c !== 0x0d) ||
    c === 0x7f
  );
}

function isSpace(c: number): boolean {
  return (
    c === 0x20 ||
    (c >= 0x09 && c <= 0x0d) ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0x85
  );
}

const NO_HIDDEN: readonly HiddenText[] = Object.freeze([]);

// Per BMP code unit: 0 = not looked at yet, COMPLEX = needs the full path (space, invisible, expands,
// surrogate), else the single unit it folds to (itself when unchanged). 128 KiB, filled lazily.
const COMPLEX = 1;
const BMP_FOLD = new Uint16Array(0x10000);

function bmpFold(c: number): number {
  if (isSpace(c) || isInvisible(c)) return COMPLEX;
  const f = fold(c);
  if (f.length !== 1 || f === ' ') return COMPLEX;
  const v = f.charCodeAt(0);
  return v <= COMPLEX ? COMPLEX : v;
}

class MapBuilder {
  count = 0;
  norm = new Int32Array(64);
  orig = new Int32Array(64);
  origEnd = new Int32Array(64);
  same = new Uint8Array(64);

  push(norm: number, orig: number, origEnd: number, same: 0 | 1): void {
    const last = this.count - 1;
    if (
      same === 1 &&
      last >= 0 &&
      this.same[last] === 1 &&
      this.origEnd[last] === orig &&
      this.norm[last] + (orig - this.orig[last]) === norm
    ) {
      this.origEnd[last] = origEnd; // contiguous one-to-one: one segment
      return;
    }
    if (this.count === this.norm.length) {
      const cap = this.count * 2;
      const grow = <T extends Int32Array | Uint8Array>(a: T, b: T): T => (b.set(a), b);
      this.norm = grow(this.norm, new Int32Array(cap));
      this.orig = grow(this.orig, new Int32Array(cap));
      this.origEnd = grow(this.origEnd, new Int32Array(cap));
      this.same = grow(this.same, new Uint8Array(cap));
    }
    const k = this.count++;
    this.norm[k] = norm;
    this.orig[k] = orig;
    this.origEnd[k] = origEnd;
    this.same[k] = same;
  }

  reset(): this {
    this.count = 0;
    return this;
  }

  /** a copy of the segments (the builder is reused by the next normalize) */
  done(): OffsetMap {
    const c = this.count;
    return {
      count: c,
      norm: this.norm.slice(0, c),
      orig: this.orig.slice(0, c),
      origEnd: this.origEnd.slice(0, c),
      same: this.same.slice(0, c),
    };
  }
}

/** one builder for every normalize (they never nest) */
const MAP = new MapBuilder();

/** Normalize `original` (see the header). */
export function normalize(original: string): NormalizedText {
  return normalizeText(original, true);
}

/**
 * The same, looking at every character in turn instead of skipping runs of plain ASCII with the byte
 * scanner: the reference the fast path is tested against (normalize.test.ts).
 */
export function normalizeEachChar(original: string): NormalizedText {
  return normalizeText(original, false);
}

/**
 * The fast path also writes the normalized text as UTF-8 into a second scratch buffer as it goes: those
 * are the bytes RE2 runs on, so the scanners need not encode the new string again.
 */
class BytesOut {
  o = 0;
  constructor(
    public buf: Buffer,
    readonly src: Buffer,
  ) {}
  ensure(extra: number): void {
    if (this.o + extra <= this.buf.length) return;
    const b = outBuffer(Math.max(this.buf.length * 2, this.o + extra));
    this.buf.copy(b, 0, 0, this.o);
    this.buf = b;
  }
  /** bytes [from, to) of the source */
  copy(from: number, to: number): void {
    const k = to - from;
    this.ensure(k);
    if (k > 64) this.src.copy(this.buf, this.o, from, to);
    else for (let j = 0; j < k; j++) this.buf[this.o + j] = this.src[from + j];
    this.o += k;
  }
  /** one UTF-16 unit (never a surrogate) */
  unit(v: number): void {
    this.ensure(3);
    const b = this.buf;
    if (v < 0x80) b[this.o++] = v;
    else if (v < 0x800) {
      b[this.o++] = 0xc0 | (v >> 6);
      b[this.o++] = 0x80 | (v & 0x3f);
    } else {
      b[this.o++] = 0xe0 | (v >> 12);
      b[this.o++] = 0x80 | ((v >> 6) & 0x3f);
      b[this.o++] = 0x80 | (v & 0x3f);
    }
  }
  /** a folded string (no lone surrogates) */
  str(f: string): void {
    this.ensure(f.length * 3);
    this.o += this.buf.write(f, this.o, 'utf8');
  }
}

function normalizeText(original: string, skim: boolean): NormalizedText {
  const text = original;
  const len = text.length;
  // the UTF-8 bytes of the original: the byte scanner finds the characters that need work in them, and
  // when nothing changes (or only ASCII control whitespace becomes a space, patched in place), they are
  // what the pattern scanners run on (utf8Of finds them again)
  // (always encoded afresh into the first scratch: remembered bytes may live in the output scratch)
  const bytes = skim ? utf8Of(text, false) : EMPTY_BYTES;
  const words = skim ? wordsOf(bytes) : EMPTY_WORDS;
  const blen = bytes.length;
  if (skim && nextSpecial(bytes, words, 0, blen) === blen) {
    return { text, map: null, originalLength: len, textLength: len, hidden: NO_HIDDEN };
  }
  const map = MAP.reset();
  const parts: string[] = [];
  let bo = skim ? new BytesOut(outBuffer(blen + 64), bytes) : null;
  let n = 0; // normalized length so far, in UTF-16 units
  let lastSpace = false;
  let hidden: HiddenText[] | null = null;
  let tagStart = -1;
  let tagEnd = 0;
  let tagText = '';
  // unchanged text is copied as slices: [runStart, i) pending; and as bytes from runByte (fast path,
  // where control whitespace is patched in place and stays in the byte run)
  let runStart = 0;
  let runByte = 0;
  // a lookalike-script letter was kept: the word-level folding pass runs at the end
  let lookalikes = false;
  // fast path: ASCII control whitespace was patched to a space in `bytes`; anything else was changed
  let patched = false;
  let changed = false;
  let lone = false;

  const flushRun = (to: number) => {
    if (to > runStart) {
      parts.push(to - runStart === len ? text : text.slice(runStart, to));
      map.push(n, runStart, to, 1);
      n += to - runStart;
    }
  };
  const flushBytes = (toByte: number) => {
    if (toByte > runByte) bo!.copy(runByte, toByte);
  };
  const endTag = () => {
    if (tagText.length > 0) (hidden ??= []).push({ start: tagStart, end: tagEnd, text: tagText });
    tagStart = -1;
    tagText = '';
  };

  let i = 0; // UTF-16 offset in the original
  let p = 0; // the same position in `bytes` (kept on both paths; only the fast one reads bytes)
  while (i < len) {
    const c = text.charCodeAt(i);
    // a run of printable ASCII and single spaces: up to the next byte that needs work (skim), else one
    if (c >= 0x20 && c < 0x7f && !(c === 0x20 && lastSpace)) {
      if (tagStart >= 0) endTag();
      if (skim) {
        const q = nextSpecial(bytes, words, p + 1, blen); // bytes before it are all ASCII: units = bytes
        i += q - p;
        p = q;
        lastSpace = bytes[q - 1] === 0x20;
      } else {
        i++;
        p++;
        lastSpace = c === 0x20;
      }
      continue;
    }
    if (c >= 0x09 && c <= 0x0d && !lastSpace) {
      // ASCII control whitespace after a non-space: one space, offsets one-to-one
      if (tagStart >= 0) endTag();
      if (skim) {
        // patched in place: stays in the unchanged run (its string gets the space when it is built)
        bytes[p] = 0x20;
        patched = true;
      } else {
        flushRun(i);
        parts.push(' ');
        map.push(n, i, i + 1, 1);
        n++;
        runStart = i + 1;
      }
      lastSpace = true;
      i++;
      p++;
      continue;
    }
    // slow branch: this code point changes the text
    let cp = c;
    let width = 1;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = ((c - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
        width = 2;
      }
    }
    // a lone surrogate has no UTF-8 form (its bytes read back as U+FFFD): the scanners encode the text
    if (width === 1 && c >= 0xd800 && c <= 0xdfff) {
      lone = true;
      bo = null; // (no use writing bytes any more)
    }
    const bw = width === 2 ? 4 : c < 0x80 ? 1 : c < 0x800 ? 2 : 3; // its UTF-8 length
    if (width === 1 && c >= 0x80 && (c < 0xd800 || c > 0xdfff)) {
      // BMP characters that fold to exactly one unit keep offsets one-to-one: unchanged ones (CJK, most
      // punctuation) stay in the run, substituted ones (Cyrillic а → a) extend the identity segment
      let v = BMP_FOLD[c];
      if (v === 0) v = BMP_FOLD[c] = bmpFold(c);
      if (v === c) {
        if (!lookalikes && wordClass(c) >= LOOK) lookalikes = true;
        if (tagStart >= 0) endTag();
        lastSpace = false;
        i++;
        p += bw;
        continue;
      }
      if (v !== COMPLEX) {
        flushRun(i);
        if (bo !== null) {
          flushBytes(p);
          bo.unit(v);
        }
        changed = true;
        if (tagStart >= 0) endTag();
        parts.push(String.fromCharCode(v));
        map.push(n, i, i + 1, 1);
        n++;
        lastSpace = false;
        i++;
        p += bw;
        runStart = i;
        runByte = p;
        continue;
      }
    }
    flushRun(i);
    if (bo !== null) flushBytes(p);
    changed = true;
    if (cp >= 0xe0000 && cp <= 0xe007f) {
      // tag characters: invisible; the ones spelling ASCII are hidden text
      if (tagStart < 0) tagStart = i;
      if (cp >= 0xe0020 && cp <= 0xe007e) tagText += String.fromCharCode(cp - 0xe0000);
      tagEnd = i + width;
    } else {
      if (tagStart >= 0) endTag();
      if (isSpace(cp)) {
        if (lastSpace && n > 0) {
          map.origEnd[map.count - 1] = i + width; // the previous space now covers the whole run
          if (map.same[map.count - 1] === 1) {
            // the previous space was the last unit of an unchanged run: split it off as its own segment
            const k = map.count - 1;
            if (n - 1 > map.norm[k]) {
              map.origEnd[k] = map.orig[k] + (n - 1 - map.norm[k]);
              map.push(n - 1, map.origEnd[k], i + width, 0);
            } else {
              map.same[k] = 0;
              map.origEnd[k] = i + width;
            }
          }
        } else {
          parts.push(' ');
          bo?.unit(0x20);
          map.push(n, i, i + width, 0);
          n++;
        }
        lastSpace = true;
      } else if (!isInvisible(cp)) {
        const f = fold(cp);
        if (f.length > 0) {
          parts.push(f);
          bo?.str(f);
          map.push(n, i, i + width, 0);
          n += f.length;
          lastSpace = false;
        }
      }
      // invisible characters are dropped and do not break a whitespace run
    }
    p += bw;
    i += width;
    runStart = i;
    runByte = p;
  }
  if (tagStart >= 0) endTag();
  if (skim && !changed && !patched) {
    // nothing changed (only characters the pipeline keeps): the original, whose bytes utf8Of remembers
    // (a lone surrogate is kept as it is, which its UTF-8 is not)
    if (lone) forgetUtf8();
    const folded = lookalikes ? foldMixedWords(text) : text;
    return { text: folded, map: null, originalLength: len, textLength: len, hidden: hidden ?? NO_HIDDEN };
  }
  flushRun(len);
  // one unchanged-length segment over everything (only one-to-one substitutions): the identity map
  const identity = map.count === 1 && map.same[0] === 1 && n === len && map.origEnd[0] === len;
  const offsets = identity ? null : map.done();
  const hide = hidden ?? NO_HIDDEN;
  let resultBytes: Buffer | null = null;
  if (bo !== null && !lone) {
    if (changed) {
      flushBytes(blen);
      resultBytes = bo.buf.subarray(0, bo.o);
    } else resultBytes = bytes; // only control whitespace, patched in place
  }
  if (resultBytes === null || lookalikes) {
    // the word pass needs the string (and may change it: then the scanners encode it again)
    const result = spaced(parts.join(''), patched);
    const folded = lookalikes ? foldMixedWords(result) : result;
    if (resultBytes !== null && folded === result) rememberUtf8(folded, resultBytes);
    else forgetUtf8();
    return { text: folded, map: offsets, originalLength: len, textLength: n, hidden: hide };
  }
  // the scanners read the bytes; the string (joining the parts costs ~0.25 ms per 256 KiB) is built
  // only if something reads it (decoding, the leak scanner, the streaming matcher)
  const normalized = new JoinedLater(parts, patched, offsets, len, n, hide);
  rememberUtf8(normalized, resultBytes);
  return normalized;
}

/**
 * The joined parts with ASCII control whitespace as spaces: on the fast path it stays in the unchanged
 * runs (patched only in the bytes), and nothing else in the output can be control whitespace (a run after
 * a space is collapsed, folded characters are never whitespace).
 */
function spaced(joined: string, patched: boolean): string {
  return patched ? joined.replace(ASCII_CONTROL_SPACE, ' ') : joined;
}
const ASCII_CONTROL_SPACE = /[\t\n\v\f\r]/g;

/** A normalized text whose string is joined from its parts on first read. */
class JoinedLater implements NormalizedText {
  #parts: string[] | null;
  #patched: boolean;
  #text = '';
  constructor(
    parts: string[],
    patched: boolean,
    readonly map: OffsetMap | null,
    readonly originalLength: number,
    readonly textLength: number,
    readonly hidden: readonly HiddenText[],
  ) {
    this.#parts = parts;
    this.#patched = patched;
  }
  get text(): string {
    if (this.#parts !== null) {
      this.#text = spaced(this.#parts.join(''), this.#patched);
      this.#parts = null;
    }
    return this.#text;
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8 encoding and the byte scanner.
//
// Finding the characters normalization changes with V8 regexes costs ~1.2–1.7 ns per character on
// this kind of machine (a search for a double space, another for a non-printable character, another for
// control whitespace: ~0.5 ms per 256 KiB). The pattern scanners need the text as UTF-8 anyway (RE2 runs
// on bytes), so the text is encoded once into a reused scratch buffer (~0.3 ns per byte) and scanned
// four bytes at a time for a byte outside printable ASCII or a second space in a row.

/** longest scratch buffer kept between scans (a text of up to a third of this many units fits) */
const SCRATCH_MAX = 1 << 20;
let scratch = Buffer.alloc(0);
let scratchWords: Uint32Array = new Uint32Array(0);
// the last text (or normalized text) encoded and its bytes (valid until the next utf8Of call or
// forgetUtf8)
let lastText: string | NormalizedText | null = null;
let lastBytes: Buffer = scratch;
let outScratch = Buffer.alloc(0);
const EMPTY_BYTES = Buffer.alloc(0);

/** a buffer of at least `size` bytes for normalized output: the second scratch, or a fresh one */
function outBuffer(size: number): Buffer {
  if (size > SCRATCH_MAX) return Buffer.allocUnsafe(size);
  if (outScratch.length < size) outScratch = Buffer.allocUnsafe(Math.max(size, 64 * 1024));
  return outScratch;
}
const EMPTY_WORDS = new Uint32Array(0);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * `text` as UTF-8 in the scratch buffer (a fresh one for texts over a third of SCRATCH_MAX units). Valid
 * until the next call: scans are synchronous and nothing keeps it. The same text twice in a row (the
 * original that normalization left unchanged) is encoded once.
 */
export function utf8Of(text: string, reuse = true): Buffer {
  if (reuse && text === lastText) return lastBytes;
  const need = (text.length * 3 + 4) & ~3; // whole words, for the word view
  let buf: Buffer;
  if (need > SCRATCH_MAX) buf = Buffer.from(new ArrayBuffer(need));
  else {
    if (scratch.length < need) scratch = Buffer.from(new ArrayBuffer(Math.max(need, 64 * 1024)));
    buf = scratch;
  }
  lastText = text;
  lastBytes = buf.subarray(0, buf.write(text, 0, 'utf8'));
  return lastBytes;
}

/** drop the remembered text (the scan is done with it) */
export function forgetUtf8(): void {
  lastText = null;
}

/** the UTF-8 of a normalized text (what normalize wrote, while nothing else was encoded since) */
export function utf8OfNormalized(n: NormalizedText): Buffer {
  return n === lastText ? lastBytes : utf8Of(n.text);
}

function rememberUtf8(text: string | NormalizedText, bytes: Buffer): void {
  lastText = text;
  lastBytes = bytes;
}

/** a word view of the bytes (they start at offset 0 of their own ArrayBuffer) */
function wordsOf(bytes: Buffer): Uint32Array {
  if (!LITTLE_ENDIAN || bytes.byteOffset !== 0) return EMPTY_WORDS; // (the byte loop then)
  if (scratchWords.buffer === bytes.buffer) return scratchWords;
  const words = new Uint32Array(bytes.buffer, 0, bytes.buffer.byteLength >> 2);
  if (bytes.buffer === scratch.buffer) scratchWords = words;
  return words;
}

function specialAt(b: Uint8Array, q: number): boolean {
  const c = b[q];
  return c < 0x20 || c >= 0x7f || (c === 0x20 && q > 0 && b[q - 1] === 0x20);
}

/**
 * First offset ≥ from in `b` (up to `end`) of a byte outside printable ASCII (0x20–0x7e) or of a space
 * right after a space; `end` when there is none. Whole words of `w` (little-endian) are tested with
 * carry-free per-byte arithmetic.
 */
export function nextSpecial(b: Uint8Array, w: Uint32Array, from: number, end: number): number {
  let q = from;
  if (w.length === 0) {
    while (q < end && !specialAt(b, q)) q++;
    return q;
  }
  while (q < end && (q & 3) !== 0) {
    if (specialAt(b, q)) return q;
    q++;
  }
  const wend = end >> 2;
  let k = q >> 2;
  let carry = q > 0 && b[q - 1] === 0x20 ? 0x80 : 0;
  for (; k < wend; k++) {
    const x = w[k];
    // per byte, bit 7 set when: ≥ 0x80 (x) | = 0x7f (t + 1) | < 0x20 (not t + 0x60) | a space after a
    // space (sp: exact zero bytes of x ^ 0x20202020); no carry crosses a byte, as t ≤ 0x7f
    const t = x & 0x7f7f7f7f;
    const s = x ^ 0x20202020;
    const sp = ~(((s & 0x7f7f7f7f) + 0x7f7f7f7f) | s) & 0x80808080;
    const m = (x | (t + 0x01010101) | ~(t + 0x60606060) | (sp & ((sp << 8) | carry))) & 0x80808080;
    if (m !== 0) return (k << 2) + ((31 - Math.clz32(m & -m)) >> 3);
    carry = (sp >>> 31) << 7;
  }
  q = Math.max(q, k << 2);
  while (q < end && !specialAt(b, q)) q++;
  return q;
}

// ---------------------------------------------------------------------------------------------
// Bounded decoding of encoded payloads (base64, hex, %-encoding) found in normalized text.

export type EncodingKind = 'base64' | 'hex' | 'url' | 'tag' | 'html' | 'escape';

export interface EncodedRun {
  /** span in the text the run was found in */
  start: number;
  end: number;
  kind: EncodingKind;
  decoded: string;
}

// Candidates: base64/hex runs with a hand-written linear scan (no regex engine on large input), %-runs,
// HTML character references and \uXXXX escapes with RE2 (linear by construction).
const B64_MIN = 16;
const B64_CLASS = new Uint8Array(128);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-')
  B64_CLASS[ch.charCodeAt(0)] = 1;
const HEX_RUN = /^(?:[0-9A-Fa-f]{2})+$/;
// RE2, not V8: this one has a starred run before a repeated group, which backtracks quadratically on a
// long token with too few escapes
const PCT_RUN = new RE2(String.raw`[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*){2,}`, 'gu');
// two or more references/escapes in one whitespace-free token (one alone is ordinary markup or code)
const ENTITY = String.raw`&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|lt|gt|amp|quot|apos|nbsp);`;
const ENTITY_RUN = new RE2(String.raw`[^\s&]*(?:${ENTITY}[^\s&]*){2,}`, 'gu');
const ENTITY_ONE = new RE2(ENTITY, 'gu');
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'", nbsp: ' ' };
const ESCAPE_RUN = new RE2(String.raw`[^\s\\]*(?:\\u[0-9A-Fa-f]{4}[^\s\\]*){2,}`, 'gu');
const ESCAPE_ONE = /\\u([0-9A-Fa-f]{4})/g; // only on a run RE2 found (bounded by the budget)
const utf8 = new TextDecoder('utf-8', { fatal: true });

function fromCodePointSafe(cp: number): string {
  return cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? String.fromCodePoint(cp) : '\ufffd';
}

function decodeEntities(s: string): string {
  return s.replace(ENTITY_ONE, (m: string) => {
    if (m[1] !== '#') return NAMED[m.slice(1, -1)] ?? m;
    const hex = m[2] === 'x' || m[2] === 'X';
    return fromCodePointSafe(parseInt(m.slice(hex ? 3 : 2, -1), hex ? 16 : 10));
  });
}

function decodeEscapes(s: string): string {
  // surrogate pairs written as two escapes join up again in the UTF-16 string
  return s.replace(ESCAPE_ONE, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** At least 90 % printable characters (letters, digits, punctuation, whitespace), no NULs. */
function mostlyPrintable(s: string): boolean {
  if (s.length === 0) return false;
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (
      c === 0 ||
      c === 0xfffd ||
      (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) ||
      (c >= 0x7f && c < 0xa0)
    )
      bad++;
  }
  return bad * 10 <= s.length;
}

function decodeBytes(buf: Buffer): string | null {
  try {
    const s = utf8.decode(buf);
    return mostlyPrintable(s) ? s : null;
  } catch {
    return null;
  }
}

function percentDecode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    // invalid UTF-8 in some escape: decode what forms valid sequences, keep the rest as written
    return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (m) => {
      try {
        return decodeURIComponent(m);
      } catch {
        return m;
      }
    });
  }
}

/**
 * Encoded runs in `text` (base64/hex, %-encoding, HTML character references and \uXXXX escapes — the
 * last two with two or more in a token — each when `kinds` says the set's markers saw a possible one;
 * html and escape default to on) that decode to mostly printable text, at most `budget` decoded
 * characters in total (runs past the budget are left alone: the caller reports nothing for them).
 */
export function findEncodedRuns(
  text: string,
  budget: number,
  kinds: { base64: boolean; percent: boolean; html?: boolean; escape?: boolean } = {
    base64: true,
    percent: true,
  },
): EncodedRun[] {
  const out: EncodedRun[] = [];
  if (budget <= 0) return out;
  let used = 0;
  if (kinds.base64 && text.length >= B64_MIN) {
    const len = text.length;
    let i = 0;
    while (i < len && used < budget) {
      // next maximal run of base64/hex alphabet characters
      let c = text.charCodeAt(i);
      if (c >= 128 || B64_CLASS[c] === 0) {
        i++;
        continue;
      }
      const start = i;
      while (i < len && (c = text.charCodeAt(i)) < 128 && B64_CLASS[c] === 1) i++;
      if (i - start < B64_MIN) continue;
      let end = i;
      if (end < len && text.charCodeAt(end) === 0x3d) end++;
      if (end < len && end > i && text.charCodeAt(end) === 0x3d) end++;
      i = end;
      const run = text.slice(start, end);
      let decoded: string | null = null;
      let kind: EncodingKind = 'base64';
      const maxIn = Math.min(run.length, Math.ceil(((budget - used) * 4) / 3) + 4);
      const body = run.slice(0, maxIn);
      if (HEX_RUN.test(body) && body.length >= B64_MIN) {
        decoded = decodeBytes(Buffer.from(body, 'hex'));
        kind = 'hex';
      }
      if (decoded === null) {
        decoded = decodeBytes(
          Buffer.from(
            body.replace(/[-_]/g, (ch) => (ch === '-' ? '+' : '/')),
            'base64',
          ),
        );
        kind = 'base64';
      }
      if (decoded !== null && decoded.length >= 4) {
        out.push({ start, end, kind, decoded });
        used += decoded.length;
      }
    }
  }
  for (const [mark, re, decode, kind, on] of [
    ['&', ENTITY_RUN, decodeEntities, 'html', kinds.html !== false],
    ['\\u', ESCAPE_RUN, decodeEscapes, 'escape', kinds.escape !== false],
  ] as const) {
    if (!on || used >= budget || !text.includes(mark)) continue;
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null && used < budget) {
      const decoded = decode(m[0]);
      if (decoded !== m[0] && mostlyPrintable(decoded)) {
        const d = decoded.slice(0, budget - used);
        out.push({ start: m.index, end: m.index + m[0].length, kind, decoded: d });
        used += d.length;
      }
    }
  }
  if (kinds.percent && used < budget && text.includes('%')) {
    PCT_RUN.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = PCT_RUN.exec(text)) !== null && used < budget) {
      const decoded = percentDecode(m[0]);
      if (decoded !== null && decoded !== m[0] && mostlyPrintable(decoded)) {
        const d = decoded.slice(0, budget - used);
        out.push({ start: m.index, end: m.index + m[0].length, kind: 'url', decoded: d });
        used += d.length;
      }
    }
  }
  return out;
}
