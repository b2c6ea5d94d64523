// Reading our Dockerfiles and .dockerignore the way `docker build` does, for the packaging tests (test
// support: there is no Docker daemon on the CI machine). Covers the syntax our files use: stages with
// `AS name`, global ARGs in FROM, `\` continuations, `**`/`*` ignore patterns.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const read = (p: string): string => readFileSync(path.join(ROOT, p), 'utf8');

export interface Instruction {
  op: string;
  args: string;
}
export interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Dockerfile → stages of instructions (comments dropped, `\` continuations joined) */
export function parseDockerfile(src: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = src
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, rest] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    if (!op) throw new Error(`unparsable line: ${line}`);
    const upper = op.toUpperCase();
    if (upper === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k] = v ?? '';
    } else if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({
        from: m[1].replace(/^\$\{(\w+)\}$/, (_, k: string) => args[k] ?? `\${${k}}`),
        name: m[2],
        steps: [],
      });
    } else {
      stages.at(-1)!.steps.push({ op: upper, args: rest });
    }
  }
  return { args, stages };
}

/** `COPY [--from=x] SRC… DEST` → its sources and destination */
export function copyArgs(step: Instruction): { from?: string; sources: string[]; dest: string } {
  const parts = step.args.split(/\s+/);
  const from = parts[0].startsWith('--from=') ? parts.shift()!.slice('--from='.length) : undefined;
  return { from, sources: parts.slice(0, -1), dest: parts.at(-1)! };
}

/** .dockerignore as a predicate on context-relative paths */
export function dockerignore(): (p: string) => boolean {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((p) => {
      const re = p
        .replace(/[.+?^${}()|[\]]/g, '\\$&')
        .replace(/\*\*\//g, '\0')
        .replace(/\*/g, '[^/]*')
        .replace(/\0/g, '(?:.*/)?');
      return new RegExp(`^${re}(?:/.*)?$`);
    });
  return (p) => patterns.some((re) => re.test(p));
}
