// Normalization: every scanner sees text the way a model reads it, not the way an attacker spelled it.
//
// Pipeline per code point (one pass, offsets kept):
//   1. Unicode tag characters (U+E0000–U+E007F) are removed; the ones that spell ASCII (U+E0020–U+E007E)
//      are collected as hidden text, which the scanner scans as decoded content.
//   2. Invisible characters are removed: zero-width (U+200B–U+200F, U+2060–U+2064, U+FEFF), bidi controls
//      (U+202A–U+202E, U+2066–U+2069, U+061C), soft hyphen, combining grapheme joiner, variation selectors,
//      combining marks (a base letter keeps its identity: `é` → `e`), and C0/C1 controls other than whitespace.
//   3. NFKC (fullwidth, mathematical alphanumerics, ligatures → plain letters), then confusable folding
//      (Cyrillic/Greek/… lookalikes → Latin, from the `confusables` package's Unicode-derived table).
//   4. Whitespace runs (any Unicode whitespace, newlines included) collapse to one ASCII space.
// Case is preserved: rules say `(?i)` when they mean it.
//
// Every normalized UTF-16 unit remembers the [start, end) of the original code units it came from, so a
// finding in normalized text maps back to the original (`toOriginal`). Plain ASCII text without control
// characters or doubled spaces — most prompts — takes a fast path that allocates no offset map.
import { confusablesMap } from 'confusables';
import RE2 from 're2';

export interface NormalizedText {
  /** the normalized text that rules run on */
  readonly text: string;
  /** normalized → original offsets; null = identity (text unchanged) */
  readonly map: OffsetMap | null;
  /** length of the original text */
  readonly originalLength: number;
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

// Cheap test for the fast path: printable ASCII and single spaces only.
const NEEDS_WORK = /[^\x21-\x7e ]| {2}/;
const NON_PRINTABLE = /[^\x20-\x7e]/g;
const DOUBLE_SPACE = / {2}/g;
const ASCII_CONTROL_SPACE = /[\t\n\v\f\r]/;
const ASCII_CONTROL_SPACE_G = /[\t\n\v\f\r]/g;

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
  const len = n.text.length;
  if (len === 0) return [0, 0];
  const s = start < len ? startOf(m, start) : n.originalLength;
  const e = end > start ? endOf(m, Math.min(end, len) - 1) : s;
  return [s, e];
}

/** Original offset where normalized position `pos` begins (pos may equal the normalized length). */
export function originalAt(n: NormalizedText, pos: number): number {
  if (n.map === null) return pos;
  return pos < n.text.length ? startOf(n.map, pos) : n.originalLength;
}

// Folding of one code point: NFKC then confusables. Cached (bounded: at most FOLD_CACHE_MAX distinct
// code points, so an attacker cycling through Unicode cannot grow memory).
const FOLD_CACHE_MAX = 65_536;
const foldCache = new Map<number, string>();

// A few entries of the upstream table that fold to a letter of the wrong shape for prompt text.
const CONFUSABLE_FIXES: Record<string, string> = { ι: 'i', Ι: 'I', κ: 'k', τ: 't', χ: 'x', ԍ: 'g' };

function confusable(ch: string): string | undefined {
  const fix = CONFUSABLE_FIXES[ch];
  if (fix !== undefined) return fix;
  const v = confusablesMap.get(ch);
  // only letter/digit targets: the table also maps some punctuation, which would change meaning
  if (v !== undefined && /^[A-Za-z0-9]{1,2}$/.test(v)) return v;
  return undefined;
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
    out += confusable(ch) ?? ch;
  }
  if (foldCache.size < FOLD_CACHE_MAX) foldCache.set(cp, out);
  return out;
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

  done(): OffsetMap {
    return { count: this.count, norm: this.norm, orig: this.orig, origEnd: this.origEnd, same: this.same };
  }
}

