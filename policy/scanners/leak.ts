// System-prompt leak detection: an output that repeats at least `minChars` consecutive characters of the
// request's system prompt (both normalized and lower-cased, so re-spacing, homoglyphs and case changes do
// not hide a copy).
//
// The system prompt's every window of `minChars` characters goes into a hash set (polynomial rolling
// hash); the output is hashed the same way and each hit is verified by a real comparison, then extended to
// the longest common run. Build O(prompt), find O(output): no quadratic comparison.
import { normalize } from '../normalize.js';

const BASE = 0x01000193;

function pow(base: number, exp: number): number {
  let r = 1;
  for (let i = 0; i < exp; i++) r = Math.imul(r, base);
  return r;
}

/** lower-case without changing the length (offsets must stay valid) */
function fold(s: string): string {
  const l = s.toLowerCase();
  return l.length === s.length ? l : s;
}

export class LeakIndex {
  readonly minChars: number;
  readonly #prompt: string;
  readonly #hashes = new Map<number, number>();
  readonly #drop: number;

  constructor(systemPrompt: string, minChars: number) {
    this.minChars = minChars;
    this.#prompt = fold(normalize(systemPrompt).text);
    this.#drop = pow(BASE, minChars - 1);
    const p = this.#prompt;
    if (minChars <= 0 || p.length < minChars) return;
    let h = 0;
    for (let i = 0; i < p.length; i++) {
      if (i >= minChars) h = (h - Math.imul(p.charCodeAt(i - minChars), this.#drop)) | 0;
      h = (Math.imul(h, BASE) + p.charCodeAt(i)) | 0;
      if (i >= minChars - 1 && !this.#hashes.has(h)) this.#hashes.set(h, i - minChars + 1);
    }
  }

  get empty(): boolean {
    return this.#hashes.size === 0;
  }

  /**
   * Spans [start, end) of `text` (already normalized) that repeat the system prompt, each at least
   * `minChars` long, non-overlapping, in order. `from` skips spans starting earlier (streaming).
   */
  find(text: string, from = 0): [number, number][] {
    const out: [number, number][] = [];
    const n = this.minChars;
    if (this.#hashes.size === 0 || text.length - from < n) return out;
    const t = fold(text);
    const p = this.#prompt;
    let h = 0;
    let i = from;
    let filled = 0;
    while (i < t.length) {
      if (filled >= n) h = (h - Math.imul(t.charCodeAt(i - n), this.#drop)) | 0;
      h = (Math.imul(h, BASE) + t.charCodeAt(i)) | 0;
      filled++;
      i++;
      if (filled < n) continue;
      const start = i - n;
      const at = this.#hashes.get(h);
      if (at === undefined) continue;
      const window = t.slice(start, i);
      let pos = p.startsWith(window, at) ? at : p.indexOf(window);
      if (pos < 0) continue;
      // extend to the longest common run with this occurrence
      let end = i;
      pos += n;
      while (end < t.length && pos < p.length && t.charCodeAt(end) === p.charCodeAt(pos)) {
        end++;
        pos++;
      }
      out.push([start, end]);
      // restart hashing after the span
      i = end;
      h = 0;
      filled = 0;
    }
    return out;
  }
}
