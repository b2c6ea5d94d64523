// The policy side of the gRPC adapter: turns decoded KServe v2 messages into engine exchanges, calls the
// engine, and returns what to put on the wire (forward these bytes, or fail with this GuardError).
// No I/O here; proxy.ts and stream.ts own the sockets.
import { performance } from 'node:perf_hooks';
import {
  createStreamScanner,
  scanRequest,
  scanResponse,
  scanText,
  type CompiledPolicy,
  type Decision,
  type Direction,
  type Finding,
  type StreamScanner,
} from '../../policy/index.js';
import type { FailMode, RequestTrace } from '../context.js';
import { GuardError } from '../errors.js';
import {
  capMaxTokens,
  decodeInferRequest,
  decodeInferResponse,
  MalformedMessage,
  paramMaxTokens,
  requestText,
  responseText,
  rewriteRequest,
  rewriteResponse,
  encodeInferResponse,
  type InferRequest,
  type InferResponse,
} from './codec.js';

export interface GuardEnv {
  policy: CompiledPolicy;
  fail: FailMode;
  trace: RequestTrace;
}

/** What one inspected message becomes. */
export type Verdict =
  | { ok: true; bytes: Buffer; decision: Decision }
  | { ok: false; error: GuardError; decision: Decision; rule?: string };

/** The first finding that decides a block (what the client is told). */
export function blockingFinding(findings: Finding[]): Finding | undefined {
  return findings.find((f) => f.action === 'block') ?? findings[0];
}

export function blockError(findings: Finding[], direction: Direction): { error: GuardError; rule: string } {
  const f = blockingFinding(findings);
  const rule = f?.rule ?? 'unknown';
  const error = new GuardError(direction === 'input' ? 'policy_violation' : 'output_blocked', {
    rule,
    category: f?.category ?? 'unknown',
  });
  return { error, rule };
}

/** Run an engine call; a throw becomes fail-closed (GuardError) or fail-open (undefined result). */
function engine<T>(env: GuardEnv, direction: Direction, fn: () => T): { value?: T; fault?: GuardError } {
  const t0 = performance.now();
  try {
    return { value: fn() };
  } catch (err) {
    if (err instanceof GuardError) return { fault: err };
    if (env.fail === 'open') {
      env.trace.decision({ direction, decision: 'allow', findings: [], failOpen: true });
      return {};
    }
    return { fault: new GuardError('engine_fault') };
  } finally {
    env.trace.scanned(direction, (performance.now() - t0) / 1000);
  }
}

export interface InspectedRequest {
  verdict: Verdict;
  request?: InferRequest;
  systemPrompt?: string;
}

/** ModelInferRequest (unary or one message of ModelStreamInfer). */
export function inspectRequest(env: GuardEnv, buf: Buffer): InspectedRequest {
  let req: InferRequest;
  let text;
  try {
    req = decodeInferRequest(buf);
    text = requestText(req);
  } catch (err) {
    if (err instanceof MalformedMessage) {
      return {
        verdict: {
          ok: false,
          decision: 'block',
          error: new GuardError('malformed_request', { reason: err.message }),
        },
      };
    }
    throw err;
  }
  env.trace.setModel(req.model_name || undefined);
  const { value: verdict, fault } = engine(env, 'input', () =>
    scanRequest(env.policy, {
      operation: 'infer',
      model: req.model_name || undefined,
      segments: text.segments,
      bytes: buf.length,
      maxOutputTokens: text.maxOutputTokens,
    }),
  );
  const base = { request: req, systemPrompt: text.systemPrompt };
  if (fault) return { ...base, verdict: { ok: false, decision: 'block', error: fault } };
  if (!verdict) return { ...base, verdict: { ok: true, bytes: buf, decision: 'allow' } };

  if (verdict.decision !== 'allow') {
    env.trace.decision({ direction: 'input', decision: verdict.decision, findings: verdict.findings });
  }
  if (verdict.limitExceeded) {
    const limit = verdict.limitExceeded;
    const error = new GuardError('request_too_large', { limit, max: env.policy.limits[limit] });
    return { ...base, verdict: { ok: false, decision: 'block', error, rule: `limits.${limit}` } };
  }
  if (verdict.decision === 'block') {
    const { error, rule } = blockError(verdict.findings, 'input');
    return { ...base, verdict: { ok: false, decision: 'block', error, rule } };
  }
  const replacements = new Map(verdict.redactions);
  if (verdict.maxOutputTokens !== undefined) {
    for (const e of text.elements) {
      if (e.name !== 'sampling_parameters') continue;
      const capped = capMaxTokens(replacements.get(e.path) ?? e.text, verdict.maxOutputTokens);
      if (capped !== undefined) replacements.set(e.path, capped);
    }
  }
  const cap = verdict.maxOutputTokens;
  const paramOverCap = cap !== undefined && (paramMaxTokens(req) ?? 0) > cap;
  if (replacements.size === 0 && !paramOverCap)
    return { ...base, verdict: { ok: true, bytes: buf, decision: verdict.decision } };
  return {
    ...base,
    verdict: {
      ok: true,
      bytes: rewriteRequest(req, text.elements, replacements, cap),
      decision: verdict.decision,
    },
  };
}

