// A real node:http server that answers like vLLM's OpenAI-compatible server (and KServe v2 REST /
// Triton's generate extension), with scripted outputs. Shared by the tests, the demo, e2e and bench.
//
//   const fake = await startFakeVllm();
//   fake.enqueue({ chunks: ['The key is AKIA', 'IOSFODNN7EXAMPLE'] });   // next inference reply
//   fake.define('weather', { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] });
//   // ...a request with header `x-fake-script: weather` gets that reply
//   fake.requests  // every request received: method, path, headers, body bytes, parsed JSON, bytes sent
//   await fake.close();
//
// Replies are deterministic (fixed ids and timestamps) so tests can compare bytes. Streaming honours
// the request's `stream: true`; the wire quirks real servers show can be scripted per reply (CRLF,
// comment lines, `data:` without a space, events split across writes, delays, a stream that hangs);
// `events` sends exactly the events given (for upstreams that misbehave); `status`/`body` answer
// with anything at all. Routes: /v1/chat/completions, /v1/completions, /v1/responses (typed events),
// /v1/embeddings, /v1/models, /health, /v2/models/{m}/infer (JSON or binary tensors, answering in
// binary when asked, as Triton does), /v2/models/{m}/generate and /generate_stream; /openai/v1/...
// too. `waitForRequests(n)` resolves once n requests finished (or were aborted by the client).
//
// Run directly for benchmarks and the demo: `tsx testing/fake-vllm.ts [--host H] [--port P]`
// prints `listening http://H:P`.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

export interface ScriptedToolCall {
  name: string;
  /** a JSON string as OpenAI sends it, or an object (sent as a string unless `argumentsAsObject`) */
  arguments: string | Record<string, unknown>;
  id?: string;
  /** streaming: split the arguments string into this many deltas (default 3) */
  argChunks?: number;
}

export interface Script {
  /** output text (chat content, completion text, responses output_text, KServe/Triton text_output) */
  text?: string;
  /** streaming: send the text in exactly these pieces (default: the text split into words) */
  chunks?: string[];
  /** chat: `delta.reasoning_content` / `message.reasoning_content` before the answer */
  reasoning?: string;
  toolCalls?: ScriptedToolCall[];
  /** send tool-call arguments as JSON objects, as TGI and some llama.cpp builds do */
  argumentsAsObject?: boolean;
  /** streaming: send each whole tool call in one delta, as Ollama does */
  wholeToolCalls?: boolean;
  finishReason?: string;
  /** answer with this status (and body, default an OpenAI-style error) instead of a completion */
  status?: number;
  body?: string | Record<string, unknown>;
  headers?: Record<string, string>;
  /** stream wire quirks */
  crlf?: boolean;
  comments?: boolean;
  noSpace?: boolean;
  /**
   * streaming: send exactly these events instead of a generated stream (objects are JSON-encoded;
   * `{event, data}` pairs set the event type) — for upstreams that behave oddly
   */
  events?: (string | Record<string, unknown> | { event: string; data: string | Record<string, unknown> })[];
  /** write the SSE bytes in pieces of this many bytes, each its own write */
  splitBytes?: number;
  /** wait this long before each write (streams) or before answering (non-streaming) */
  delayMs?: number;
  /** streaming: after this many events stop writing and keep the connection open */
  hangAfter?: number;
  /** non-streaming: answer with `content-encoding: gzip` */
  gzip?: boolean;
}

export interface RecordedRequest {
  method: string;
  /** path with query string, as received */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** the body parsed as JSON, when it was JSON (the JSON header of a KServe binary-tensor body) */
  json?: any;
  /** the raw tensors after the JSON header, for KServe binary-tensor bodies */
  binary?: Buffer;
  /** every byte the fake wrote back (body only) */
  sent: Buffer[];
  /** the status it answered with */
  status?: number;
  /** the client went away before the reply was complete */
  aborted: boolean;
}

