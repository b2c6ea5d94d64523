// The HTTP listener: OpenAI-compatible routes, KServe v2 REST and Triton generate, decoded into the
// engine's exchanges, judged, and forwarded to the model server over a keep-alive undici Pool.
// See docs/http.md for what a client sees.
import { isUtf8 } from 'node:buffer';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import {
  scanRequest,
  scanResponse,
  type CompiledPolicy,
  type Decision,
  type Finding,
  type RequestVerdict,
} from '../../policy/index.js';
import type { Listener, ListenerSpec, RequestTrace, SidecarContext, StartListener } from '../context.js';
import { GuardError } from '../errors.js';
import {
  isObject,
  malformed,
  MAX_JSON_DEPTH,
  nestedDeeperThan,
  type DecodedRequest,
  type DecodedResponse,
  type Json,
} from './exchange.js';
import {
  decodeGenerateRequest,
  decodeGenerateResponse,
  decodeInferRequest,
  decodeInferResponse,
} from './kserve.js';
import {
  decodeChatRequest,
  decodeChatResponse,
  decodeCompletionsRequest,
  decodeCompletionsResponse,
  decodeEmbeddingsRequest,
  decodeResponsesRequest,
  decodeResponsesResponse,
} from './openai.js';
import { inspectedRoute, pathAllowed, type InspectedRoute, type RouteKind } from './routes.js';
import { BINARY_HEADER, splitBinary } from './kserve-binary.js';
import { Cancel, upstreamCall, type UpstreamReply } from './call.js';
import { SseDecoder, SseTooLargeError, type SseEvent } from './sse.js';
import { StreamBoundError, type StreamEnv, type StreamGuard } from './stream-guard.js';
import { OpenAiStreamGuard } from './stream-openai.js';
import { ResponsesStreamGuard } from './stream-responses.js';
import { GenerateStreamGuard } from './stream-triton.js';
import {
  decodable,
  decodeBody,
  readBody,
  requestHeaders,
  responseHeaders,
  upstreamError,
  type HeaderMap,
} from './upstream.js';

export interface HttpListenerOptions {
  /** time for the model server to send response headers (default 10 min: long generations) */
  headersTimeoutMs?: number;
  /** longest silence inside a response body (default 5 min) */
  bodyTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** largest non-streamed response buffered for inspection (default 64 MiB); beyond: 502 */
  maxResponseBytes?: number;
  /** upstream connections (default 128) */
  connections?: number;
}

type RequestDecoder = (body: Record<string, Json>, r: InspectedRoute, blob?: Buffer) => DecodedRequest;
const REQUEST_DECODERS: Record<RouteKind, RequestDecoder> = {
  chat: (b) => decodeChatRequest(b),
  completions: (b) => decodeCompletionsRequest(b),
  responses: (b) => decodeResponsesRequest(b),
  embeddings: (b) => decodeEmbeddingsRequest(b),
  'kserve-infer': (b, r, blob) => decodeInferRequest(b, r.model, blob),
  'triton-generate': (b, r) => decodeGenerateRequest(b, r.model, false),
  'triton-generate-stream': (b, r) => decodeGenerateRequest(b, r.model, true),
};

type ResponseDecoder = (body: Record<string, Json>, blob?: Buffer) => DecodedResponse;
const RESPONSE_DECODERS: Partial<Record<RouteKind, ResponseDecoder>> = {
  chat: (b) => decodeChatResponse(b),
  completions: (b) => decodeCompletionsResponse(b),
  responses: (b) => decodeResponsesResponse(b),
  'kserve-infer': (b, blob) => decodeInferResponse(b, blob),
  'triton-generate': (b) => decodeGenerateResponse(b),
};

const ROUTE_FINDING: Finding = {
  rule: 'http.route-not-allowed',
  category: 'route',
  action: 'block',
  direction: 'input',
  start: -1,
  end: -1,
};

export const startHttpListener: StartListener = (ctx, spec) => createHttpListener(ctx, spec);

