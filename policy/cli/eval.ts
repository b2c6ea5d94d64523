// `inferguard eval [--policy P] CORPUS.jsonl… [--json]`: measures a policy on labelled prompts —
// detection rate on attacks, false-positive rate on benign rows, per category and per rule, and scan
// time (SPEC §2). A row is flagged when the scan has any `block` finding.
//
// Each row is scanned as one request through the same path the sidecar uses (scanRequest), so
// `sources:` restrictions apply: a row's text is the user's message unless the row says otherwise with
// an optional "scanAs" field, and rows of category `indirect-injection` default to source `retrieved`,
// because those are payloads planted in documents and tool results, not what a user types
// (docs/rules.md). A row's optional "system" becomes a system message scanned alongside.
import { readFile } from 'node:fs/promises';
import {
  PolicyLoadError,
  defaultPolicy,
  formatProblem,
  loadPolicy,
  scanRequest,
  type CompiledPolicy,
  type RequestExchange,
  type Source,
} from '../index.js';

const USAGE = `usage: inferguard eval [--policy PATH] CORPUS.jsonl… [--json]

Scans every line of each corpus ({"text","label":"attack"|"benign","category"?,"system"?,"scanAs"?})
with the policy (default: the built-in default policy) and prints the detection rate on attacks,
the false-positive rate on benign rows, per category and per rule, and mean/p99 scan time.
A row counts as flagged when any finding has action "block".

flags:
  --policy PATH   policy file or directory (default: built-in default policy)
  --json          print one JSON object instead of tables
  -h, --help      show this help
`;

/** the sources a corpus row may name; rows of category `indirect-injection` default to `retrieved` */
const ROW_SOURCES: readonly Source[] = ['user', 'tool', 'retrieved'];
const INDIRECT_CATEGORY = 'indirect-injection';

export interface CorpusRow {
  text: string;
  label: 'attack' | 'benign';
  category?: string;
  system?: string;
  /** which source the row's text is scanned as (user, tool, retrieved) */
  scanAs?: Source;
}

export interface Rate {
  total: number;
  flagged: number;
  rate: number;
}

export interface EvalReport {
  attack: Rate;
  benign: Rate;
  categories: Record<string, { label: 'attack' | 'benign' | 'mixed' } & Rate>;
  rules: Record<string, { attack: number; benign: number }>;
  scanMs: { mean: number; p99: number };
}

export class CorpusError extends Error {}

/** Parse one JSONL corpus; a malformed line is a CorpusError naming the file and line. */
export function parseCorpus(text: string, file: string): CorpusRow[] {
  const rows: CorpusRow[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new CorpusError(`${where}: not valid JSON`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new CorpusError(`${where}: a line must be a JSON object`);
    }
    const o = v as Record<string, unknown>;
    if (typeof o.text !== 'string') throw new CorpusError(`${where}: "text" must be a string`);
    if (o.label !== 'attack' && o.label !== 'benign') {
      throw new CorpusError(`${where}: "label" must be "attack" or "benign"`);
    }
    if (o.category !== undefined && typeof o.category !== 'string') {
      throw new CorpusError(`${where}: "category" must be a string`);
    }
    if (o.system !== undefined && typeof o.system !== 'string') {
      throw new CorpusError(`${where}: "system" must be a string`);
    }
    if (o.scanAs !== undefined && !ROW_SOURCES.includes(o.scanAs as Source)) {
      throw new CorpusError(
        `${where}: "scanAs" must be one of ${ROW_SOURCES.map((s) => `"${s}"`).join(', ')}`,
      );
    }
    rows.push({
      text: o.text,
      label: o.label,
      category: o.category as string | undefined,
      system: o.system as string | undefined,
      scanAs: o.scanAs as Source | undefined,
    });
  }
  return rows;
}

/** The request a row stands for: an optional system message, then the row's text from its source. */
export function rowExchange(row: CorpusRow): RequestExchange {
  const segments: RequestExchange['segments'] = [];
  if (row.system !== undefined) {
    segments.push({ path: 'messages[0].content', source: 'system', role: 'system', text: row.system });
  }
  const source = row.scanAs ?? (row.category === INDIRECT_CATEGORY ? 'retrieved' : 'user');
  segments.push({
    path: `messages[${segments.length}].content`,
    source,
    role: source === 'user' ? 'user' : 'tool',
    text: row.text,
  });
  return { operation: 'chat', segments, messageCount: segments.length };
}

