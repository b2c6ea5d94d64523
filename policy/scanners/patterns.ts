// Pattern rules: one pass of each RE2.Set of prefilters over the text tells which rules may match; only
// those rules (and the few without a prefilter) run their own RE2 (global exec) to collect every match's
// offsets. Offsets are UTF-16 units of `text`.
//
// The text goes to RE2 as one UTF-8 Buffer, written into a scratch buffer reused by every scan. node-re2
// converts a string to UTF-8 and keeps the conversion only for the next call on the same RE2 object with
// the same string; a scan's normalized text is new each time, so the set and every rule that runs would
// each convert it (~0.7 ms per 256 KiB each, ~6 µs per 4 KiB). Converting once and mapping byte offsets
// back (one forward walk per rule with matches; none for ASCII) took the default policy from ~51 to
// ~69 MB/s on 256 KiB of user text; doing it for short texts as well and reusing the buffer took a 4 KiB
// prompt from ~48 to ~40 µs.
import type { Source } from '../types.js';
import type { CompiledRule, RuleGroup } from '../compile.js';
import { forgetUtf8, utf8Of, utf8OfNormalized, type NormalizedText } from '../normalize.js';

export interface RuleMatch {
  rule: CompiledRule;
  start: number;
  end: number;
}

/**
 * matchRules result bits: the text may hold a base64/hex run, a %-encoded run, an HTML character
 * reference, a \uXXXX escape (worth decoding); bit k is marker -(k + 1) of compile.ts (MARK_*)
 */
export const MAY_BASE64 = 1;
export const MAY_PERCENT = 2;
export const MAY_ENTITY = 4;
export const MAY_ESCAPE = 8;

/**
 * Append every match of the group's rules in `text` to `out` (rules filtered by `source` when given).
 * Returns MAY_* bits from the set's encoding markers (0 when the group has no rules: nothing to find).
 */
export function matchRules(
  group: RuleGroup,
  text: string | NormalizedText,
  source: Source | undefined,
  out: RuleMatch[],
): number {
  let may = 0;
  const units = typeof text === 'string' ? text.length : text.textLength;
  if (group.rules.length === 0 || units === 0) {
    forgetUtf8();
    return may;
  }
  // one UTF-8 Buffer for the set and every rule (the one normalize wrote)
  const subject = typeof text === 'string' ? utf8Of(text) : utf8OfNormalized(text);
  const ascii = subject.length === units;
  // a rule runs when every set entry of one of its clauses hit (they all occur in any match of that
  // clause's branch). The set reports entries in ascending order, so clauses, and rules, come in order.
  const counts = group.counts;
  const touched: number[] = [];
  try {
    for (const { set, clauseIndex } of group.sets) {
      const hits = set.match(subject);
      for (let h = 0; h < hits.length; h++) {
        const cl = clauseIndex[hits[h]];
        if (cl < 0) may |= 1 << (-cl - 1);
        else if (counts[cl]++ === 0) touched.push(cl);
      }
    }
    let last = -1;
    for (const cl of touched) {
      if (counts[cl] !== group.required[cl]) continue;
      const idx = group.clauseRule[cl];
      if (idx === last) continue; // another clause of a rule that runs already
      last = idx;
      const rule = group.rules[idx];
      if (source !== undefined && rule.sources !== null && !rule.sources.has(source)) continue;
      collect(rule, subject, ascii, out);
    }
  } finally {
    for (const idx of touched) counts[idx] = 0;
  }
  for (let k = 0; k < group.always.length; k++) {
    const rule = group.rules[group.always[k]];
    if (source !== undefined && rule.sources !== null && !rule.sources.has(source)) continue;
    collect(rule, subject, ascii, out);
  }
  forgetUtf8();
  return may;
}

/** Forward-only UTF-8 byte offset → UTF-16 offset of `buf` (restart for earlier offsets). */
class ByteMap {
  byte = 0;
  unit = 0;
  constructor(readonly buf: Buffer) {}
  at(b: number): number {
    if (b < this.byte) this.byte = this.unit = 0;
    const buf = this.buf;
    let u = this.unit;
    for (let i = this.byte; i < b; i++) {
      const c = buf[i];
      if ((c & 0xc0) !== 0x80) u += c >= 0xf0 ? 2 : 1;
    }
    this.byte = b;
    this.unit = u;
    return u;
  }
}

function collect(rule: CompiledRule, subject: Buffer, ascii: boolean, out: RuleMatch[]): void {
  const re = rule.re;
  re.lastIndex = 0;
  const map = ascii ? null : new ByteMap(subject);
  const len = subject.length;
  let m: RegExpExecArray | null;
  while ((m = re.exec(subject as unknown as string)) !== null) {
    // on a Buffer, index and lastIndex are byte offsets and m[0] is a Buffer
    const bStart = m.index;
    const bEnd = re.lastIndex;
    if (bEnd === bStart) {
      // an empty match finds nothing worth reporting; step past it (a whole character) so the loop ends
      let next = bStart + 1;
      while (next < len && (subject[next] & 0xc0) === 0x80) next++;
      re.lastIndex = next;
      if (re.lastIndex > len) break;
      continue;
    }
    const start = map === null ? bStart : map.at(bStart);
    const end = map === null ? bEnd : map.at(bEnd);
    if (rule.validate !== undefined) {
      const g = m.length > 1 && m[1] !== undefined ? m[1] : m[0];
      const subjectText = typeof g === 'string' ? g : String(g);
      if (!rule.validate(subjectText, rule)) continue;
    }
    out.push({ rule, start, end });
  }
  re.lastIndex = 0;
}