export interface FakeVllm {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly model: string;
  readonly requests: RecordedRequest[];
  /** replies for the next inference requests, in order; then the default */
  enqueue(...scripts: Script[]): void;
  /** a reply chosen by the request header `x-fake-script: NAME` (not consumed) */
  define(name: string, script: Script): void;
  setDefault(script: Script): void;
  /** forget recorded requests and queued replies */
  reset(): void;
  /** resolves once `n` requests have been recorded and finished (or aborted) */
  waitForRequests(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  close(): Promise<void>;
}

export interface FakeVllmOptions {
  host?: string;
  port?: number;
  model?: string;
  defaultScript?: Script;
  /** keep every request in `requests` (default true; off for long benchmark runs) */
  record?: boolean;
}

export const FAKE_CREATED = 1_700_000_000;
const DEFAULT_TEXT = 'Hello! I am a fake model server. How can I help you today?';

export async function startFakeVllm(opts: FakeVllmOptions = {}): Promise<FakeVllm> {
  const model = opts.model ?? 'fake-model';
  const requests: RecordedRequest[] = [];
  const queue: Script[] = [];
  const named = new Map<string, Script>();
  let fallback: Script = opts.defaultScript ?? { text: DEFAULT_TEXT };
  let seq = 0;
  const sockets = new Set<Socket>();
  const waiters: (() => void)[] = [];
  const settled = new Set<RecordedRequest>();
  const notify = () => waiters.splice(0).forEach((w) => w());

  const pick = (req: IncomingMessage): Script => {
    const name = req.headers['x-fake-script'];
    if (typeof name === 'string' && named.has(name)) return named.get(name)!;
    return queue.shift() ?? fallback;
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const rec: RecordedRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        body,
        sent: [],
        aborted: false,
      };
      try {
        let plain = /gzip/i.test(String(req.headers['content-encoding'] ?? '')) ? gunzipSync(body) : body;
        const headerLength = req.headers['inference-header-content-length'];
        if (typeof headerLength === 'string') {
          rec.binary = plain.subarray(Number(headerLength));
          plain = plain.subarray(0, Number(headerLength));
        }
        rec.json = plain.length ? JSON.parse(plain.toString('utf8')) : undefined;
      } catch {
        rec.json = undefined;
      }
      if (opts.record !== false) requests.push(rec);
      const origWrite = res.write.bind(res);
      const origEnd = res.end.bind(res);
      res.write = ((c: any, ...rest: any[]) => {
        if (c) rec.sent.push(Buffer.from(c));
        return origWrite(c, ...rest);
      }) as typeof res.write;
      res.end = ((c?: any, ...rest: any[]) => {
        if (c && typeof c !== 'function') rec.sent.push(Buffer.from(c));
        return origEnd(c, ...rest);
      }) as typeof res.end;
      const settle = () => {
        if (settled.has(rec)) return;
        settled.add(rec);
        rec.status = res.statusCode;
        notify();
      };
      res.on('finish', settle);
      res.on('close', () => {
        if (!res.writableFinished) rec.aborted = true;
        settle();
      });
      route(req, res, rec).catch(() => res.destroy());
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse, rec: RecordedRequest): Promise<void> {
    const path = (req.url ?? '/').split('?')[0].replace(/^\/openai(?=\/v1\/)/, '');
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/health') return void res.writeHead(200).end();
    if (method === 'GET' && path === '/v1/models') {
      return json(res, 200, {
        object: 'list',
        data: [{ id: model, object: 'model', created: FAKE_CREATED, owned_by: 'vllm', root: model }],
      });
    }
    if (method === 'GET' && path === '/v2/health/ready') return void res.writeHead(200).end();
    if (method !== 'POST') return json(res, 404, { detail: 'Not Found' });
    const id = ++seq;
    const script = pick(req);
    if (script.delayMs && !isStreaming(rec)) await sleep(script.delayMs);
    if (script.status !== undefined) {
      const body = script.body ?? {
        object: 'error',
        message: 'scripted error',
        type: 'BadRequestError',
        code: script.status,
      };
      if (typeof body === 'string') {
        res.writeHead(script.status, { 'content-type': 'text/plain', ...script.headers });
        return void res.end(body);
      }
      return json(res, script.status, body, { headers: script.headers });
    }
    if (rec.json === undefined)
      return json(res, 400, { object: 'error', message: 'invalid JSON', code: 400 });
    const m = /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/(infer|generate|generate_stream)$/.exec(path);
    if (m) {
      if (m[2] === 'infer') return kserveInfer(res, rec, m[1], script);
      if (m[2] === 'generate')
        return json(res, 200, { model_name: m[1], model_version: '1', text_output: textOf(script) }, script);
      return stream(
        res,
        script,
        pieces(script).map((p) => ({ data: { model_name: m[1], model_version: '1', text_output: p } })),
      );
    }
    switch (path) {
      case '/v1/chat/completions':
        return chat(res, rec, script, id);
      case '/v1/completions':
        return completions(res, rec, script, id);
      case '/v1/responses':
        return responses(res, rec, script, id);
      case '/v1/embeddings':
        return embeddings(res, rec);
      default:
        return json(res, 404, { detail: 'Not Found' });
    }
  }