const round = (x: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

const rate = (flagged: number, total: number): Rate => ({
  total,
  flagged,
  rate: total === 0 ? 0 : round(flagged / total, 4),
});

/** Scan every row and aggregate. Rule counts are rows on which the rule had any finding. */
export function evaluate(policy: CompiledPolicy, rows: CorpusRow[]): EvalReport {
  const byLabel = { attack: { total: 0, flagged: 0 }, benign: { total: 0, flagged: 0 } };
  const cats = new Map<string, { labels: Set<string>; total: number; flagged: number }>();
  const rules = new Map<string, { attack: number; benign: number }>();
  const times: number[] = [];
  for (const row of rows) {
    const req = rowExchange(row);
    const t0 = process.hrtime.bigint();
    const verdict = scanRequest(policy, req);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const flagged = verdict.findings.some((f) => f.action === 'block');
    byLabel[row.label].total++;
    if (flagged) byLabel[row.label].flagged++;
    const name = row.category ?? row.label;
    let c = cats.get(name);
    if (!c) cats.set(name, (c = { labels: new Set(), total: 0, flagged: 0 }));
    c.labels.add(row.label);
    c.total++;
    if (flagged) c.flagged++;
    for (const id of new Set(verdict.findings.map((f) => f.rule))) {
      let r = rules.get(id);
      if (!r) rules.set(id, (r = { attack: 0, benign: 0 }));
      r[row.label]++;
    }
  }
  const sorted = [...times].sort((a, b) => a - b);
  const mean = times.length === 0 ? 0 : times.reduce((a, b) => a + b, 0) / times.length;
  const p99 =
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];
  const categories: EvalReport['categories'] = {};
  for (const [name, c] of [...cats].sort(([a], [b]) => a.localeCompare(b))) {
    const label = c.labels.size === 1 ? ([...c.labels][0] as 'attack' | 'benign') : 'mixed';
    categories[name] = { label, ...rate(c.flagged, c.total) };
  }
  const ruleOut: EvalReport['rules'] = {};
  for (const [id, r] of [...rules].sort(([a], [b]) => a.localeCompare(b))) ruleOut[id] = r;
  return {
    attack: rate(byLabel.attack.flagged, byLabel.attack.total),
    benign: rate(byLabel.benign.flagged, byLabel.benign.total),
    categories,
    rules: ruleOut,
    scanMs: { mean: round(mean, 4), p99: round(p99, 4) },
  };
}

const pct = (r: number): string => `${(r * 100).toFixed(1)} %`;

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** The human-readable report: overall rates, then categories, then rules, then timing. */
export function formatReport(r: EvalReport, policyName: string): string {
  const out: string[] = [];
  out.push(`policy: ${policyName}`);
  out.push(
    `attacks: ${r.attack.flagged}/${r.attack.total} flagged (detection ${pct(r.attack.rate)})   ` +
      `benign: ${r.benign.flagged}/${r.benign.total} flagged (false positives ${pct(r.benign.rate)})`,
  );
  out.push('');
  out.push(
    table(
      ['category', 'label', 'rows', 'flagged', 'rate'],
      Object.entries(r.categories).map(([name, c]) => [
        name,
        c.label,
        `${c.total}`,
        `${c.flagged}`,
        pct(c.rate),
      ]),
    ),
  );
  out.push('');
  const ruleRows = Object.entries(r.rules).map(([id, c]) => [id, `${c.attack}`, `${c.benign}`]);
  out.push(
    ruleRows.length ? table(['rule', 'attack rows', 'benign rows'], ruleRows) : 'no rule matched any row',
  );
  out.push('');
  out.push(`scan time per row: mean ${r.scanMs.mean.toFixed(3)} ms, p99 ${r.scanMs.p99.toFixed(3)} ms`);
  return out.join('\n') + '\n';
}

export async function run(args: string[]): Promise<number> {
  let policyPath: string | undefined;
  let json = false;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a === '--json') {
      json = true;
    } else if (a === '--policy' || a.startsWith('--policy=')) {
      const v = a === '--policy' ? args[++i] : a.slice('--policy='.length);
      if (!v) {
        process.stderr.write(`inferguard eval: --policy needs a path\n\n${USAGE}`);
        return 2;
      }
      policyPath = v;
    } else if (a.startsWith('-') && a !== '-') {
      process.stderr.write(`inferguard eval: unknown flag ${a}\n\n${USAGE}`);
      return 2;
    } else {
      files.push(a);
    }
  }
  if (files.length === 0) {
    process.stderr.write(`inferguard eval: no corpus file given\n\n${USAGE}`);
    return 2;
  }

  let policy: CompiledPolicy;
  try {
    policy = policyPath === undefined ? defaultPolicy() : await loadPolicy(policyPath);
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return 2;
    }
    throw err;
  }

  const rows: CorpusRow[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      process.stderr.write(
        `inferguard eval: ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? 'cannot read')}\n`,
      );
      return 2;
    }
    try {
      for (const row of parseCorpus(text, file)) rows.push(row);
    } catch (err) {
      if (err instanceof CorpusError) {
        process.stderr.write(`inferguard eval: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
  }

  const report = evaluate(policy, rows);
  process.stdout.write(json ? `${JSON.stringify(report)}\n` : formatReport(report, policy.name));
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
