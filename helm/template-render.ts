// A small renderer for the subset of Go templates + Helm/Sprig functions our chart uses, so the chart
// tests can render every manifest and validate the objects, on a machine without the helm binary.
// Test support only: it is not shipped and does not try to be Helm. Anything outside the subset (an
// unknown function, a field on a nil value, an unclosed block) throws, so a template change that needs
// more support fails loudly instead of rendering something helm would not.
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';

// ------------------------------------------------------------------ lexing

type Piece = { kind: 'text'; text: string } | { kind: 'action'; src: string; at: number };

function lex(src: string): Piece[] {
  const out: Piece[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open === -1) {
      out.push({ kind: 'text', text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    const trimLeft = src[open + 2] === '-' && /\s/.test(src[open + 3] ?? '');
    if (trimLeft) text = text.replace(/\s+$/, '');
    out.push({ kind: 'text', text });
    const close = findClose(src, open + 2);
    const trimRight = src[close - 1] === '-' && /\s/.test(src[close - 2] ?? '');
    const inner = src.slice(open + 2 + (trimLeft ? 1 : 0), close - (trimRight ? 1 : 0)).trim();
    out.push({ kind: 'action', src: inner, at: open });
    i = close + 2;
    if (trimRight) while (i < src.length && /\s/.test(src[i])) i++;
  }
  return out;
}

/** index of the `}}` closing an action, skipping string literals and comments */
function findClose(src: string, from: number): number {
  let i = from;
  while (i < src.length) {
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      if (end === -1) break;
      i = end + 2;
      continue;
    }
    const ch = src[i];
    if (ch === '"' || ch === '`') {
      i++;
      while (i < src.length && src[i] !== ch) i += src[i] === '\\' && ch === '"' ? 2 : 1;
      i++;
      continue;
    }
    if (src.startsWith('}}', i)) return i;
    i++;
  }
  throw new Error(`unclosed action at offset ${from - 2}`);
}

// ------------------------------------------------------------------ parsing

type Operand =
  | { t: 'field'; base: 'dot' | 'root' | 'var'; name?: string; path: string[] }
  | { t: 'lit'; v: unknown }
  | { t: 'ident'; name: string }
  | { t: 'paren'; pipe: Pipeline };
type Command = Operand[];
interface Pipeline {
  decl?: { names: string[]; assign: boolean };
  cmds: Command[];
}

type Node =
  | { t: 'text'; text: string }
  | { t: 'out'; pipe: Pipeline }
  | { t: 'if'; branches: { cond: Pipeline; body: Node[] }[]; otherwise?: Node[] }
  | { t: 'with'; pipe: Pipeline; body: Node[]; otherwise?: Node[] }
  | { t: 'range'; pipe: Pipeline; body: Node[]; otherwise?: Node[] };

function tokenize(src: string): string[] {
  const tokens: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|:=|=|\||\(|\)|,|[^\s|(),=]+)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < src.length && (m = re.exec(src))) tokens.push(m[1]);
  if (src.slice(re.lastIndex).trim() !== '') throw new Error(`cannot tokenize: ${src}`);
  return tokens;
}

function parsePipeline(src: string): Pipeline {
  const tokens = tokenize(src);
  let pos = 0;
  const pipe: Pipeline = { cmds: [] };
  // `$a := …`, `$i, $v := …`
  const declEnd = tokens.findIndex((t) => t === ':=' || t === '=');
  if (declEnd > 0 && tokens.slice(0, declEnd).every((t) => t === ',' || t.startsWith('$'))) {
    pipe.decl = { names: tokens.slice(0, declEnd).filter((t) => t !== ','), assign: tokens[declEnd] === '=' };
    pos = declEnd + 1;
  }
  const parseCmds = (stop?: string): Command[] => {
    const cmds: Command[] = [[]];
    while (pos < tokens.length && tokens[pos] !== stop) {
      const tok = tokens[pos++];
      if (tok === '|') cmds.push([]);
      else if (tok === '(') {
        const inner = parseCmds(')');
        pos++; // ')'
        cmds.at(-1)!.push({ t: 'paren', pipe: { cmds: inner } });
      } else cmds.at(-1)!.push(operand(tok));
    }
    if (cmds.some((c) => c.length === 0)) throw new Error(`empty command in pipeline: ${src}`);
    return cmds;
  };
  pipe.cmds = parseCmds();
  return pipe;
}