/** Unary ModelInferResponse. */
export function inspectResponse(env: GuardEnv, buf: Buffer, systemPrompt: string | undefined): Verdict {
  let res: InferResponse;
  let elements;
  try {
    res = decodeInferResponse(buf);
    elements = responseText(res);
  } catch (err) {
    if (err instanceof MalformedMessage) {
      // we cannot scan it, so the client must not get it
      return {
        ok: false,
        decision: 'block',
        error: new GuardError('upstream_unavailable', { reason: `undecodable response (${err.message})` }),
      };
    }
    throw err;
  }
  if (elements.length === 0) return { ok: true, bytes: buf, decision: 'allow' };
  const { value: verdict, fault } = engine(env, 'output', () =>
    scanResponse(
      env.policy,
      {
        operation: 'infer',
        model: res.model_name || undefined,
        segments: elements.map((e) => ({ path: e.path, source: 'output' as const, text: e.text })),
      },
      { systemPrompt },
    ),
  );
  if (fault) return { ok: false, decision: 'block', error: fault };
  if (!verdict) return { ok: true, bytes: buf, decision: 'allow' };
  if (verdict.decision !== 'allow') {
    env.trace.decision({ direction: 'output', decision: verdict.decision, findings: verdict.findings });
  }
  if (verdict.decision === 'block') {
    const { error, rule } = blockError(verdict.findings, 'output');
    return { ok: false, decision: 'block', error, rule };
  }
  if (verdict.redactions.size === 0) return { ok: true, bytes: buf, decision: verdict.decision };
  rewriteResponse(res, elements, verdict.redactions);
  return { ok: true, bytes: encodeInferResponse(res), decision: verdict.decision };
}

/**
 * Raw messages of allow-listed methods (spec.grpc.allowMethods): their bytes are decoded lossily as
 * UTF-8 and scanned as one text. A redact finding blocks: there is no safe way to rewrite text inside
 * an opaque protobuf message.
 */
export function inspectRaw(env: GuardEnv, buf: Buffer, direction: Direction): Verdict {
  const { value: result, fault } = engine(env, direction, () =>
    scanText(env.policy, buf.toString('utf8'), direction),
  );
  if (fault) return { ok: false, decision: 'block', error: fault };
  if (!result || result.decision === 'allow') return { ok: true, bytes: buf, decision: 'allow' };
  env.trace.decision({
    direction,
    decision: result.decision === 'redact' ? 'block' : result.decision,
    findings: result.findings,
  });
  if (result.decision === 'monitor') return { ok: true, bytes: buf, decision: 'monitor' };
  const { error, rule } = blockError(result.findings, direction);
  return { ok: false, decision: 'block', error, rule };
}

/** A stream scanner that fails closed/open like the other engine calls. */
export function newStreamScanner(
  env: GuardEnv,
  opts: { path: string; systemPrompt?: string },
): { scanner?: StreamScanner; fault?: GuardError } {
  const { value, fault } = engine(env, 'output', () =>
    createStreamScanner(env.policy, {
      direction: 'output',
      path: opts.path,
      systemPrompt: opts.systemPrompt,
    }),
  );
  return { scanner: value, fault };
}
