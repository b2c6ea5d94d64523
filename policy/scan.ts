// Scanning and decisions: text → findings → one decision (block > redact > monitor > allow).
//
// Per text: normalize → pattern rules (RE2 sets) → `allow` rules suppress the findings whose span they
// contain → encoded runs (base64/hex/%-encoding, HTML character references, \uXXXX escapes) and hidden tag text are decoded and scanned again, up to
// limits.maxDecodeDepth levels and limits.maxDecodedBytes decoded characters per text; their findings
// cover the encoded run in the original and carry `decoded: true` → output only: URL checks, system-prompt
// leak. Policy `mode: monitor` turns block/redact into monitor on every finding.
//
// Redaction replaces each redacted span of the original text with `[REDACTED:<rule id>]`; overlapping
// spans merge and keep the first rule's id. A redact finding in decoded content redacts the whole encoded
// run.
import type {
  Action,
  Decision,
  Direction,
  Finding,
  RequestExchange,
  RequestVerdict,
  ResponseExchange,
  ResponseVerdict,
  ScanContext,
  ScanResult,
  Source,
  ToolCall,
  Mode,
} from './types.js';
import type { CompiledPolicy, RuleGroup } from './compile.js';
import { findEncodedRuns, normalize, toOriginal, type EncodedRun, type NormalizedText } from './normalize.js';

const NO_RUNS: readonly EncodedRun[] = Object.freeze([]);
const NO_HIDDEN: NormalizedText['hidden'] = Object.freeze([]);
import {
  MAY_BASE64,
  MAY_ENTITY,
  MAY_ESCAPE,
  MAY_PERCENT,
  matchRules,
  type RuleMatch,
} from './scanners/patterns.js';
import { leakIndexFor, type LeakIndex } from './scanners/leak.js';
import { scanUrls } from './scanners/urls.js';
import { checkCall, checkDefinitions } from './scanners/tools.js';

const RANK: Record<Action, number> = { allow: 0, monitor: 1, redact: 2, block: 3 };

export function effectiveAction(action: Action, mode: Mode): Action {
  return mode === 'monitor' && (action === 'block' || action === 'redact') ? 'monitor' : action;
}

/** block > redact > monitor > allow over the findings' (effective) actions. */
export function decide(findings: readonly Finding[]): Decision {
  let best = 0;
  for (const f of findings) {
    const r = RANK[f.action];
    if (r > best) best = r;
  }
  return best === 3 ? 'block' : best === 2 ? 'redact' : best === 1 ? 'monitor' : 'allow';
}

/** The text with every redact finding's span replaced by `[REDACTED:<rule id>]`. */
export function applyRedactions(text: string, findings: readonly Finding[]): string {
  const spans = findings
    .filter((f) => f.action === 'redact' && f.start >= 0)
    .sort((a, b) => a.start - b.start || b.end - a.end);
  if (spans.length === 0) return text;
  let out = '';
  let pos = 0;
  for (let k = 0; k < spans.length; k++) {
    const f = spans[k];
    if (f.end <= pos) continue; // inside a span already redacted
    const start = Math.max(f.start, pos);
    let end = f.end;
    // merge overlaps
    while (k + 1 < spans.length && spans[k + 1].start < end) end = Math.max(end, spans[++k].end);
    out += text.slice(pos, start) + `[REDACTED:${f.rule}]`;
    pos = end;
  }
  return out + text.slice(pos);
}

interface Budget {
  left: number;
}

/** Where findings of one scan go and how they are labelled. */
interface Sink {
  readonly group: RuleGroup;
  readonly direction: Direction;
  readonly source: Source | undefined;
  readonly path: string | undefined;
  readonly mode: Mode;
  readonly maxDepth: number;
  readonly out: Finding[];
  /** dedupe of decoded findings (many matches in one run map to the same span); made on first use */
  seen: Set<string> | null;
}

function contained(spans: readonly RuleMatch[], start: number, end: number): boolean {
  for (const a of spans) if (a.start <= start && end <= a.end) return true;
  return false;
}

function pushFinding(sink: Sink, m: RuleMatch, start: number, end: number, decoded: boolean): void {
  if (decoded) {
    const key = `${m.rule.id}\u0000${start}\u0000${end}`;
    sink.seen ??= new Set();
    if (sink.seen.has(key)) return;
    sink.seen.add(key);
  }
  const f: Finding = {
    rule: m.rule.id,
    category: m.rule.category,
    action: effectiveAction(m.rule.action, sink.mode),
    direction: sink.direction,
    start,
    end,
  };
  if (m.rule.message !== undefined) f.message = m.rule.message;
  if (sink.path !== undefined) f.path = sink.path;
  if (decoded) f.decoded = true;
  sink.out.push(f);
}

/**
 * Scan one level of text. `span` is the original span findings report when this text is decoded content
 * (null at the top level). Returns the normalized text (the leak scanner reuses it).
 */
