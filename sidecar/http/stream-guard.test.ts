// The stream guard's safety properties on random streams, without sockets: whatever the chunking,
// a secret never leaves, the text before it does, redactions land, and benign streams stay byte-identical.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadPolicyText } from '../../policy/index.js';
import { SseDecoder } from './sse.js';
import { OpenAiStreamGuard } from './stream-openai.js';
import { chatText, parseSse, SECRET, TEST_POLICY } from './test-context.js';

const policy = loadPolicyText(TEST_POLICY, 'test.yaml');

function chatStream(pieces: string[], eol = '\n'): string {
  const env = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm' };
  const ev = (choice: object) => `data: ${JSON.stringify({ ...env, choices: [choice] })}${eol}${eol}`;
  let s = ev({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null });
  for (const p of pieces) s += ev({ index: 0, delta: { content: p }, finish_reason: null });
  s += ev({ index: 0, delta: { content: '' }, finish_reason: 'stop' });
  return s + `data: [DONE]${eol}${eol}`;
}

/** feed `wire` in reads cut at `cuts`, as the proxy does */
function guard(wire: string, cuts: number[]): string {
  const g = new OpenAiStreamGuard({ policy, operation: 'chat', traceId: '0'.repeat(32) }, 'chat');
  const d = new SseDecoder();
  const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
  let out = '';
  let prev = 0;
  for (const c of [...points, wire.length]) {
    for (const ev of d.write(wire.slice(prev, c))) {
      out += g.event(ev);
      if (g.blocked) return out;
    }
    prev = c;
  }
  for (const ev of d.end().events) {
    out += g.event(ev);
    if (g.blocked) return out;
  }
  return out + g.end();
}

function cut(text: string, sizes: number[]): string[] {
  const out: string[] = [];
  let i = 0;
  for (const n of sizes) {
    if (i >= text.length) break;
    out.push(text.slice(i, i + n));
    i += n;
  }
  if (i < text.length) out.push(text.slice(i));
  return out;
}

const words = fc.array(
  fc.constantFrom('the ', 'model ', 'answers ', 'politely, ', 'with ', 'numbers 42 ', 'and dots. '),
  {
    minLength: 1,
    maxLength: 80,
  },
);
const sizes = fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 60 });
const reads = fc.array(fc.nat(), { maxLength: 10 });

describe('OpenAiStreamGuard on random streams', () => {
  it('benign text: the output is the input, byte for byte', () => {
    fc.assert(
      fc.property(words, sizes, reads, fc.boolean(), (w, sz, rd, crlf) => {
        const wire = chatStream(cut(w.join(''), sz), crlf ? '\r\n' : '\n');
        expect(guard(wire, rd)).toBe(wire);
      }),
      { numRuns: 150 },
    );
  });

  it('a secret anywhere: never sent, the text before it is a prefix of what was written, the end is SPEC §5', () => {
    fc.assert(
      fc.property(words, words, sizes, reads, (before, after, sz, rd) => {
        const pre = before.join('');
        const out = guard(chatStream(cut(pre + SECRET + ' ' + after.join(''), sz)), rd);
        expect(out).not.toContain(SECRET.slice(8, 14));
        const events = parseSse(out);
        expect(events.at(-1)).toBe('[DONE]');
        expect(JSON.parse(events.at(-2)!).error.code).toBe('test.secret');
        const text = chatText(events.slice(0, -2));
        expect(pre.startsWith(text)).toBe(true);
        // at most the hold-back (and the chunk it sat in) is withheld
        expect(text.length).toBeGreaterThanOrEqual(pre.length - 256 - 40);
      }),
      { numRuns: 150 },
    );
  });

  it('an address to redact: replaced wherever the cuts fall, the rest intact', () => {
    fc.assert(
      fc.property(words, words, sizes, reads, (before, after, sz, rd) => {
        const pre = before.join('');
        const post = ' ' + after.join('');
        const out = guard(chatStream(cut(pre + 'frank@example.org' + post, sz)), rd);
        const events = parseSse(out);
        expect(events.at(-1)).toBe('[DONE]');
        const text = chatText(events);
        expect(text).not.toContain('frank@');
        expect(text.startsWith(pre)).toBe(true);
        expect(text.endsWith(post)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });
});
