// OpenAI-compatible bodies (vLLM, TGI, llama.cpp, Ollama, KServe HF runtime): requests and
// non-streaming responses of /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings.
import type { Source } from '../../policy/index.js';
import {
  capField,
  Collector,
  isObject,
  malformed,
  textLeaves,
  type DecodedRequest,
  type DecodedResponse,
  type Json,
} from './exchange.js';

const KNOWN_MESSAGE_FIELDS = new Set([
  'role',
  'content',
  'tool_calls',
  'function_call',
  'reasoning_content',
  'reasoning',
  'refusal',
]);

const ROLE_SOURCE: Record<string, Source> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool',
  function: 'tool',
  ipython: 'tool',
};

/** Text-bearing content parts; images, audio and files carry no text we can scan. */
const TEXT_PARTS = new Set(['text', 'input_text', 'output_text', 'refusal']);

/**
 * A message `content`: a string or an array of parts. Parts of unknown types are passed on
 * unchanged; a `text` field on any part is scanned whatever its type says.
 */
function content(
  c: Collector,
  holder: Record<string, Json>,
  key: string,
  path: string,
  source: Source,
  role?: string,
) {
  const v = holder[key];
  if (typeof v === 'string') return c.text(path, source, v, (t) => (holder[key] = t), role);
  if (v === null || v === undefined) return;
  if (!Array.isArray(v)) throw malformed(`${path} must be a string or an array of parts`);
  v.forEach((part: Json, k: number) => {
    if (typeof part === 'string') return c.text(`${path}[${k}]`, source, part, (t) => (v[k] = t), role);
    if (!isObject(part)) throw malformed(`${path}[${k}] must be an object`);
    for (const f of ['text', 'refusal'] as const) {
      if (typeof part[f] === 'string' && (f === 'text' || TEXT_PARTS.has(part.type)))
        c.text(`${path}[${k}].${f}`, source, part[f], (t) => (part[f] = t), role);
    }
  });
}

/** `history`: calls in a request's assistant messages, whose arguments the model reads back as text */
function toolCallsOf(c: Collector, holder: Record<string, Json>, path: string, history = false) {
  const calls = holder.tool_calls;
  if (Array.isArray(calls)) {
    calls.forEach((tc: Json, j: number) => {
      if (!isObject(tc)) throw malformed(`${path}.tool_calls[${j}] must be an object`);
      const fn = isObject(tc.function) ? tc.function : tc;
      addCall(c, `${path}.tool_calls[${j}]`, fn, typeof tc.id === 'string' ? tc.id : undefined, history);
    });
  }
  // the deprecated single function_call
  if (isObject(holder.function_call))
    addCall(c, `${path}.function_call`, holder.function_call, undefined, history);
}

function addCall(c: Collector, path: string, fn: Record<string, Json>, id?: string, history = false) {
  const name = typeof fn.name === 'string' ? fn.name : '';
  const args = fn.arguments;
  // an injection planted in earlier arguments reaches the model like any other history
  if (history) c.text(`${path}.arguments`, 'assistant', args, (t) => (fn.arguments = t), 'assistant');
  c.toolCall(
    {
      path,
      name,
      ...(id ? { id } : {}),
      arguments: typeof args === 'string' || isObject(args) ? args : undefined,
    },
    typeof args === 'string' ? (t) => (fn.arguments = t) : undefined,
  );
}

function toolDefs(body: Record<string, Json>, c: Collector) {
  const tools = body.tools;
  if (tools === undefined || tools === null) return [];
  if (!Array.isArray(tools)) throw malformed('tools must be an array');
  return tools.map((t: Json, k: number) => {
    if (!isObject(t)) throw malformed(`tools[${k}] must be an object`);
    // chat: {type, function: {name, description}}; responses: {type, name, description}
    const fn = isObject(t.function) ? t.function : t;
    const base = fn === t ? `tools[${k}]` : `tools[${k}].function`;
    // descriptions reach the model like any prompt: scan them (tool poisoning)
    c.text(`${base}.description`, 'parameter', fn.description, (s) => (fn.description = s));
    return { path: `tools[${k}]`, name: typeof fn.name === 'string' ? fn.name : '' };
  });
}

function toolName(t: Json): string | undefined {
  if (!isObject(t)) return undefined;
  const fn = isObject(t.function) ? t.function : t;
  return typeof fn.name === 'string' ? fn.name : undefined;
}

/**
 * Remove denied tools. When none is left, `tools` and the fields that only make sense with tools go
 * too (vLLM rejects tool_choice without tools); a tool_choice that forces a removed tool is dropped,
 * so the model answers without it instead of the request failing upstream.
 */