export function normalize(original: string): NormalizedText {
  // ASCII control whitespace becomes a space first: same length, so offsets stay one-to-one
  const text = ASCII_CONTROL_SPACE.test(original) ? original.replace(ASCII_CONTROL_SPACE_G, ' ') : original;
  if (!NEEDS_WORK.test(text)) {
    return { text, map: null, originalLength: text.length, hidden: NO_HIDDEN };
  }
  const len = text.length;
  const map = new MapBuilder();
  const parts: string[] = [];
  let n = 0; // normalized length so far
  let lastSpace = false;
  let hidden: HiddenText[] | null = null;
  let tagStart = -1;
  let tagEnd = 0;
  let tagText = '';
  // unchanged text is copied as slices: [runStart, i) pending
  let runStart = 0;

  const flushRun = (to: number) => {
    if (to > runStart) {
      parts.push(to - runStart === len ? text : text.slice(runStart, to));
      map.push(n, runStart, to, 1);
      n += to - runStart;
    }
  };
  const endTag = () => {
    if (tagText.length > 0) (hidden ??= []).push({ start: tagStart, end: tagEnd, text: tagText });
    tagStart = -1;
    tagText = '';
  };

  let nextOther = -1;
  let nextDouble = -1;
  let i = 0;
  while (i < len) {
    const c = text.charCodeAt(i);
    // fast branch: a run of printable ASCII and single spaces up to the next non-printable character or
    // double space (both searched forward once and remembered, so the text is scanned about once)
    if (c >= 0x20 && c < 0x7f && !(c === 0x20 && lastSpace)) {
      if (nextOther < i) {
        NON_PRINTABLE.lastIndex = i;
        nextOther = NON_PRINTABLE.exec(text)?.index ?? len;
      }
      if (nextDouble < i) {
        DOUBLE_SPACE.lastIndex = i; // (a regex: V8 finds this faster than indexOf('  '))
        const d = DOUBLE_SPACE.exec(text);
        nextDouble = d === null ? len : d.index + 1; // the second space is the change
      }
      const j = nextOther < nextDouble ? nextOther : nextDouble;
      if (tagStart >= 0) endTag();
      lastSpace = text.charCodeAt(j - 1) === 0x20;
      i = j;
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
    if (width === 1 && c >= 0x80 && (c < 0xd800 || c > 0xdfff)) {
      // BMP characters that fold to exactly one unit keep offsets one-to-one: unchanged ones (CJK, most
      // punctuation) stay in the run, substituted ones (Cyrillic а → a) extend the identity segment
      let v = BMP_FOLD[c];
      if (v === 0) v = BMP_FOLD[c] = bmpFold(c);
      if (v === c) {
        if (tagStart >= 0) endTag();
        lastSpace = false;
        i++;
        continue;
      }
      if (v !== COMPLEX) {
        flushRun(i);
        if (tagStart >= 0) endTag();
        parts.push(String.fromCharCode(v));
        map.push(n, i, i + 1, 1);
        n++;
        lastSpace = false;
        i++;
        runStart = i;
        continue;
      }
    }
    flushRun(i);
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
          map.push(n, i, i + width, 0);
          n++;
        }
        lastSpace = true;
      } else if (!isInvisible(cp)) {
        const f = fold(cp);
        if (f.length > 0) {
          parts.push(f);
          map.push(n, i, i + width, 0);
          n += f.length;
          lastSpace = false;
        }
      }
      // invisible characters are dropped and do not break a whitespace run
    }
    i += width;
    runStart = i;
  }
  flushRun(len);
  if (tagStart >= 0) endTag();
  return { text: parts.join(''), map: map.done(), originalLength: len, hidden: hidden ?? NO_HIDDEN };
}

// ---------------------------------------------------------------------------------------------
// Bounded decoding of encoded payloads (base64, hex, %-encoding) found in normalized text.

export type EncodingKind = 'base64' | 'hex' | 'url' | 'tag';

export interface EncodedRun {
  /** span in the text the run was found in */
  start: number;
  end: number;
  kind: EncodingKind;
  decoded: string;
}

// Candidates: base64/hex with a V8 regex (one class, linear), %-runs with RE2.
const B64_RUN = /[A-Za-z0-9+/_-]{16,}={0,2}/g;
const HEX_RUN = /^(?:[0-9A-Fa-f]{2})+$/;
// RE2, not V8: this one has a starred run before a repeated group, which backtracks quadratically on a
// long token with too few escapes
const PCT_RUN = new RE2(String.raw`[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*){2,}`, 'gu');
const utf8 = new TextDecoder('utf-8', { fatal: true });

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
 * Encoded runs in `text` that decode to mostly printable UTF-8, at most `budget` decoded characters in
 * total (runs past the budget are left alone: the caller reports nothing for them).
 */
export function findEncodedRuns(
  text: string,
  budget: number,
  kinds = { base64: true, percent: true },
): EncodedRun[] {
  const out: EncodedRun[] = [];
  if (budget <= 0) return out;
  let used = 0;
  if (kinds.base64 && text.length >= 16) {
    B64_RUN.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = B64_RUN.exec(text)) !== null && used < budget) {
      const run = m[0];
      // a long plain word (e.g. `internationalization`) is not worth decoding: base64 of text mixes cases/digits
      let decoded: string | null = null;
      let kind: EncodingKind = 'base64';
      const maxIn = Math.min(run.length, Math.ceil(((budget - used) * 4) / 3) + 4);
      const body = run.slice(0, maxIn);
      if (HEX_RUN.test(body) && body.length >= 16) {
        decoded = decodeBytes(Buffer.from(body, 'hex'));
        kind = 'hex';
      }
      if (decoded === null) {
        decoded = decodeBytes(
          Buffer.from(
            body.replace(/[-_]/g, (c) => (c === '-' ? '+' : '/')),
            'base64',
          ),
        );
        kind = 'base64';
      }
      if (decoded !== null && decoded.length >= 4) {
        out.push({ start: m.index, end: m.index + run.length, kind, decoded });
        used += decoded.length;
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