export async function createHttpListener(
  ctx: SidecarContext,
  spec: ListenerSpec,
  opts: HttpListenerOptions = {},
): Promise<Listener> {
  const upstreamHost = spec.upstream.host.includes(':') ? `[${spec.upstream.host}]` : spec.upstream.host;
  const pool = new Pool(`http://${upstreamHost}:${spec.upstream.port}`, {
    connections: opts.connections ?? 128,
    keepAliveTimeout: 30_000,
    headersTimeout: opts.headersTimeoutMs ?? 600_000,
    bodyTimeout: opts.bodyTimeoutMs ?? 300_000,
    connect: { timeout: opts.connectTimeoutMs ?? 5_000 },
  });
  const maxResponseBytes = opts.maxResponseBytes ?? 64 << 20;
  let inflight = 0;
  let drained: (() => void) | undefined;
  const sockets = new Set<Socket>();

  const requestTimeoutMs = spec.requestTimeoutMs ?? 300_000;
  // Node refuses a headers timeout above the request timeout: the headers are part of the request
  const headersTimeoutMs = Math.min(spec.headersTimeoutMs ?? 20_000, requestTimeoutMs);
  const server = createServer(
    {
      // slowloris: a client dribbling its headers (or body) is answered 408 and disconnected; Node checks
      // these every connectionsCheckingInterval, so that is kept well below the timeout
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(2_000, Math.floor(headersTimeoutMs / 4))),
    },
    (req, res) => {
      inflight++;
      // one listener per request: the in-flight count, and a client gone before its answer is complete
      // aborts the upstream call
      const cancel = new Cancel();
      res.once('close', () => {
        if (!res.writableFinished) cancel.abort();
        if (--inflight === 0) drained?.();
      });
      handle(req, res, cancel).catch((e: unknown) => {
        // handle() answers every error it knows; this is a bug, so fail closed and say nothing more
        ctx.log.error({ err: e instanceof Error ? e.message : String(e) }, 'http handler failed');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    },
  );
  // idle client connections live longer than a typical load balancer's, so it closes them first
  // (Node 20 times headers from a request's first byte, so an idle keep-alive connection is not cut)
  server.keepAliveTimeout = 65_000;
  // past the cap Node closes a new connection on accept, before a byte is read (no HTTP answer fits)
  server.maxConnections = spec.maxConnections ?? 1024;
  let dropped = 0;
  let lastDropLog = 0;
  server.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - lastDropLog < 10_000) return;
    lastDropLog = now;
    ctx.log.warn(
      { listen: spec.listen, maxConnections: server.maxConnections, dropped },
      'http connection refused: --max-connections reached',
    );
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(spec.listen.port, spec.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;

  async function handle(req: IncomingMessage, res: ServerResponse, cancel: Cancel): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    const route = inspectedRoute(method, path);
    const policy = ctx.policy(); // once per request: a reload mid-request does not mix policies
    const trace = ctx.telemetry.startRequest(req.headers, {
      protocol: 'http',
      operation: route?.operation ?? 'passthrough',
      urlPath: path,
      httpMethod: method,
      ...(route?.model ? { model: route.model } : {}),
    });
    let ended = false;
    const end = (decision: Decision, status: string | number) => {
      if (ended) return;
      ended = true;
      trace.end({ decision, status });
    };
    cancel.whenAborted(() => end('allow', 'client_closed'));
    try {
      if (!route) {
        if (pathAllowed(policy.http.allowPaths, method, path)) {
          const status = await passthrough(req, res, url, method, trace, cancel);
          end('allow', status);
          return;
        }
        req.resume();
        trace.decision({ direction: 'input', decision: 'block', findings: [ROUTE_FINDING] });
        const shown = `${method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`;
        sendError(
          res,
          new GuardError('route_not_allowed', { route: shown, key: 'http.allowPaths' }),
          trace.traceId,
        );
        end('block', 403);
        return;
      }
      const r = await inspect(req, res, url, method, route, policy, trace, cancel);
      end(r.decision, r.status);
    } catch (e) {
      if (cancel.aborted) return end('allow', 'client_closed');
      let err: GuardError;
      if (e instanceof GuardError) err = e;
      else {
        // not an error we know: a bug on our side, so nothing is forwarded (fail closed)
        ctx.log.error(
          { err: e instanceof Error ? e.name : 'error', traceId: trace.traceId },
          'http request failed',
        );
        err = new GuardError('engine_fault');
      }
      if (res.headersSent) {
        res.destroy();
      } else {
        if (err.http === 413 || err.http === 415) res.setHeader('connection', 'close');
        sendError(res, err, trace.traceId);
      }
      end(err.code === 'malformed_request' || err.code === 'request_too_large' ? 'block' : 'allow', err.http);
    }
  }

  async function passthrough(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    method: string,
    trace: RequestTrace,
    cancel: Cancel,
  ): Promise<number> {
    const headers = requestHeaders(req.headers);
    injectTrace(trace, headers);
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const t0 = performance.now();
    const up = await upstreamCall(
      pool,
      { path: url, method: method as 'GET', headers, body: hasBody ? req : null },
      cancel,
    ).catch(rethrowUpstream);
    trace.upstream((performance.now() - t0) / 1000);
    res.writeHead(up.statusCode, responseHeaders(up.headers));
    for await (const chunk of up) await writeOut(res, chunk);
    res.end();
    return up.statusCode;
  }

  async function inspect(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    method: string,
    route: InspectedRoute,
    policy: CompiledPolicy,
    trace: RequestTrace,
    cancel: Cancel,
  ): Promise<{ decision: Decision; status: number }> {
    const max = policy.limits.maxRequestBytes;
    const encoding = headerValue(req.headers['content-encoding']);
    if (!decodable(encoding)) {
      req.resume();
      throw new GuardError('unsupported_encoding', {
        encoding: `content-encoding ${encoding}`,
        hint: 'send gzip, deflate, br or identity',
      });
    }
    const wire = await readBody(req, max);
    const raw = decodeBody(wire, encoding, max);
    // KServe's binary tensor extension: a JSON header, then raw tensors
    let jsonPart = raw;
    let blob: Buffer | undefined;
    const binaryHeader = headerValue(req.headers[BINARY_HEADER]);
    if (route.kind === 'kserve-infer' && binaryHeader !== undefined) {
      const split = splitBinary(raw, binaryHeader);
      if (!split) throw malformed(`${BINARY_HEADER} does not fit the body`);
      jsonPart = split.json;
      blob = split.blob;
    }
    // validated and decoded natively (simdutf); a leading BOM is dropped, as TextDecoder did
    if (!isUtf8(jsonPart)) throw malformed('body is not valid UTF-8');
    const bom = jsonPart.length >= 3 && jsonPart[0] === 0xef && jsonPart[1] === 0xbb && jsonPart[2] === 0xbf;
    const text = jsonPart.toString('utf8', bom ? 3 : 0);
    let body: Json;
    try {
      body = JSON.parse(text);
    } catch {
      throw malformed('body is not valid JSON');
    }
    if (!isObject(body)) throw malformed('body must be a JSON object');
    // bounded before any decoder walks it or a change re-serializes it (deep JSON overflows the stack)
    if (nestedDeeperThan(body, MAX_JSON_DEPTH))
      throw malformed(`body is nested deeper than ${MAX_JSON_DEPTH} levels`);
    const decoded = REQUEST_DECODERS[route.kind](body, route, blob);
    decoded.exchange.bytes = raw.length;
    trace.setModel(decoded.exchange.model ?? route.model);

    let verdict: RequestVerdict | undefined;
    const t0 = performance.now();
    try {
      verdict = scanRequest(policy, decoded.exchange);
    } catch (e) {
      verdict = undefined;
      engineFault(e, trace, 'input');
    }
    trace.scanned('input', (performance.now() - t0) / 1000);

    let outBody: Buffer = wire;
    let changed = false;
    let extraHeaders: Record<string, string> = {};
    let decision: Decision = 'allow';
    if (verdict) {
      decision = verdict.decision;
      if (verdict.decision !== 'allow')
        trace.decision({ direction: 'input', decision, findings: verdict.findings });
      // over a limit is 413 when it blocks (monitor mode records it and goes on)
      if (verdict.limitExceeded && verdict.decision === 'block') {
        const limit = verdict.limitExceeded;
        sendError(
          res,
          new GuardError('request_too_large', { limit: `limits.${limit}`, max: policy.limits[limit] }),
          trace.traceId,
        );
        return { decision: 'block', status: 413 };
      }
      if (verdict.decision === 'block') {
        const f = verdict.findings.find((x) => x.action === 'block') ?? verdict.findings[0];
        sendError(
          res,
          new GuardError('policy_violation', {
            rule: f?.rule ?? 'unknown',
            category: f?.category ?? 'unknown',
          }),
          trace.traceId,
          f?.rule,
        );
        return { decision: 'block', status: 403 };
      }
      try {
        if (verdict.redactions.size) {
          decoded.collector.apply(verdict.redactions);
          changed = true;
        }
        if (decoded.removeTools(verdict.removeTools)) changed = true;
        if (verdict.maxOutputTokens !== undefined && decoded.capOutputTokens(verdict.maxOutputTokens))
          changed = true;
      } catch (e) {
        engineFault(e, trace, 'input');
        changed = false;
      }
      // unchanged requests go out byte-identical (and still compressed, if they came so)
      if (changed) {
        if (decoded.encode) {
          const enc = decoded.encode(body);
          outBody = enc.body;
          extraHeaders = enc.headers;
        } else outBody = Buffer.from(JSON.stringify(body));
      }
    }

    const headers = requestHeaders(req.headers);
    if (changed) {
      delete headers['content-encoding'];
      headers['content-length'] = String(outBody.length);
      Object.assign(headers, extraHeaders);
    }
    // we inspect the response, so ask for it uncompressed (an encoded one is decoded below anyway)
    headers['accept-encoding'] = 'identity';
    injectTrace(trace, headers);
    const tu = performance.now();
    const up = await upstreamCall(
      pool,
      { path: url, method: method as 'POST', headers, body: outBody },
      cancel,
    ).catch(rethrowUpstream);
    trace.upstream((performance.now() - tu) / 1000);

    const rh = responseHeaders(up.headers);
    const ctype = headerValue(up.headers['content-type']) ?? '';
    const ok = up.statusCode >= 200 && up.statusCode < 300;
    const env: StreamEnv = {
      policy,
      operation: decoded.exchange.operation,
      ...(decoded.exchange.model ? { model: decoded.exchange.model } : {}),
      ...(decoded.systemPrompt !== undefined ? { systemPrompt: decoded.systemPrompt } : {}),
      traceId: trace.traceId,
    };
    if (ok && ctype.startsWith('text/event-stream') && route.kind !== 'embeddings') {
      return streamResponse(res, up, rh, route.kind, env, trace, decision);
    }
    const decode = RESPONSE_DECODERS[route.kind];
    if (!ok || !decode) {
      // errors and embeddings vectors carry no model text: passed on as they are
      res.writeHead(up.statusCode, rh);
      for await (const chunk of up) await writeOut(res, chunk);
      res.end();
      return { decision, status: up.statusCode };
    }
    const out = await readResponse(up, maxResponseBytes);
    let plain: Buffer;
    try {
      plain = decodeBody(out, headerValue(up.headers['content-encoding']), maxResponseBytes);
    } catch {
      throw new GuardError('upstream_unavailable', {
        reason: 'response could not be decoded for inspection',
      });
    }
    let outJson = plain;
    let outBlob: Buffer | undefined;
    const outBinary = headerValue(up.headers[BINARY_HEADER]);
    if (route.kind === 'kserve-infer' && outBinary !== undefined) {
      const split = splitBinary(plain, outBinary);
      if (!split)
        throw new GuardError('upstream_unavailable', { reason: 'binary tensor response is malformed' });
      outJson = split.json;
      outBlob = split.blob;
    }
    let json: Json;
    try {
      json = JSON.parse(outJson.toString('utf8'));
    } catch {
      json = undefined;
    }
    if (isObject(json) && nestedDeeperThan(json, MAX_JSON_DEPTH))
      throw new GuardError('upstream_unavailable', {
        reason: `answer nested deeper than ${MAX_JSON_DEPTH} levels`,
      });
    const dres: DecodedResponse | undefined = isObject(json) ? decode(json, outBlob) : undefined;
    if (!dres) {
      // 2xx that is not a JSON object: nothing we can judge field by field, so not passed on unseen
      throw new GuardError('upstream_unavailable', { reason: 'response is not JSON' });
    }
    let rv;
    const t1 = performance.now();
    try {
      rv = scanResponse(
        policy,
        dres.exchange,
        decoded.systemPrompt !== undefined ? { systemPrompt: decoded.systemPrompt } : {},
      );
    } catch (e) {
      rv = undefined;
      engineFault(e, trace, 'output');
    }
    trace.scanned('output', (performance.now() - t1) / 1000);
    if (rv && rv.decision !== 'allow') {
      trace.decision({
        direction: 'output',
        decision: rv.decision,
        findings: rv.findings,
        ...toolOf(rv.findings),
      });
      decision = worst(decision, rv.decision);
    }
    if (rv?.decision === 'block') {
      const f = rv.findings.find((x) => x.action === 'block') ?? rv.findings[0];
      sendError(
        res,
        new GuardError('output_blocked', { rule: f?.rule ?? 'unknown', category: f?.category ?? 'unknown' }),
        trace.traceId,
        f?.rule,
      );
      return { decision: 'block', status: 403 };
    }
    // we asked for identity: an encoded answer goes out decoded, whatever the client accepts
    let send = plain;
    if (rv && rv.redactions.size) {
      let applied = true;
      try {
        dres.collector.apply(rv.redactions);
      } catch (e) {
        applied = false;
        engineFault(e, trace, 'output');
      }
      if (applied && dres.encode) {
        const enc = dres.encode(json);
        send = enc.body;
        Object.assign(rh, enc.headers);
      } else if (applied) send = Buffer.from(JSON.stringify(json));
    }
    if (send !== out) {
      delete rh['content-encoding'];
      rh['content-length'] = String(send.length);
    }
    res.writeHead(up.statusCode, rh);
    res.end(send);
    return { decision, status: up.statusCode };
  }

  async function streamResponse(
    res: ServerResponse,
    up: UpstreamReply,
    rh: HeaderMap,
    kind: RouteKind,
    env: StreamEnv,
    trace: RequestTrace,
    inputDecision: Decision,
  ): Promise<{ decision: Decision; status: number }> {
    const enc = headerValue(rh['content-encoding']);
    if (enc && enc !== 'identity')
      throw new GuardError('upstream_unavailable', {
        reason: 'compressed event streams cannot be inspected',
      });
    delete rh['content-length'];
    const guard: StreamGuard =
      kind === 'responses'
        ? new ResponsesStreamGuard(env)
        : kind === 'triton-generate-stream' || kind === 'triton-generate'
          ? new GenerateStreamGuard(env)
          : new OpenAiStreamGuard(env, kind === 'completions' ? 'completions' : 'chat');
    const decoder = new SseDecoder();
    res.writeHead(up.statusCode, rh);
    res.flushHeaders();
    let scanSeconds = 0;
    let passthroughRest = false;
    const write = async (s: string) => {
      if (s) await writeOut(res, s);
    };
    try {
      for await (const chunk of up) {
        if (passthroughRest) {
          await writeOut(res, chunk);
          continue;
        }
        let out = '';
        const t = performance.now();
        let events: SseEvent[] = [];
        let i = 0;
        try {
          events = decoder.write(chunk);
          for (; i < events.length; i++) {
            out += guard.event(events[i]);
            if (guard.blocked) break;
          }
        } catch (e) {
          scanSeconds += (performance.now() - t) / 1000;
          // bounds (event size, held call size, nesting) are properties of the stream, not engine faults
          const bound =
            e instanceof SseTooLargeError || e instanceof StreamBoundError || e instanceof GuardError;
          if (ctx.fail === 'open' && !bound) {
            // fail open: what the scanner held is lost with it; the rest goes on unscanned
            engineFault(e, trace, 'output');
            passthroughRest = true;
            const tail = decoder.end();
            const rest =
              [...events.slice(i), ...tail.events].map((ev) => ev.raw).join('') + tail.unterminated;
            await write(out + rest);
            continue;
          }
          // a bound is a property of the stream, not of the engine: it fails closed in either mode
          ctx.log.warn(
            { err: e instanceof Error ? e.name : 'error', traceId: env.traceId },
            'stream inspection failed',
          );
          trace.decision({ direction: 'output', decision: 'block', findings: [] });
          const err = bound
            ? new GuardError('upstream_unavailable', { reason: 'stream exceeded an inspection bound' })
            : new GuardError('engine_fault');
          await write(out + errorEvent(err, env.traceId));
          res.end();
          up.destroy();
          return { decision: 'block', status: err.http };
        }
        scanSeconds += (performance.now() - t) / 1000;
        await write(out);
        if (guard.blocked) {
          res.end();
          up.destroy();
          break;
        }
      }
      if (!guard.blocked && !passthroughRest) {
        const t = performance.now();
        let out = '';
        // an event whose last line ending was still open (CR at the end of a read)
        for (const ev of decoder.end().events) {
          out += guard.event(ev);
          if (guard.blocked) break;
        }
        if (!guard.blocked) out += guard.end();
        await write(out);
        scanSeconds += (performance.now() - t) / 1000;
        res.end();
      } else if (passthroughRest) res.end();
    } catch (e) {
      // the upstream broke off mid-stream: tell the client in-band, the status is already sent
      if (res.writableEnded || res.destroyed) throw e;
      await write(errorEvent(upstreamError(e), env.traceId)).catch(() => undefined);
      res.end();
      return { decision: worst(inputDecision, guard.decision()), status: 502 };
    } finally {
      trace.scanned('output', scanSeconds);
      const d = guard.decision();
      if (d !== 'allow')
        trace.decision({
          direction: 'output',
          decision: d,
          findings: guard.findings,
          ...toolOf(guard.findings),
        });
    }
    return { decision: worst(inputDecision, guard.decision()), status: up.statusCode };
  }

  function engineFault(e: unknown, trace: RequestTrace, direction: 'input' | 'output'): void {
    ctx.log.error(
      { err: e instanceof Error ? e.name : 'error', traceId: trace.traceId, direction },
      'engine fault',
    );
    if (ctx.fail === 'open') {
      trace.decision({ direction, decision: 'allow', findings: [], failOpen: true });
      return;
    }
    throw new GuardError('engine_fault');
  }

  async function readResponse(up: UpstreamReply, max: number): Promise<Buffer> {
    try {
      return await up.readAll(
        max,
        () => new GuardError('upstream_unavailable', { reason: `response larger than ${max} bytes` }),
      );
    } catch (e) {
      throw e instanceof GuardError ? e : upstreamError(e);
    }
  }

  return {
    address: { host: spec.listen.host, port: addr.port },
    protocol: 'http',
    async upstreamReady() {
      try {
        const r = await pool.request({ path: '/health', method: 'GET', signal: AbortSignal.timeout(1000) });
        await r.body.dump();
        // 404/405: the server answers but has no /health (llama.cpp builds, Ollama)
        return r.statusCode < 500;
      } catch {
        return false;
      }
    },
    async close(graceMs = 5000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (drained = resolve)),
          new Promise((resolve) => setTimeout(resolve, graceMs).unref()),
        ]);
      }
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await closed;
      await pool.destroy();
    },
  };
}