function operand(tok: string): Operand {
  if (tok.startsWith('"')) return { t: 'lit', v: JSON.parse(tok) };
  if (tok.startsWith('`')) return { t: 'lit', v: tok.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(tok)) return { t: 'lit', v: Number(tok) };
  if (tok === 'true' || tok === 'false') return { t: 'lit', v: tok === 'true' };
  if (tok === 'nil') return { t: 'lit', v: undefined };
  if (tok === '.') return { t: 'field', base: 'dot', path: [] };
  if (tok.startsWith('.')) return { t: 'field', base: 'dot', path: tok.slice(1).split('.') };
  if (tok.startsWith('$')) {
    const [name, ...path] = tok.split('.');
    return name === '$' ? { t: 'field', base: 'root', path } : { t: 'field', base: 'var', name, path };
  }
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(tok)) return { t: 'ident', name: tok };
  throw new Error(`unsupported token: ${tok}`);
}

function parse(pieces: Piece[], defines: Map<string, Node[]>): Node[] {
  let i = 0;
  const block = (): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (i < pieces.length) {
      const p = pieces[i++];
      if (p.kind === 'text') {
        if (p.text) nodes.push({ t: 'text', text: p.text });
        continue;
      }
      const a = p.src;
      if (a.startsWith('/*')) continue;
      if (a === 'end' || a === 'else' || a.startsWith('else ')) return { nodes, end: a };
      const kw = /^(if|with|range|define)\s+([\s\S]*)$/.exec(a);
      if (!kw) {
        nodes.push({ t: 'out', pipe: parsePipeline(a) });
        continue;
      }
      const [, word, rest] = kw;
      if (word === 'define') {
        const body = block();
        if (body.end !== 'end')
          throw new Error(`define ${rest}: unexpected ${body.end === 'EOF' ? 'end of file' : body.end}`);
        defines.set(JSON.parse(rest.trim()), body.nodes);
      } else if (word === 'if') {
        const node: Extract<Node, { t: 'if' }> = { t: 'if', branches: [] };
        let cond = parsePipeline(rest);
        for (;;) {
          const b = block();
          node.branches.push({ cond, body: b.nodes });
          if (b.end === 'EOF') throw new Error(`unclosed {{ if ${rest} }}`);
          if (b.end === 'end') break;
          if (b.end === 'else') {
            const e = block();
            if (e.end !== 'end')
              throw new Error(e.end === 'EOF' ? `unclosed {{ if ${rest} }}` : 'if: else must be last');
            node.otherwise = e.nodes;
            break;
          }
          const elif = /^else\s+if\s+([\s\S]*)$/.exec(b.end);
          if (!elif) throw new Error(`unsupported: {{ ${b.end} }}`);
          cond = parsePipeline(elif[1]);
        }
        nodes.push(node);
      } else {
        const pipe = parsePipeline(rest);
        const b = block();
        let otherwise: Node[] | undefined;
        if (b.end === 'else') {
          const e = block();
          if (e.end !== 'end') throw new Error(`${word}: else must be last`);
          otherwise = e.nodes;
        } else if (b.end !== 'end') {
          throw new Error(
            b.end === 'EOF' ? `unclosed {{ ${word} ${rest} }}` : `${word}: unexpected ${b.end}`,
          );
        }
        nodes.push({ t: word as 'with' | 'range', pipe, body: b.nodes, otherwise });
      }
    }
    return { nodes, end: 'EOF' };
  };
  const top = block();
  if (top.end !== 'EOF') throw new Error(`unexpected {{ ${top.end} }} at top level`);
  return top.nodes;
}

// ------------------------------------------------------------------ evaluation

export interface RenderContext {
  Values: Record<string, unknown>;
  Release: { Name: string; Namespace: string; Service: string; IsInstall: boolean; IsUpgrade: boolean };
  Chart: { Name: string; Version: string; AppVersion: string };
}