function removeTools(body: Record<string, Json>, names: string[]): boolean {
  if (!names.length || !Array.isArray(body.tools)) return false;
  const drop = new Set(names);
  const kept = body.tools.filter((t: Json) => !drop.has(toolName(t) ?? ''));
  if (kept.length === body.tools.length) return false;
  const forced = toolName(body.tool_choice);
  if (forced !== undefined && drop.has(forced)) delete body.tool_choice;
  if (kept.length) body.tools = kept;
  else {
    delete body.tools;
    delete body.tool_choice;
    delete body.parallel_tool_calls;
  }
  return true;
}

function requested(body: Record<string, Json>, keys: string[]): number | undefined {
  let n: number | undefined;
  for (const k of keys) if (typeof body[k] === 'number') n = n === undefined ? body[k] : Math.max(n, body[k]);
  return n;
}

export function decodeChatRequest(body: Record<string, Json>): DecodedRequest {
  const c = new Collector();
  const msgs = body.messages;
  if (!Array.isArray(msgs)) throw malformed('messages must be an array');
  const system: string[] = [];
  msgs.forEach((m: Json, i: number) => {
    if (!isObject(m)) throw malformed(`messages[${i}] must be an object`);
    const role = typeof m.role === 'string' ? m.role : undefined;
    const source = ROLE_SOURCE[role ?? ''] ?? 'user';
    content(c, m, 'content', `messages[${i}].content`, source, role);
    if (source === 'system') collectText(m.content, system);
    for (const f of ['reasoning_content', 'reasoning'])
      c.text(`messages[${i}].${f}`, source, m[f], (t) => (m[f] = t), role);
    toolCallsOf(c, m, `messages[${i}]`, true);
  });
  // vLLM renders `documents` (RAG) and a client-supplied `chat_template` into the prompt
  if (Array.isArray(body.documents))
    body.documents.forEach((d: Json, i: number) => {
      if (typeof d === 'string')
        return c.text(`documents[${i}]`, 'retrieved', d, (t) => (body.documents[i] = t));
      if (isObject(d))
        for (const [k, v] of Object.entries(d))
          c.text(`documents[${i}].${k}`, 'retrieved', v, (t) => (d[k] = t));
    });
  c.text('chat_template', 'parameter', body.chat_template, (t) => (body.chat_template = t));
  const keys = ['max_tokens', 'max_completion_tokens'];
  return finish(body, c, 'chat', system, msgs.length, keys, 'max_tokens');
}

export function decodeCompletionsRequest(body: Record<string, Json>): DecodedRequest {
  const c = new Collector();
  promptLike(c, body, 'prompt', 'user');
  c.text('suffix', 'user', body.suffix, (t) => (body.suffix = t));
  // vLLM's default max_tokens for completions is 16: only cap what the client asked for
  return finish(body, c, 'text_completion', [], undefined, ['max_tokens'], undefined);
}

export function decodeEmbeddingsRequest(body: Record<string, Json>): DecodedRequest {
  const c = new Collector();
  promptLike(c, body, 'input', 'user');
  return finish(body, c, 'embeddings', [], undefined, [], undefined);
}

export function decodeResponsesRequest(body: Record<string, Json>): DecodedRequest {
  const c = new Collector();
  const system: string[] = [];
  if (typeof body.instructions === 'string') {
    c.text('instructions', 'system', body.instructions, (t) => (body.instructions = t), 'system');
    system.push(body.instructions);
  }
  const input = body.input;
  let count: number | undefined;
  if (typeof input === 'string') c.text('input', 'user', input, (t) => (body.input = t), 'user');
  else if (Array.isArray(input)) {
    count = input.length;
    input.forEach((item: Json, i: number) => {
      if (typeof item === 'string') return c.text(`input[${i}]`, 'user', item, (t) => (input[i] = t), 'user');
      if (!isObject(item)) throw malformed(`input[${i}] must be an object`);
      const path = `input[${i}]`;
      if (item.type === 'function_call_output' || item.type === 'custom_tool_call_output') {
        if (typeof item.output === 'string')
          c.text(`${path}.output`, 'tool', item.output, (t) => (item.output = t), 'tool');
        else content(c, item, 'output', `${path}.output`, 'tool', 'tool');
      } else if (item.type === 'function_call') {
        addCall(c, path, item, typeof item.call_id === 'string' ? item.call_id : undefined, true);
      } else if (item.type === 'reasoning') {
        if (Array.isArray(item.summary))
          item.summary.forEach((s: Json, k: number) => {
            if (isObject(s)) c.text(`${path}.summary[${k}].text`, 'assistant', s.text, (t) => (s.text = t));
          });
      } else {
        const role = typeof item.role === 'string' ? item.role : undefined;
        const source = ROLE_SOURCE[role ?? ''] ?? 'user';
        content(c, item, 'content', `${path}.content`, source, role);
        if (source === 'system') collectText(item.content, system);
      }
    });
  } else if (input !== undefined && input !== null) throw malformed('input must be a string or an array');
  return finish(body, c, 'chat', system, count, ['max_output_tokens'], 'max_output_tokens');
}

