// Triton generate_stream: every event is `{"model_name", "model_version", "text_output": <delta>}`.
import type { Json } from './exchange.js';
import { encodeSse, type SseEvent } from './sse.js';
import { data, parseEventJson, StreamBoundError, StreamGuard } from './stream-guard.js';

export class GenerateStreamGuard extends StreamGuard {
  #envelope: Record<string, Json> = {};
  #done = false;
  /** raw pass-through while nothing changed (see OpenAiStreamGuard) */
  #exact = true;
  readonly #waiting: { raw: string; need: number; text: boolean }[] = [];
  #sent = 0;
  #wrote = false;
  #dropped = false;

  event(ev: SseEvent): string {
    if (!this.#exact) return this.#rewrite(ev);
    return this.#exactly(() => this.#rewrite(ev), ev);
  }

  end(): string {
    if (!this.#exact) return this.#rewriteEnd();
    return this.#exactly(() => this.#rewriteEnd(), undefined);
  }

  #exactly(run: () => string, ev: SseEvent | undefined): string {
    const before = this.channels.get('text_output')?.releasedLen ?? 0;
    this.#wrote = false;
    this.#dropped = false;
    const out = run();
    const ch = this.channels.get('text_output');
    if (!this.blocked && (!ch || ch.exact)) {
      if (ev && !this.#dropped)
        this.#waiting.push({ raw: ev.raw, need: this.#wrote ? ch!.origLen : 0, text: this.#wrote });
      let sent = '';
      while (this.#waiting.length && this.#waiting[0].need <= (ch?.releasedLen ?? 0)) {
        const w = this.#waiting.shift()!;
        this.#sent = Math.max(this.#sent, w.need);
        sent += w.raw;
      }
      return sent;
    }
    this.#exact = false;
    // released text the client lacks, then the waiting events that carried no text
    let gap =
      ch && before > this.#sent
        ? data({ ...this.#envelope, text_output: ch.released.slice(this.#sent, before) })
        : '';
    for (const w of this.#waiting.splice(0)) if (!w.text) gap += w.raw;
    return gap + out;
  }

  #rewrite(ev: SseEvent): string {
    if (this.blocked || this.#done) return '';
    if (ev.data === undefined) return ev.raw;
    let e: Json;
    try {
      e = parseEventJson(ev.data);
    } catch (err) {
      if (err instanceof StreamBoundError) throw err;
      this.#dropped = true;
      return '';
    }
    if (!e || typeof e !== 'object') {
      this.#dropped = true;
      return '';
    }
    for (const k of ['model_name', 'model_version', 'id'] as const)
      if (e[k] !== undefined) this.#envelope[k] = e[k];
    if (typeof e.text_output !== 'string' || e.text_output === '') return ev.raw;
    this.#wrote = true;
    const s = this.channel('text_output', 'text_output').write(e.text_output);
    if (s.blocked) return this.#blockTail();
    if (s.release === e.text_output) return ev.raw;
    if (s.release === '') return '';
    e.text_output = s.release;
    return data(e);
  }

  #rewriteEnd(): string {
    if (this.blocked || this.#done) return '';
    this.#done = true;
    const ch = this.channels.get('text_output');
    if (!ch) return '';
    const s = ch.end();
    if (s.blocked) return this.#blockTail();
    return s.release ? data({ ...this.#envelope, text_output: s.release }) : '';
  }

  #blockTail(): string {
    this.#done = true;
    // Triton reports stream errors as {"error": "..."}; the OpenAI-style fields ride along
    const err = this.errorPayload();
    return encodeSse(
      JSON.stringify({
        ...this.#envelope,
        error: err.message,
        type: err.type,
        code: err.code,
        trace_id: err.trace_id,
      }),
      'error',
    );
  }
}
