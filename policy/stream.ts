// Streaming matcher: chunks in, findings as soon as they are certain, and a prefix that is safe to release.
//
// The bound. Let H = the direction's hold-back: the longest possible match of its rules in normalized
// characters (policy/scanners/holdback.ts; unbounded patterns count as limits.maxHoldback, and so does
// the whole group when a rule is longer), at least the leak length and, with URL checks on, 2048.
// After each chunk the matcher scans a window = a few characters of released context + everything held,
// and takes R = the original offset of the H-th normalized character from the end:
//   - a match that starts before R ends before the window does (it is at most H long), so more text
//     cannot change it: it is certain and reported now;
//   - everything before R is released (redactions applied), except that release stops at the start of
//     a redaction still reaching past R, and at the start of the last, unfinished token (a base64/hex/
//     %-encoded or tag-character run must not go out half-decoded), unless that token is over the cap;
//   - a block finding sets `blocked`: nothing more is released, ever, including the matched text.
// So the client waits for at most H normalized characters more than without the guard, and each chunk
// rescans only the window (O(H + chunk)), never the whole stream.
//
// Matches of unbounded patterns longer than limits.maxHoldback may be missed when they straddle the
// release point: that is the documented cap. If the held text itself grows past 2 × maxHoldback
// original characters (e.g. a flood of invisible characters that normalize to nothing), everything but
// the last maxHoldback characters is treated as certain and released after its scan.
import type { Direction, Finding, StreamScanner, StreamStep } from './types.js';
import type { CompiledPolicy } from './compile.js';
import { originalAt } from './normalize.js';
import { applyRedactions, scanTextDetailed } from './scan.js';
import { leakIndexFor, type LeakIndex } from './scanners/leak.js';

/** released characters kept in front of the window so `\b` and `^` see their real neighbour */
const CONTEXT = 32;
/**
 * Length of the last, maybe unfinished, token (non-whitespace run at the end; a base64/hex/%-encoded run
 * or tag characters may still be growing), counted up to `limit`.
 */
function lastTokenLength(s: string, limit: number): number {
  let k = 0;
  while (k < limit && k < s.length) {
    const c = s.charCodeAt(s.length - 1 - k);
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0 || c === 0x3000 || (c >= 0x2000 && c <= 0x200a))
      break;
    k++;
  }
  return k;
}

export interface StreamOptions {
  direction: Direction;
  path?: string;
  systemPrompt?: string;
}

class Matcher implements StreamScanner {
  readonly #p: CompiledPolicy;
  readonly #direction: Direction;
  readonly #path: string | undefined;
  readonly #leak: LeakIndex | null;
  readonly #holdback: number;
  readonly #cap: number;
  /** original text from absolute offset #base: released context, then held text */
  #buf = '';
  #base = 0;
  /** absolute offset up to which text was released */
  #released = 0;
  #blocked = false;
  #ended = false;
  /** certain redact findings not yet released: absolute spans */
  #redactions: Finding[] = [];
  /** keys of findings already reported (rule + absolute start), pruned as text is released */
  #reported = new Map<string, number>();

  constructor(p: CompiledPolicy, opts: StreamOptions) {
    this.#p = p;
    this.#direction = opts.direction;
    this.#path = opts.path;
    const group = opts.direction === 'input' ? p.engine.input : p.engine.output;
    this.#cap = p.limits.maxHoldback > 0 ? p.limits.maxHoldback : 4096;
    this.#holdback = group.holdback;
    const min = p.engine.leakMinChars;
    this.#leak =
      opts.direction === 'output' && min > 0 && opts.systemPrompt
        ? leakIndexFor(opts.systemPrompt, min)
        : null;
  }

  get held(): number {
    return this.#base + this.#buf.length - this.#released;
  }

  /** hold-back in normalized characters (for docs, tests and the sidecar's metrics) */
  get holdback(): number {
    return this.#holdback;
  }

  write(chunk: string): StreamStep {
    if (this.#ended) throw new Error('stream scanner: write() after end()');
    if (this.#blocked) return { release: '', findings: [], blocked: true };
    this.#buf += chunk;
    return this.#step(false);
  }

  end(): StreamStep {
    if (this.#ended) throw new Error('stream scanner: end() called twice');
    this.#ended = true;
    if (this.#blocked) return { release: '', findings: [], blocked: true };
    return this.#step(true);
  }

  #step(final: boolean): StreamStep {
    const base = this.#base;
    const buf = this.#buf;
    const relLocal = this.#released - base; // released boundary inside buf
    const { findings, normalized: n } = scanTextDetailed(this.#p, buf, this.#direction, {
      path: this.#path,
      leak: this.#leak,
    });
    // R: where certainty ends (window-local original offset)
    let certain: number;
    if (final) certain = buf.length;
    else {
      const nLen = n.text.length;
      certain = nLen > this.#holdback ? originalAt(n, nLen - this.#holdback) : 0;
      if (buf.length - relLocal > 2 * this.#cap) certain = Math.max(certain, buf.length - this.#cap);
    }
    const fresh: Finding[] = [];
    for (const f of findings) {
      if (f.start < relLocal) continue; // belongs to released text: handled (or unfixable) already
      const isCertain = final || f.start < certain;
      if (!isCertain) continue;
      const absStart = f.start + base;
      const key = `${f.rule}\u0000${absStart}`;
      if (this.#reported.has(key)) continue;
      this.#reported.set(key, absStart);
      const abs: Finding = { ...f, start: absStart, end: f.end + base };
      fresh.push(abs);
      if (abs.action === 'redact') this.#redactions.push(abs);
      if (abs.action === 'block') this.#blocked = true;
    }
    if (this.#blocked) {
      this.#buf = '';
      this.#base = this.#released;
      this.#redactions = [];
      return { release: '', findings: fresh, blocked: true };
    }
    // release point (absolute)
    let rel = base + certain;
    if (!final) {
      // a token longer than the cap is released like any text (the bound wins)
      const token = lastTokenLength(buf, this.#cap + 1);
      if (token > 0 && token <= this.#cap) rel = Math.min(rel, base + buf.length - token);
      for (const r of this.#redactions) if (r.start < rel && r.end > rel) rel = Math.min(rel, r.start);
    }
    if (rel <= this.#released) return { release: '', findings: fresh, blocked: false };
    const release = this.#render(this.#released, rel);
    this.#released = rel;
    // keep a little released context in front of the held text
    const newBase = Math.max(base, rel - CONTEXT);
    this.#buf = buf.slice(newBase - base);
    this.#base = newBase;
    for (const [k, at] of this.#reported) if (at < newBase) this.#reported.delete(k);
    return { release, findings: fresh, blocked: false };
  }

  /** original text [from, to) (absolute), with the redactions inside it applied */
  #render(from: number, to: number): string {
    const text = this.#buf.slice(from - this.#base, to - this.#base);
    const inside: Finding[] = [];
    const keep: Finding[] = [];
    for (const r of this.#redactions) {
      if (r.end <= to) inside.push({ ...r, start: Math.max(r.start, from) - from, end: r.end - from });
      else keep.push(r);
    }
    this.#redactions = keep;
    return inside.length > 0 ? applyRedactions(text, inside) : text;
  }
}

export function createStreamScanner(p: CompiledPolicy, opts: StreamOptions): StreamScanner {
  return new Matcher(p, opts);
}