/** prompt / input: a string, an array of strings, or token ids (not text: passed on) */
function promptLike(c: Collector, body: Record<string, Json>, key: string, source: Source) {
  const v = body[key];
  if (typeof v === 'string') return c.text(key, source, v, (t) => (body[key] = t));
  if (Array.isArray(v)) {
    v.forEach((p: Json, i: number) => {
      if (typeof p === 'string') c.text(`${key}[${i}]`, source, p, (t) => (v[i] = t));
    });
    return;
  }
  if (v !== undefined && v !== null) throw malformed(`${key} must be a string or an array`);
}

function collectText(v: Json, out: string[]) {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v))
    for (const p of v) if (isObject(p) && typeof p.text === 'string') out.push(p.text);
}

function finish(
  body: Record<string, Json>,
  c: Collector,
  operation: string,
  system: string[],
  messageCount: number | undefined,
  tokenKeys: string[],
  /** the field to add when the client set none (undefined: never add one) */
  addKey: string | undefined,
): DecodedRequest {
  const tools = toolDefs(body, c);
  const maxOutputTokens = requested(body, tokenKeys);
  return {
    exchange: {
      operation,
      ...(typeof body.model === 'string' ? { model: body.model } : {}),
      segments: c.segments,
      ...(tools.length ? { tools } : {}),
      ...(c.toolCalls.length ? { toolCalls: c.toolCalls } : {}),
      ...(messageCount !== undefined ? { messageCount } : {}),
      ...(maxOutputTokens !== undefined ? { maxOutputTokens } : {}),
    },
    collector: c,
    ...(system.length ? { systemPrompt: system.join('\n') } : {}),
    stream: body.stream === true,
    removeTools: (names) => removeTools(body, names),
    capOutputTokens: (max) => {
      let changed = false;
      for (const k of tokenKeys) changed = capField(body, k, max) || changed;
      if (addKey && !tokenKeys.some((k) => typeof body[k] === 'number')) {
        body[addKey] = max;
        changed = true;
      }
      return changed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Non-streaming responses

export function decodeChatResponse(body: Record<string, Json>): DecodedResponse {
  const c = new Collector();
  eachChoice(body, (ch, i) => {
    if (!isObject(ch.message)) return;
    const m = ch.message;
    content(c, m, 'content', `choices[${i}].message.content`, 'output');
    for (const f of ['reasoning_content', 'reasoning', 'refusal'])
      c.text(`choices[${i}].message.${f}`, 'output', m[f], (t) => (m[f] = t));
    toolCallsOf(c, m, `choices[${i}].message`);
    // anything else that is structured (audio transcripts, annotations): every string in it
    for (const [k, v] of Object.entries(m))
      if (!KNOWN_MESSAGE_FIELDS.has(k) && v !== null && typeof v === 'object')
        textLeaves(c, v, `choices[${i}].message.${k}`);
  });
  return response(body, c, 'chat');
}

export function decodeCompletionsResponse(body: Record<string, Json>): DecodedResponse {
  const c = new Collector();
  eachChoice(body, (ch, i) => c.text(`choices[${i}].text`, 'output', ch.text, (t) => (ch.text = t)));
  return response(body, c, 'text_completion');
}

export function decodeResponsesResponse(body: Record<string, Json>): DecodedResponse {
  const c = new Collector();
  const out = body.output;
  if (Array.isArray(out)) {
    out.forEach((item: Json, i: number) => {
      if (!isObject(item)) return;
      const path = `output[${i}]`;
      if (item.type === 'function_call')
        addCall(c, path, item, typeof item.call_id === 'string' ? item.call_id : undefined);
      else {
        content(c, item, 'content', `${path}.content`, 'output');
        if (Array.isArray(item.summary))
          item.summary.forEach((s: Json, k: number) => {
            if (isObject(s)) c.text(`${path}.summary[${k}].text`, 'output', s.text, (t) => (s.text = t));
          });
      }
    });
  }
  // some servers add the SDK's convenience field
  c.text('output_text', 'output', body.output_text, (t) => (body.output_text = t));
  return response(body, c, 'chat');
}

function eachChoice(body: Record<string, Json>, fn: (ch: Record<string, Json>, i: number) => void) {
  if (!Array.isArray(body.choices)) return;
  body.choices.forEach((ch: Json, i: number) => {
    if (isObject(ch)) fn(ch, i);
  });
}

function response(body: Record<string, Json>, c: Collector, operation: string): DecodedResponse {
  return {
    exchange: {
      operation,
      ...(typeof body.model === 'string' ? { model: body.model } : {}),
      segments: c.segments,
      ...(c.toolCalls.length ? { toolCalls: c.toolCalls } : {}),
    },
    collector: c,
  };
}