function scanLevel(
  sink: Sink,
  text: string,
  depth: number,
  span: [number, number] | null,
  budget: Budget,
): NormalizedText {
  const n = normalize(text);
  const matches: RuleMatch[] = [];
  const may = matchRules(sink.group, n, sink.source, matches);
  let allows: RuleMatch[] | null = null;
  for (const m of matches) if (m.rule.action === 'allow') (allows ??= []).push(m);
  for (const m of matches) {
    if (m.rule.action === 'allow') continue;
    if (allows !== null && contained(allows, m.start, m.end)) continue;
    if (span !== null) pushFinding(sink, m, span[0], span[1], true);
    else {
      const [s, e] = toOriginal(n, m.start, m.end);
      pushFinding(sink, m, s, e, false);
    }
  }
  if (depth < sink.maxDepth && budget.left > 0) {
    // the set's markers tell whether a base64/hex or %-encoded run, an HTML reference or a \u escape can
    // exist at all (0 also when the direction has no rules: nothing could be found in decoded text)
    const runs =
      may === 0
        ? NO_RUNS
        : findEncodedRuns(n.text, budget.left, {
            base64: (may & MAY_BASE64) !== 0,
            percent: (may & MAY_PERCENT) !== 0,
            html: (may & MAY_ENTITY) !== 0,
            escape: (may & MAY_ESCAPE) !== 0,
          });
    for (const run of runs) {
      if (allows !== null && contained(allows, run.start, run.end)) continue;
      budget.left -= run.decoded.length;
      scanLevel(sink, run.decoded, depth + 1, span ?? toOriginal(n, run.start, run.end), budget);
    }
    for (const h of n.hidden) {
      if (budget.left <= 0) break;
      budget.left -= h.text.length;
      scanLevel(sink, h.text, depth + 1, span ?? [h.start, h.end], budget);
    }
  }
  return n;
}

/** the text as given, as a NormalizedText with the identity map */
function unnormalized(text: string): NormalizedText {
  return { text, map: null, originalLength: text.length, textLength: text.length, hidden: NO_HIDDEN };
}

export interface TextScanOptions {
  source?: Source;
  path?: string;
  leak?: LeakIndex | null;
}

/** Findings for one text, in order of position (not yet decided). */
export function scanTextFindings(
  p: CompiledPolicy,
  text: string,
  direction: Direction,
  opts: TextScanOptions = {},
): Finding[] {
  return scanTextDetailed(p, text, direction, opts).findings;
}

/** As scanTextFindings, also returning the normalized top-level text (the streaming matcher needs it). */
export function scanTextDetailed(
  p: CompiledPolicy,
  text: string,
  direction: Direction,
  opts: TextScanOptions = {},
): { findings: Finding[]; normalized: NormalizedText } {
  const engine = p.engine;
  const sink: Sink = {
    group: direction === 'input' ? engine.input : engine.output,
    direction,
    // `sources` narrow input rules only (types.ts): output text is all the model's; input text given
    // without a source (`inferguard scan`, `policy test`, scanText) is the user's
    source: direction === 'input' ? (opts.source ?? 'user') : undefined,
    path: opts.path,
    mode: p.mode,
    maxDepth: p.limits.maxDecodeDepth,
    out: [],
    seen: null,
  };
  // nothing reads the normalized text when the direction has no rules and no output scanner needs it
  // (the empty policy): skip normalization and decoding entirely
  const idle =
    sink.group.rules.length === 0 &&
    (direction === 'input' || (engine.urls === null && !(opts.leak && !opts.leak.empty)));
  const n = idle ? unnormalized(text) : scanLevel(sink, text, 0, null, { left: p.limits.maxDecodedBytes });
  if (direction === 'output') {
    if (engine.urls !== null) {
      for (const u of scanUrls(text, engine.urls)) {
        const f: Finding = {
          rule: u.rule,
          category: u.category,
          action: effectiveAction('block', p.mode),
          direction,
          start: u.start,
          end: u.end,
          message: u.message,
        };
        if (opts.path !== undefined) f.path = opts.path;
        sink.out.push(f);
      }
    }
    if (opts.leak && !opts.leak.empty) {
      for (const [s, e] of opts.leak.find(n.text)) {
        const [os, oe] = toOriginal(n, s, e);
        const f: Finding = {
          rule: 'leak.system-prompt',
          category: 'leak',
          action: effectiveAction('block', p.mode),
          direction,
          start: os,
          end: oe,
          message: 'output repeats the system prompt',
        };
        if (opts.path !== undefined) f.path = opts.path;
        sink.out.push(f);
      }
    }
  }
  if (sink.out.length > 1) sink.out.sort((a, b) => a.start - b.start || a.end - b.end);
  return { findings: sink.out, normalized: n };
}

function leakIndex(p: CompiledPolicy, ctx?: ScanContext): LeakIndex | null {
  const min = p.engine.leakMinChars;
  if (min <= 0 || !ctx?.systemPrompt) return null;
  return leakIndexFor(ctx.systemPrompt, min);
}

export function scanText(
  p: CompiledPolicy,
  text: string,
  direction: Direction,
  ctx?: ScanContext,
): ScanResult {
  const findings = scanTextFindings(p, text, direction, {
    source: ctx?.source,
    leak: direction === 'output' ? leakIndex(p, ctx) : null,
  });
  const decision = decide(findings);
  const result: ScanResult = { decision, findings };
  if (decision === 'redact') result.text = applyRedactions(text, findings);
  return result;
}