const isEmpty = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === false ||
  v === 0 ||
  v === '' ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);

function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(text).join(' ')}]`;
  return `map[${Object.keys(v as object)
    .sort()
    .map((k) => `${k}:${text((v as Record<string, unknown>)[k])}`)
    .join(' ')}]`;
}

function sortedJson(v: unknown): string {
  return JSON.stringify(v, (_k, val) =>
    val && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(
          Object.keys(val)
            .sort()
            .map((k) => [k, val[k]]),
        )
      : val,
  );
}

function printf(format: string, ...args: unknown[]): string {
  let n = 0;
  return format.replace(/%([svdq%])/g, (_m, verb: string) => {
    if (verb === '%') return '%';
    const a = args[n++];
    return verb === 'q' ? JSON.stringify(text(a)) : text(a);
  });
}

const indentLines = (n: number, s: string) =>
  s
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');

type Fn = (...args: any[]) => unknown;

export class ChartRenderer {
  readonly #defines = new Map<string, Node[]>();
  readonly #files = new Map<string, Node[]>();
  readonly #fns: Record<string, Fn>;

  constructor(files: Record<string, string>) {
    for (const [name, src] of Object.entries(files)) this.#files.set(name, parse(lex(src), this.#defines));
    this.#fns = {
      include: (name: string, ctx: unknown) => {
        const body = this.#defines.get(name);
        if (!body) throw new Error(`include: no template "${name}"`);
        return this.#run(body, ctx, ctx, [new Map([['$', ctx]])]);
      },
      default: (dflt: unknown, v?: unknown) => (isEmpty(v) ? dflt : v),
      trunc: (n: number, s: string) => (n >= 0 ? s.slice(0, n) : s.slice(n)),
      trimSuffix: (suffix: string, s: string) =>
        s.endsWith(suffix) ? s.slice(0, s.length - suffix.length) : s,
      contains: (sub: string, s: string) => text(s).includes(text(sub)),
      replace: (from: string, to: string, s: string) => text(s).split(from).join(to),
      printf: (format: string, ...args: unknown[]) => printf(format, ...args),
      quote: (...xs: unknown[]) => xs.map((x) => JSON.stringify(text(x))).join(' '),
      toYaml: (v: unknown) =>
        v === undefined || v === null ? 'null' : stringify(v, { sortMapEntries: true }).replace(/\n$/, ''),
      toJson: (v: unknown) => sortedJson(v),
      nindent: (n: number, s: string) => '\n' + indentLines(n, text(s)),
      indent: (n: number, s: string) => indentLines(n, text(s)),
      sha256sum: (s: string) => createHash('sha256').update(text(s)).digest('hex'),
      eq: (a: unknown, ...bs: unknown[]) => bs.some((b) => a === b),
      ne: (a: unknown, b: unknown) => a !== b,
      not: (v: unknown) => isEmpty(v),
      and: (...xs: unknown[]) => xs.find((x) => isEmpty(x)) ?? xs.at(-1),
      or: (...xs: unknown[]) => xs.find((x) => !isEmpty(x)) ?? xs.at(-1),
      empty: (v: unknown) => isEmpty(v),
      uniq: (xs: unknown[]) => [...new Set(xs)],
      prepend: (xs: unknown[], v: unknown) => [v, ...(xs ?? [])],
      join: (sep: string, xs: unknown[]) => (xs ?? []).map(text).join(sep),
      list: (...xs: unknown[]) => xs,
    };
  }

  /** render one file of the chart (e.g. "templates/deployment.yaml") */
  render(file: string, ctx: RenderContext): string {
    const nodes = this.#files.get(file);
    if (!nodes) throw new Error(`no file ${file}`);
    return this.#run(nodes, ctx, ctx, [new Map([['$', ctx]])]).replace(/<no value>/g, '');
  }

  #run(nodes: Node[], dot: unknown, root: unknown, scopes: Map<string, unknown>[]): string {
    let out = '';
    const inner = () => [...scopes, new Map<string, unknown>()];
    for (const n of nodes) {
      if (n.t === 'text') out += n.text;
      else if (n.t === 'out') {
        const v = this.#pipe(n.pipe, dot, root, scopes);
        if (!n.pipe.decl) out += text(v);
      } else if (n.t === 'if') {
        const hit = n.branches.find((b) => !isEmpty(this.#pipe(b.cond, dot, root, scopes)));
        if (hit) out += this.#run(hit.body, dot, root, inner());
        else if (n.otherwise) out += this.#run(n.otherwise, dot, root, inner());
      } else if (n.t === 'with') {
        const v = this.#pipe(n.pipe, dot, root, scopes);
        if (!isEmpty(v)) out += this.#run(n.body, v, root, inner());
        else if (n.otherwise) out += this.#run(n.otherwise, dot, root, inner());
      } else {
        const decl = n.pipe.decl;
        const v = this.#pipe({ cmds: n.pipe.cmds }, dot, root, scopes);
        const entries: [unknown, unknown][] = Array.isArray(v)
          ? v.map((x, i) => [i, x])
          : v && typeof v === 'object'
            ? Object.keys(v)
                .sort()
                .map((k) => [k, (v as Record<string, unknown>)[k]])
            : [];
        if (v !== undefined && v !== null && typeof v !== 'object') throw new Error(`range over ${typeof v}`);
        if (entries.length === 0 && n.otherwise) out += this.#run(n.otherwise, dot, root, inner());
        for (const [k, x] of entries) {
          const scope = new Map<string, unknown>();
          if (decl?.names.length === 1) scope.set(decl.names[0], x);
          if (decl?.names.length === 2) {
            scope.set(decl.names[0], k);
            scope.set(decl.names[1], x);
          }
          out += this.#run(n.body, x, root, [...scopes, scope]);
        }
      }
    }
    return out;
  }

  #pipe(p: Pipeline, dot: unknown, root: unknown, scopes: Map<string, unknown>[]): unknown {
    let prev: unknown;
    let first = true;
    for (const cmd of p.cmds) {
      prev = this.#cmd(cmd, dot, root, scopes, first ? [] : [prev]);
      first = false;
    }
    if (p.decl) {
      const name = p.decl.names[0];
      if (p.decl.assign) {
        const scope = [...scopes].reverse().find((s) => s.has(name));
        if (!scope) throw new Error(`assignment to undeclared ${name}`);
        scope.set(name, prev);
      } else scopes.at(-1)!.set(name, prev);
    }
    return prev;
  }

  #cmd(cmd: Command, dot: unknown, root: unknown, scopes: Map<string, unknown>[], piped: unknown[]): unknown {
    const [head, ...rest] = cmd;
    if (head.t === 'ident') {
      const fn = this.#fns[head.name];
      if (!fn) throw new Error(`unsupported function "${head.name}"`);
      return fn(...rest.map((o) => this.#operand(o, dot, root, scopes)), ...piped);
    }
    if (rest.length > 0 || piped.length > 0) throw new Error('only functions take arguments');
    return this.#operand(head, dot, root, scopes);
  }

  #operand(o: Operand, dot: unknown, root: unknown, scopes: Map<string, unknown>[]): unknown {
    if (o.t === 'lit') return o.v;
    if (o.t === 'paren') return this.#pipe(o.pipe, dot, root, scopes);
    if (o.t === 'ident') {
      const fn = this.#fns[o.name];
      if (!fn) throw new Error(`unsupported function "${o.name}"`);
      return fn();
    }
    let base: unknown;
    if (o.base === 'dot') base = dot;
    else if (o.base === 'root') base = root;
    else {
      const scope = [...scopes].reverse().find((s) => s.has(o.name!));
      if (!scope) throw new Error(`undefined variable ${o.name}`);
      base = scope.get(o.name!);
    }
    let v = base;
    for (const [i, key] of o.path.entries()) {
      if (v === undefined || v === null) {
        throw new Error(`nil pointer evaluating ${o.path.slice(0, i).join('.') || '.'}.${key}`);
      }
      if (typeof v !== 'object') throw new Error(`can't evaluate field ${key} in ${typeof v}`);
      v = (v as Record<string, unknown>)[key];
    }
    return v;
  }
}
