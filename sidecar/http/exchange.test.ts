// The JSON depth bound every inspected body and streamed event goes through.
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, nestedDeeperThan } from './exchange.js';

/** `depth` levels of alternating arrays and objects around a string */
function nest(depth: number): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = i % 2 ? { k: v } : [1, v];
  return v;
}

describe('nestedDeeperThan', () => {
  it('counts object and array levels exactly at the bound', () => {
    expect(nestedDeeperThan(nest(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(nestedDeeperThan(nest(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
    expect(nestedDeeperThan('text', 0)).toBe(false);
    expect(nestedDeeperThan({}, 1)).toBe(false);
    expect(nestedDeeperThan({ a: [] }, 1)).toBe(true);
  });

  it('finds the deep branch wherever it is, "__proto__" keys included', () => {
    const body = JSON.parse(`{"a":1,"b":[{"c":"x"}],"__proto__":${JSON.stringify(nest(10))}}`);
    expect(nestedDeeperThan(body, 10)).toBe(true);
    expect(nestedDeeperThan(body, 11)).toBe(false);
  });

  it('a hostile nesting far past the bound returns instead of overflowing the stack', () => {
    const text = '['.repeat(200_000) + ']'.repeat(200_000);
    expect(nestedDeeperThan(JSON.parse(text), MAX_JSON_DEPTH)).toBe(true);
  });
});