  function chat(res: ServerResponse, rec: RecordedRequest, s: Script, n: number): Promise<void> | void {
    const reqModel = rec.json?.model ?? model;
    const idStr = `chatcmpl-fake${n}`;
    const calls = (s.toolCalls ?? []).map((c, i) => ({ ...c, id: c.id ?? `chatcmpl-tool-fake${n}-${i}` }));
    const finish = s.finishReason ?? (calls.length ? 'tool_calls' : 'stop');
    if (!isStreaming(rec)) {
      const message: Record<string, unknown> = {
        role: 'assistant',
        reasoning_content: s.reasoning ?? null,
        content: calls.length && s.text === undefined ? null : textOf(s),
        tool_calls: calls.map((c) => ({
          id: c.id,
          type: 'function',
          function: { name: c.name, arguments: argsOut(c.arguments, s.argumentsAsObject) },
        })),
      };
      return json(
        res,
        200,
        {
          id: idStr,
          object: 'chat.completion',
          created: FAKE_CREATED,
          model: reqModel,
          choices: [{ index: 0, message, logprobs: null, finish_reason: finish, stop_reason: null }],
          usage: { prompt_tokens: 10, total_tokens: 20, completion_tokens: 10 },
          prompt_logprobs: null,
        },
        s,
      );
    }
    const env = { id: idStr, object: 'chat.completion.chunk', created: FAKE_CREATED, model: reqModel };
    const chunk = (delta: Record<string, unknown>, finish_reason: string | null = null) => ({
      data: { ...env, choices: [{ index: 0, delta, logprobs: null, finish_reason }] },
    });
    const events: SseOut[] = [chunk({ role: 'assistant', content: '' })];
    if (s.reasoning) for (const p of words(s.reasoning)) events.push(chunk({ reasoning_content: p }));
    if (s.text !== undefined || s.chunks || !calls.length)
      for (const p of pieces(s)) events.push(chunk({ content: p }));
    calls.forEach((c, index) => {
      const args = argsOut(c.arguments, false) as string;
      if (s.wholeToolCalls) {
        events.push(
          chunk({
            tool_calls: [
              {
                id: c.id,
                type: 'function',
                index,
                function: { name: c.name, arguments: argsOut(c.arguments, s.argumentsAsObject) },
              },
            ],
          }),
        );
        return;
      }
      events.push(
        chunk({
          tool_calls: [{ id: c.id, type: 'function', index, function: { name: c.name, arguments: '' } }],
        }),
      );
      for (const part of split(args, c.argChunks ?? 3))
        events.push(chunk({ tool_calls: [{ index, function: { arguments: part } }] }));
    });
    events.push({
      data: {
        ...env,
        choices: [
          { index: 0, delta: { content: '' }, logprobs: null, finish_reason: finish, stop_reason: null },
        ],
      },
    });
    if (rec.json?.stream_options?.include_usage) {
      events.push({
        data: { ...env, choices: [], usage: { prompt_tokens: 10, total_tokens: 20, completion_tokens: 10 } },
      });
    }
    events.push({ data: '[DONE]' });
    return stream(res, s, events);
  }

  function completions(
    res: ServerResponse,
    rec: RecordedRequest,
    s: Script,
    n: number,
  ): Promise<void> | void {
    const reqModel = rec.json?.model ?? model;
    const env = { id: `cmpl-fake${n}`, object: 'text_completion', created: FAKE_CREATED, model: reqModel };
    const finish = s.finishReason ?? 'stop';
    if (!isStreaming(rec)) {
      return json(
        res,
        200,
        {
          ...env,
          choices: [
            {
              index: 0,
              text: textOf(s),
              logprobs: null,
              finish_reason: finish,
              stop_reason: null,
              prompt_logprobs: null,
            },
          ],
          usage: { prompt_tokens: 5, total_tokens: 15, completion_tokens: 10 },
        },
        s,
      );
    }
    const events: SseOut[] = pieces(s).map((p) => ({
      data: {
        ...env,
        choices: [{ index: 0, text: p, logprobs: null, finish_reason: null, stop_reason: null }],
      },
    }));
    events.push({
      data: {
        ...env,
        choices: [{ index: 0, text: '', logprobs: null, finish_reason: finish, stop_reason: null }],
      },
    });
    events.push({ data: '[DONE]' });
    return stream(res, s, events);
  }

