// Which HTTP routes the sidecar inspects, and which it passes through because the policy allows them
// (`http.allowPaths`). Everything else is denied: an inference server grows new routes faster than
// a guard learns them, and an unknown route is an unscanned way to the model.

export type RouteKind =
  | 'chat'
  | 'completions'
  | 'responses'
  | 'embeddings'
  | 'kserve-infer'
  | 'triton-generate'
  | 'triton-generate-stream';

export interface InspectedRoute {
  kind: RouteKind;
  /** gen_ai.operation.name */
  operation: string;
  /** model name from the path (KServe / Triton) */
  model?: string;
}

const OPENAI: Record<string, InspectedRoute> = {
  '/v1/chat/completions': { kind: 'chat', operation: 'chat' },
  '/v1/completions': { kind: 'completions', operation: 'text_completion' },
  '/v1/responses': { kind: 'responses', operation: 'chat' },
  '/v1/embeddings': { kind: 'embeddings', operation: 'embeddings' },
};

const V2 = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/(infer|generate|generate_stream)$/;

/** The inspected route for a POST, or undefined. `path` is without the query string. */
export function inspectedRoute(method: string, path: string): InspectedRoute | undefined {
  if (method !== 'POST') return undefined;
  // the KServe Hugging Face runtime serves the OpenAI routes under /openai
  const p = path.startsWith('/openai/v1/') ? path.slice('/openai'.length) : path;
  const openai = OPENAI[p];
  if (openai) return openai;
  const m = V2.exec(path);
  if (!m) return undefined;
  const model = safeDecode(m[1]);
  if (model === undefined) return undefined;
  if (m[3] === 'infer') return { kind: 'kserve-infer', operation: 'infer', model };
  if (m[3] === 'generate') return { kind: 'triton-generate', operation: 'generate', model };
  return { kind: 'triton-generate-stream', operation: 'generate', model };
}

/**
 * Whether `METHOD path` is allowed by one of the policy's allowPaths entries. Entry forms:
 * `GET /health` (exact), `GET /v1/models*` (trailing `*` = prefix), `/metrics` or `* /metrics`
 * (any method). Only canonical paths can match: `..`, `.`, empty segments, backslashes and
 * percent-encoded separators or dots never pass through an allow rule, so `GET /health/../v1/x`
 * cannot reach a route the upstream would resolve differently from us.
 */
export function pathAllowed(allowPaths: readonly string[], method: string, path: string): boolean {
  if (!isCanonical(path)) return false;
  for (const entry of allowPaths) {
    const e = entry.trim();
    const sp = e.indexOf(' ');
    const m = sp === -1 ? '*' : e.slice(0, sp).toUpperCase();
    const pattern = sp === -1 ? e : e.slice(sp + 1).trim();
    if (m !== '*' && m !== method && !(m === 'GET' && method === 'HEAD')) continue;
    if (pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern) return true;
  }
  return false;
}

function isCanonical(path: string): boolean {
  if (!path.startsWith('/') || path.includes('\\') || /%(2e|2f|5c)/i.test(path)) return false;
  const segs = path.split('/').slice(1);
  return segs.every((s, i) => s !== '.' && s !== '..' && (s !== '' || i === segs.length - 1));
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