function limitFinding(p: CompiledPolicy, rule: 'maxRequestBytes' | 'maxMessages', message: string): Finding {
  return {
    rule: `limits.${rule}`,
    category: 'limits',
    action: effectiveAction('block', p.mode),
    direction: 'input',
    start: -1,
    end: -1,
    message,
  };
}

/**
 * Limits: over maxRequestBytes or maxMessages (0 = no limit) the verdict is a block with `limitExceeded`
 * and nothing else is scanned. In monitor mode the limit is only recorded and scanning goes on.
 * Output tokens: with limits.maxOutputTokens > 0, a request that asks for more, or sets no limit, gets
 * `maxOutputTokens` = the cap (the adapter rewrites max_tokens); monitor mode changes nothing.
 */
export function scanRequest(p: CompiledPolicy, req: RequestExchange): RequestVerdict {
  const findings: Finding[] = [];
  const verdict: RequestVerdict = { decision: 'allow', findings, redactions: new Map(), removeTools: [] };
  const lim = p.limits;
  const enforce = p.mode === 'enforce';
  if (lim.maxRequestBytes > 0 && req.bytes !== undefined && req.bytes > lim.maxRequestBytes) {
    findings.push(limitFinding(p, 'maxRequestBytes', 'request body over limits.maxRequestBytes'));
    if (enforce) verdict.limitExceeded = 'maxRequestBytes';
  }
  if (lim.maxMessages > 0 && req.messageCount !== undefined && req.messageCount > lim.maxMessages) {
    findings.push(limitFinding(p, 'maxMessages', 'request has more messages than limits.maxMessages'));
    if (enforce) verdict.limitExceeded ??= 'maxMessages';
  }
  if (verdict.limitExceeded !== undefined) {
    verdict.decision = 'block';
    return verdict;
  }
  if (
    enforce &&
    lim.maxOutputTokens > 0 &&
    (req.maxOutputTokens === undefined || req.maxOutputTokens > lim.maxOutputTokens)
  ) {
    verdict.maxOutputTokens = lim.maxOutputTokens;
  }
  const segFindings: Finding[][] = [];
  for (const seg of req.segments) {
    const f = scanTextFindings(p, seg.text, 'input', { source: seg.source, path: seg.path });
    segFindings.push(f);
    for (const x of f) findings.push(x);
  }
  if (req.tools && req.tools.length > 0) {
    const { remove, findings: tf } = checkDefinitions(p.engine.tools, req.tools);
    verdict.removeTools = remove;
    for (const x of tf) findings.push(x);
  }
  for (const call of req.toolCalls ?? [])
    for (const x of checkCall(p.engine.tools, call, 'input', p.mode)) findings.push(x);
  verdict.decision = decide(findings);
  if (verdict.decision === 'redact') {
    req.segments.forEach((seg, k) => {
      if (segFindings[k].some((f) => f.action === 'redact'))
        verdict.redactions.set(seg.path, applyRedactions(seg.text, segFindings[k]));
    });
  }
  return verdict;
}

/**
 * Response: output segments (pattern rules, URLs, leak), tool calls (tool policy), and the text of each
 * call's arguments against the output rules (a secret leaving through a tool argument is still a
 * secret). A redaction inside string arguments is returned under the call's path.
 */
export function scanResponse(p: CompiledPolicy, res: ResponseExchange, ctx?: ScanContext): ResponseVerdict {
  const findings: Finding[] = [];
  const redactable: { path: string; text: string; findings: Finding[] }[] = [];
  const leak = leakIndex(p, ctx);
  for (const seg of res.segments) {
    const f = scanTextFindings(p, seg.text, 'output', { source: seg.source, path: seg.path, leak });
    redactable.push({ path: seg.path, text: seg.text, findings: f });
    for (const x of f) findings.push(x);
  }
  for (const call of res.toolCalls ?? []) {
    const tf = checkCall(p.engine.tools, call, 'output', p.mode);
    for (const x of tf) findings.push(x);
    const args = call.arguments;
    const text = typeof args === 'string' ? args : args !== undefined ? JSON.stringify(args) : '';
    if (text.length > 0) {
      const f = scanTextFindings(p, text, 'output', { source: 'output', path: call.path, leak }).map((x) => ({
        ...x,
        tool: call.name,
      }));
      if (typeof args === 'string') redactable.push({ path: call.path, text, findings: f });
      for (const x of f) findings.push(x);
    }
  }
  const decision = decide(findings);
  const redactions = new Map<string, string>();
  if (decision === 'redact') {
    for (const r of redactable)
      if (r.findings.some((f) => f.action === 'redact'))
        redactions.set(r.path, applyRedactions(r.text, r.findings));
  }
  return { decision, findings, redactions };
}

export function checkToolCall(p: CompiledPolicy, call: ToolCall, direction: Direction): Finding[] {
  return checkCall(p.engine.tools, call, direction, p.mode);
}