  function responses(res: ServerResponse, rec: RecordedRequest, s: Script, n: number): Promise<void> | void {
    const reqModel = rec.json?.model ?? model;
    const text = textOf(s);
    const calls = (s.toolCalls ?? []).map((c, i) => ({ ...c, id: c.id ?? `call_fake${n}_${i}` }));
    const withText = s.text !== undefined || s.chunks !== undefined || !calls.length;
    const msgItem = (t: string, status: string) => ({
      id: `msg_fake${n}`,
      type: 'message',
      status,
      role: 'assistant',
      content: status === 'in_progress' ? [] : [{ type: 'output_text', text: t, annotations: [] }],
    });
    const fcItem = (c: (typeof calls)[number], i: number, status: string) => ({
      id: `fc_fake${n}_${i}`,
      type: 'function_call',
      status,
      call_id: c.id,
      name: c.name,
      arguments: status === 'in_progress' ? '' : (argsOut(c.arguments, false) as string),
    });
    const output = [
      ...(withText ? [msgItem(text, 'completed')] : []),
      ...calls.map((c, i) => fcItem(c, i, 'completed')),
    ];
    const full = (status: string, out: unknown[]) => ({
      id: `resp_fake${n}`,
      object: 'response',
      created_at: FAKE_CREATED,
      status,
      model: reqModel,
      output: out,
      usage: status === 'completed' ? { input_tokens: 10, output_tokens: 10, total_tokens: 20 } : null,
    });
    if (!isStreaming(rec)) return json(res, 200, full('completed', output), s);
    const events: SseOut[] = [];
    const ev = (type: string, body: Record<string, unknown>) =>
      events.push({ event: type, data: { type, sequence_number: events.length, ...body } });
    ev('response.created', { response: full('in_progress', []) });
    ev('response.in_progress', { response: full('in_progress', []) });
    let oi = 0;
    if (withText) {
      const item_id = `msg_fake${n}`;
      ev('response.output_item.added', { output_index: oi, item: msgItem('', 'in_progress') });
      ev('response.content_part.added', {
        item_id,
        output_index: oi,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      });
      for (const p of pieces(s))
        ev('response.output_text.delta', {
          item_id,
          output_index: oi,
          content_index: 0,
          delta: p,
          logprobs: [],
        });
      ev('response.output_text.done', { item_id, output_index: oi, content_index: 0, text, logprobs: [] });
      ev('response.content_part.done', {
        item_id,
        output_index: oi,
        content_index: 0,
        part: { type: 'output_text', text, annotations: [] },
      });
      ev('response.output_item.done', { output_index: oi, item: msgItem(text, 'completed') });
      oi++;
    }
    calls.forEach((c, i) => {
      const item_id = `fc_fake${n}_${i}`;
      ev('response.output_item.added', { output_index: oi, item: fcItem(c, i, 'in_progress') });
      const args = argsOut(c.arguments, false) as string;
      for (const part of split(args, c.argChunks ?? 3))
        ev('response.function_call_arguments.delta', { item_id, output_index: oi, delta: part });
      ev('response.function_call_arguments.done', { item_id, output_index: oi, arguments: args });
      ev('response.output_item.done', { output_index: oi, item: fcItem(c, i, 'completed') });
      oi++;
    });
    ev('response.completed', { response: full('completed', output) });
    return stream(res, s, events);
  }

  function embeddings(res: ServerResponse, rec: RecordedRequest): void {
    const input = rec.json?.input;
    const count = Array.isArray(input) && typeof input[0] !== 'number' ? input.length : 1;
    json(res, 200, {
      id: `embd-fake${seq}`,
      object: 'list',
      created: FAKE_CREATED,
      model: rec.json?.model ?? model,
      data: Array.from({ length: count }, (_, index) => ({
        index,
        object: 'embedding',
        embedding: [0.125, -0.25, 0.5],
      })),
      usage: { prompt_tokens: 4, total_tokens: 4, completion_tokens: 0 },
    });
  }

