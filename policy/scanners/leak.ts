// System-prompt leak detection: an output that repeats at least `minChars` consecutive characters of the
// request's system prompt (both normalized and lower-cased, so re-spacing, homoglyphs and case changes do
// not hide a copy).
//
// Sampled shingles: with L = minChars, W = ⌈L/2⌉ and k = L − W + 1, any common span of length ≥ L contains
// a window of the prompt of length W that starts at a multiple of k. So only the prompt's windows at
// multiples of k are indexed (≈ 2·|prompt|/L entries), every W-window of the output is looked up with a
// rolling hash, and each hit is verified by a real comparison and extended both ways to the whole common
// run. Build O(prompt / L), find O(output): no quadratic comparison, cheap enough to build per request
// (and recently used indexes are cached: system prompts repeat across requests).
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

function hashAt(s: string, from: number, w: number): number {
  let h = 0;
  for (let i = from; i < from + w; i++) h = (Math.imul(h, BASE) + s.charCodeAt(i)) | 0;
  return h;
}

export class LeakIndex {
  readonly minChars: number;
  readonly #prompt: string;
  readonly #w: number;
  readonly #drop: number;
  /** window hash → prompt positions (multiples of k) */
  readonly #hashes = new Map<number, number[]>();

  constructor(systemPrompt: string, minChars: number) {
    this.minChars = minChars;
    this.#prompt = fold(normalize(systemPrompt).text);
    const w = Math.max(1, Math.ceil(minChars / 2));
    this.#w = w;
    this.#drop = pow(BASE, w - 1);
    const p = this.#prompt;
    if (minChars <= 0 || p.length < minChars) return;
    const k = minChars - w + 1;
    for (let q = 0; q + w <= p.length; q += k) {
      const h = hashAt(p, q, w);
      const at = this.#hashes.get(h);
      if (at === undefined) this.#hashes.set(h, [q]);
      else at.push(q);
    }
  }

  get empty(): boolean {
    return this.#hashes.size === 0;
  }

  /**
   * Spans [start, end) of `text` (already normalized) that repeat the system prompt, each at least
   * `minChars` long, non-overlapping, in order. Spans starting before `from` are not reported.
   */
  find(text: string, from = 0): [number, number][] {
    const out: [number, number][] = [];
    const w = this.#w;
    if (this.#hashes.size === 0 || text.length - from < this.minChars) return out;
    const t = fold(text);
    const p = this.#prompt;
    let floor = from; // extension never reaches back before the previous span or `from`
    let i = from;
    let h = 0;
    let filled = 0;
    while (i < t.length) {
      if (filled >= w) h = (h - Math.imul(t.charCodeAt(i - w), this.#drop)) | 0;
      h = (Math.imul(h, BASE) + t.charCodeAt(i)) | 0;
      filled++;
      i++;
      if (filled < w) continue;
      const at = this.#hashes.get(h);
      if (at === undefined) continue;
      const start = i - w;
      let best: [number, number] | null = null;
      for (const q of at) {
        if (!p.startsWith(t.slice(start, i), q)) continue;
        let s = start;
        let ps = q;
        while (s > floor && ps > 0 && t.charCodeAt(s - 1) === p.charCodeAt(ps - 1)) {
          s--;
          ps--;
        }
        let e = i;
        let pe = q + w;
        while (e < t.length && pe < p.length && t.charCodeAt(e) === p.charCodeAt(pe)) {
          e++;
          pe++;
        }
        if (e - s >= this.minChars && (best === null || e - s > best[1] - best[0])) best = [s, e];
      }
      if (best === null) continue;
      out.push(best);
      floor = best[1];
      i = best[1];
      h = 0;
      filled = 0;
    }
    return out;
  }
}

// Recently used indexes: the same system prompt comes with every request of a deployment.
const CACHE_MAX = 32;
const cache = new Map<string, LeakIndex>();

/** A LeakIndex for this prompt and length, reused while it stays among the most recently used. */
export function leakIndexFor(systemPrompt: string, minChars: number): LeakIndex {
  const key = `${minChars}\u0000${systemPrompt}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const idx = new LeakIndex(systemPrompt, minChars);
  if (systemPrompt.length <= 1 << 16) {
    cache.set(key, idx);
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value as string);
  }
  return idx;
}
