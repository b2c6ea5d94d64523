// Pattern rules: one pass of each RE2.Set of prefilters over the text tells which rules may match; only
// those rules (and the few without a prefilter) run their own RE2 (global exec) to collect every match's
// offsets. Offsets are UTF-16 units of `text`.
//
// Strings, not Buffers: node-re2 converts a string to UTF-8 once and keeps the conversion for the next
// call with the same string, and it reports string offsets itself. Measured in bench/engine.ts: scanning
// strings is ~1.5× faster than scanning a UTF-8 Buffer (each Buffer match allocates a slice, and byte
// offsets then need mapping back).
import type { Source } from '../types.js';
import { MARK_BASE64, type CompiledRule, type RuleGroup } from '../compile.js';

export interface RuleMatch {
  rule: CompiledRule;
  start: number;
  end: number;
}

/** matchRules result bits: the text may hold a base64/hex run, a %-encoded run (worth decoding) */
export const MAY_BASE64 = 1;
export const MAY_PERCENT = 2;

/**
 * Append every match of the group's rules in `text` to `out` (rules filtered by `source` when given).
 * Returns MAY_* bits from the set's encoding markers (0 when the group has no rules: nothing to find).
 */
export function matchRules(
  group: RuleGroup,
  text: string,
  source: Source | undefined,
  out: RuleMatch[],
): number {
  let may = 0;
  if (group.rules.length === 0 || text.length === 0) return may;
  // a rule runs when every one of its set entries hit (they all occur in any of its matches)
  const counts = group.counts;
  const touched: number[] = [];
  try {
    for (const { set, ruleIndex } of group.sets) {
      const hits = set.match(text);
      for (let h = 0; h < hits.length; h++) {
        const idx = ruleIndex[hits[h]];
        if (idx < 0) may |= idx === MARK_BASE64 ? MAY_BASE64 : MAY_PERCENT;
        else if (counts[idx]++ === 0) touched.push(idx);
      }
    }
    for (const idx of touched) {
      if (counts[idx] !== group.required[idx]) continue;
      const rule = group.rules[idx];
      if (source !== undefined && rule.sources !== null && !rule.sources.has(source)) continue;
      collect(rule, text, out);
    }
  } finally {
    for (const idx of touched) counts[idx] = 0;
  }
  for (let k = 0; k < group.always.length; k++) {
    const rule = group.rules[group.always[k]];
    if (source !== undefined && rule.sources !== null && !rule.sources.has(source)) continue;
    collect(rule, text, out);
  }
  return may;
}

function collect(rule: CompiledRule, text: string, out: RuleMatch[]): void {
  const re = rule.re;
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      // an empty match finds nothing worth reporting; step past it so the loop ends
      re.lastIndex = end + 1;
      if (re.lastIndex > text.length) break;
      continue;
    }
    if (rule.validate !== undefined) {
      const subject = m.length > 1 && m[1] !== undefined ? m[1] : m[0];
      if (!rule.validate(subject, rule)) continue;
    }
    out.push({ rule, start, end });
  }
  re.lastIndex = 0;
}