  function kserveInfer(res: ServerResponse, rec: RecordedRequest, name: string, s: Script): void {
    const wantsBinary =
      rec.json?.parameters?.binary_data_output === true ||
      (rec.json?.outputs ?? []).some((o: any) => o?.parameters?.binary_data === true);
    if (wantsBinary) {
      // the binary tensor extension, as Triton answers tritonclient's default requests
      const text = Buffer.from(textOf(s));
      const len = Buffer.alloc(4);
      len.writeUInt32LE(text.length);
      const header = Buffer.from(
        JSON.stringify({
          model_name: name,
          model_version: '1',
          outputs: [
            {
              name: 'text_output',
              datatype: 'BYTES',
              shape: [1],
              parameters: { binary_data_size: text.length + 4 },
            },
          ],
        }),
      );
      const bytes = Buffer.concat([header, len, text]);
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': header.length,
        'content-length': bytes.length,
        ...s.headers,
      });
      return void res.end(bytes);
    }
    const out: Record<string, unknown> = {
      model_name: name,
      model_version: '1',
      outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1], data: [textOf(s)] }],
    };
    if (rec.json?.id !== undefined) out.id = rec.json.id;
    json(res, 200, out, s);
  }

  async function stream(res: ServerResponse, s: Script, generated: SseOut[]): Promise<void> {
    const events: SseOut[] = s.events
      ? s.events.map((e) =>
          typeof e === 'object' && 'event' in e && 'data' in e && typeof e.event === 'string'
            ? (e as SseOut)
            : { data: e as string | Record<string, unknown> },
        )
      : generated;
    const eol = s.crlf ? '\r\n' : '\n';
    const sep = s.noSpace ? ':' : ': ';
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      ...s.headers,
    });
    let wire = '';
    const blocks: string[] = [];
    for (const e of events) {
      let b = s.comments ? `:${sep === ': ' ? ' ' : ''}ping${eol}` : '';
      if (e.event) b += `event${sep}${e.event}${eol}`;
      b += `data${sep}${typeof e.data === 'string' ? e.data : JSON.stringify(e.data)}${eol}${eol}`;
      blocks.push(b);
      wire += b;
    }
    const writes: string[] = [];
    if (s.hangAfter !== undefined) writes.push(...blocks.slice(0, s.hangAfter));
    else if (s.splitBytes) {
      const bytes = Buffer.from(wire);
      for (let i = 0; i < bytes.length; i += s.splitBytes)
        writes.push(bytes.subarray(i, i + s.splitBytes).toString('latin1'));
    } else writes.push(...blocks);
    for (const w of writes) {
      if (res.destroyed) return;
      if (s.delayMs) await sleep(s.delayMs);
      else await new Promise((r) => setImmediate(r));
      res.write(s.splitBytes && s.hangAfter === undefined ? Buffer.from(w, 'latin1') : w);
    }
    if (s.hangAfter !== undefined) return; // leave the stream open: the test disconnects
    res.end();
  }

  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = opts.host ?? '127.0.0.1';

  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    host,
    port: addr.port,
    model,
    requests,
    enqueue: (...scripts) => void queue.push(...scripts),
    define: (name, script) => void named.set(name, script),
    setDefault: (script) => void (fallback = script),
    reset: () => {
      requests.length = 0;
      queue.length = 0;
      settled.clear();
    },
    waitForRequests: (n, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`fake-vllm saw ${settled.size} of ${n} requests`)),
          timeoutMs,
        );
        const check = () => {
          if (requests.filter((r) => settled.has(r)).length >= n) {
            clearTimeout(timer);
            resolve(requests);
          } else waiters.push(check);
        };
        check();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface SseOut {
  event?: string;
  data: string | Record<string, unknown>;
}

function isStreaming(rec: RecordedRequest): boolean {
  if (rec.json?.stream === true) return true;
  return rec.path.split('?')[0].endsWith('/generate_stream');
}

function textOf(s: Script): string {
  return s.text ?? (s.chunks ? s.chunks.join('') : s.toolCalls?.length ? '' : DEFAULT_TEXT);
}

function pieces(s: Script): string[] {
  return s.chunks ?? words(textOf(s));
}

function words(t: string): string[] {
  return t.match(/\s*\S+\s*/g) ?? [t];
}

function split(s: string, n: number): string[] {
  if (n <= 1 || s.length <= 1) return [s];
  const size = Math.ceil(s.length / n);
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

function argsOut(a: string | Record<string, unknown>, asObject?: boolean): string | Record<string, unknown> {
  if (asObject) return typeof a === 'string' ? (JSON.parse(a) as Record<string, unknown>) : a;
  return typeof a === 'string' ? a : JSON.stringify(a);
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  opts: { headers?: Record<string, string>; gzip?: boolean } = {},
): void {
  let bytes = Buffer.from(JSON.stringify(body));
  const extra: Record<string, string> = {};
  if (opts.gzip) {
    bytes = gzipSync(bytes);
    extra['content-encoding'] = 'gzip';
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': bytes.length,
    ...extra,
    ...opts.headers,
  });
  res.end(bytes);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i === -1 ? undefined : process.argv[i + 1];
  };
  const fake = await startFakeVllm({
    host: arg('--host'),
    port: arg('--port') ? Number(arg('--port')) : undefined,
    record: false,
  });
  console.log(`listening ${fake.url}`);
  const stop = () => void fake.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
