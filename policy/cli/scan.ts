// `inferguard scan [--policy P] [--direction input|output] [--json]` (SPEC §2): scans stdin.
//
// Exit codes: 0 allowed (including redacted or monitored), 1 blocked, 2 usage or policy error.
// Human output: one line per finding (action, rule, category, [start,end)) then the decision, and the
// redacted text when redacting. Never the matched text itself: the terminal may be logged.
import { readFileSync } from 'node:fs';
import { PolicyLoadError, defaultPolicy, formatProblem, loadPolicy, scanText } from '../index.js';
import type { CompiledPolicy } from '../compile.js';
import type { Direction } from '../types.js';

const USAGE = `usage: inferguard scan [--policy PATH] [--direction input|output] [--json] < TEXT

  --policy PATH      policy file or directory (default: the built-in default policy)
  --direction DIR    input (prompts, default) or output (model responses)
  --json             print {"decision","findings":[{"rule","category","action","start","end"}],"text"?}

Exit status: 0 allowed (also when redacted or only monitored), 1 blocked, 2 usage or policy error.
`;

interface Args {
  policy?: string;
  direction: Direction;
  json: boolean;
}

function parse(args: string[]): Args | string {
  const out: Args = { direction: 'input', json: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string | undefined => inline ?? args[++i];
    switch (name) {
      case '--json':
        out.json = true;
        break;
      case '--policy': {
        const v = value();
        if (!v) return '--policy needs a PATH';
        out.policy = v;
        break;
      }
      case '--direction': {
        const v = value();
        if (v !== 'input' && v !== 'output') return `--direction must be input or output, got "${v ?? ''}"`;
        out.direction = v;
        break;
      }
      default:
        return `unknown argument "${a}"`;
    }
  }
  return out;
}

export async function run(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const parsed = parse(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`inferguard scan: ${parsed}\n${USAGE}`);
    return 2;
  }
  let policy: CompiledPolicy;
  try {
    policy = parsed.policy !== undefined ? await loadPolicy(parsed.policy) : defaultPolicy();
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      process.stderr.write(err.problems.map((p) => `${formatProblem(p)}\n`).join(''));
    } else {
      process.stderr.write(`inferguard scan: ${(err as Error).message}\n`);
    }
    return 2;
  }
  const text = readFileSync(0, 'utf8');
  const result = scanText(policy, text, parsed.direction);
  if (parsed.json) {
    const body: Record<string, unknown> = {
      decision: result.decision,
      findings: result.findings.map((f) => ({
        rule: f.rule,
        category: f.category,
        action: f.action,
        start: f.start,
        end: f.end,
        ...(f.decoded ? { decoded: true } : {}),
      })),
    };
    if (result.text !== undefined) body.text = result.text;
    process.stdout.write(`${JSON.stringify(body)}\n`);
  } else {
    for (const f of result.findings) {
      process.stdout.write(
        `${f.action.padEnd(7)} ${f.rule} (${f.category}) [${f.start},${f.end})${f.decoded ? ' decoded' : ''}${f.message ? `: ${f.message}` : ''}\n`,
      );
    }
    process.stdout.write(`decision: ${result.decision}\n`);
    if (result.text !== undefined) process.stdout.write(`\n${result.text}`);
  }
  return result.decision === 'block' ? 1 : 0;
}