/** write with backpressure; a client that went away ends the wait instead of leaving it pending */
async function writeOut(res: ServerResponse, chunk: string | Buffer): Promise<void> {
  if (res.destroyed) throw new Error('client closed');
  if (res.write(chunk)) return;
  const ac = new AbortController();
  await Promise.race([
    once(res, 'drain', { signal: ac.signal }),
    once(res, 'close', { signal: ac.signal }),
  ]).finally(() => ac.abort());
}

function rethrowUpstream(e: unknown): never {
  throw upstreamError(e);
}

function injectTrace(trace: RequestTrace, headers: HeaderMap): void {
  const carrier: Record<string, string> = {};
  trace.inject(carrier);
  for (const [k, v] of Object.entries(carrier)) headers[k.toLowerCase()] = v;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function toolOf(findings: Finding[]): { toolName?: string } {
  const t = findings.find((f) => f.tool && f.action === 'block')?.tool ?? findings.find((f) => f.tool)?.tool;
  return t ? { toolName: t } : {};
}

const RANK: Record<Decision, number> = { allow: 0, monitor: 1, redact: 2, block: 3 };
function worst(a: Decision, b: Decision): Decision {
  return RANK[a] >= RANK[b] ? a : b;
}

function errorBody(err: GuardError, traceId: string, rule?: string): string {
  return JSON.stringify({
    error: { message: err.message, type: err.type, code: rule ?? err.code, trace_id: traceId },
  });
}

function sendError(res: ServerResponse, err: GuardError, traceId: string, rule?: string): void {
  const body = errorBody(err, traceId, rule);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'inferguard-trace-id': traceId,
  };
  if (rule) headers['inferguard-rule'] = rule;
  res.writeHead(err.http, headers);
  res.end(body);
}

/** an in-band error for a stream whose status line is already sent */
function errorEvent(err: GuardError, traceId: string): string {
  return `event: error\ndata: ${errorBody(err, traceId)}\n\ndata: [DONE]\n\n`;
}
