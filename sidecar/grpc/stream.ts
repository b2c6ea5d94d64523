// ModelStreamInfer (Triton decoupled streaming): one bidirectional stream carries many requests, each
// answered by 0..N responses matched by `id`; the last one carries triton_final_response=true.
//
// Requests are scanned one by one like ModelInfer. Output text is scanned per (request id, output
// tensor, element) with the engine's streaming matcher, so a secret split across responses is caught:
// every response's BYTES outputs are rewritten to carry only the text the matcher released, and the
// held-back tail is appended to the request's final response (or sent in one extra response for that
// id if the upstream ends the stream without a final flag).
//
// A block (request or output) ends the blocked request's output with a ModelStreamInferResponse whose
// error_message names the rule, then closes the whole stream with PERMISSION_DENIED and the SPEC §5
// trailers. Closing the stream rather than only that request is deliberate: a client that multiplexes
// requests must not miss a policy violation in an error_message it may not inspect, and the stream's
// status is the one signal every gRPC client surfaces.
import type { Decision, Finding, StreamScanner, StreamStep } from '../../policy/index.js';
import { GuardError } from '../errors.js';
import {
  appendOutputText,
  decodeStreamResponse,
  encodeStreamResponse,
  finalFlag,
  MalformedMessage,
  responseText,
  rewriteResponse,
  type InferResponse,
  type StreamResponse,
  type TextElement,
} from './codec.js';
import { blockError, inspectRequest, newStreamScanner } from './guard.js';
import type { MessageHooks, Relay } from './proxy.js';

const PERMISSION_DENIED = 7;

interface OutputScan {
  name: string;
  index: number;
  /** undefined after an engine fault with --fail open: the rest of this output passes unscanned */
  scanner?: StreamScanner;
}

interface RequestState {
  model: string;
  systemPrompt?: string;
  /** by `${tensor name}[${element}]` */
  outputs: Map<string, OutputScan>;
}

class Blocked extends Error {
  constructor(
    readonly guard: GuardError,
    readonly rule: string | undefined,
  ) {
    super(guard.message);
  }
}

function stepDecision(findings: Finding[]): Decision {
  if (findings.some((f) => f.action === 'block')) return 'block';
  if (findings.some((f) => f.action === 'redact')) return 'redact';
  return 'monitor';
}

/** The message hooks of one ModelStreamInfer call. */
export function streamInfer(relay: Relay): MessageHooks {
  const st = relay.st;
  const requests = new Map<string, RequestState>();

  /** end the stream with our error; `id` given: first tell that request why its output stops */
  const fail = (err: GuardError, rule?: string, id?: string, model?: string): void => {
    if (relay.ended) return;
    if (id !== undefined && err.grpc === PERMISSION_DENIED) {
      const msg: StreamResponse = {
        error_message: err.message,
        infer_response: blankResponse(id, model ?? ''),
      };
      relay.write(encodeStreamResponse(msg));
    }
    relay.fail(err, rule);
  };

  /** feed a scanner, turning engine faults into fail-closed/open and findings into decisions */
  const step = (out: OutputScan, fn: (s: StreamScanner) => StreamStep): string | undefined => {
    if (!out.scanner) return undefined;
    let result: StreamStep;
    try {
      result = fn(out.scanner);
    } catch {
      if (st.fail === 'open') {
        st.trace.decision({ direction: 'output', decision: 'allow', findings: [], failOpen: true });
        out.scanner = undefined;
        return undefined;
      }
      throw new Blocked(new GuardError('engine_fault'), undefined);
    }
    const findings = result.findings.filter((f) => f.action !== 'allow');
    if (findings.length > 0) {
      const decision = result.blocked ? 'block' : stepDecision(findings);
      st.note(decision);
      st.trace.decision({ direction: 'output', decision, findings });
    }
    if (result.blocked) {
      const { error, rule } = blockError(findings.length > 0 ? findings : result.findings, 'output');
      throw new Blocked(error, rule);
    }
    return result.release;
  };

  const scanFor = (state: RequestState, id: string, e: { name: string; index: number }): OutputScan => {
    const key = `${e.name}[${e.index}]`;
    let out = state.outputs.get(key);
    if (!out) {
      const { scanner, fault } = newStreamScanner(st, {
        path: `${id}/${key}`,
        systemPrompt: state.systemPrompt,
      });
      if (fault) throw new Blocked(fault, undefined);
      out = { name: e.name, index: e.index, scanner };
      state.outputs.set(key, out);
    }
    return out;
  };

  /** rewrite one response so it carries only released text (plus the flushed tail when final) */
  const onResponse = (buf: Buffer): Buffer | undefined => {
    if (relay.ended) return undefined;
    let msg: StreamResponse;
    let elements: TextElement[];
    try {
      msg = decodeStreamResponse(buf);
      elements = msg.infer_response ? responseText(msg.infer_response) : [];
    } catch (err) {
      if (!(err instanceof MalformedMessage)) throw err;
      fail(new GuardError('upstream_unavailable', { reason: `undecodable response (${err.message})` }));
      return undefined;
    }
    const res = msg.infer_response;
    if (!res) return buf; // an error-only response: nothing to scan
    const id = res.id;
    const final = finalFlag(res) ?? true; // no flag: a one-response (non-decoupled) server
    const state = requests.get(id) ?? { model: res.model_name, outputs: new Map() };
    if (elements.length === 0 && (!final || state.outputs.size === 0)) {
      if (final) requests.delete(id);
      return buf;
    }
    try {
      const replacements = new Map<string, string>();
      for (const e of elements) {
        const release = step(scanFor(state, id, e), (s) => s.write(e.text));
        if (release !== undefined && release !== e.text) replacements.set(e.path, release);
      }
      const tails: { name: string; index: number; text: string }[] = [];
      if (final) {
        for (const out of state.outputs.values()) {
          const tail = step(out, (s) => s.end());
          if (!tail) continue;
          const el = elements.find((e) => e.name === out.name && e.index === out.index);
          if (el) replacements.set(el.path, (replacements.get(el.path) ?? el.text) + tail);
          else tails.push({ name: out.name, index: out.index, text: tail });
        }
        requests.delete(id);
      } else {
        requests.set(id, state);
      }
      if (replacements.size === 0 && tails.length === 0) return buf;
      rewriteResponse(res, elements, replacements);
      for (const t of tails) appendOutputText(res, t.name, t.index, t.text);
      return encodeStreamResponse(msg);
    } catch (err) {
      if (!(err instanceof Blocked)) throw err;
      requests.delete(id);
      fail(err.guard, err.rule, id, state.model);
      return undefined;
    }
  };

  // client → upstream: each request scanned on its own
  const onRequest = (buf: Buffer): Buffer | undefined => {
    if (relay.ended) return undefined;
    const r = inspectRequest(st, buf);
    st.note(r.verdict.decision);
    if (!r.verdict.ok) {
      fail(r.verdict.error, r.verdict.rule, r.request?.id, r.request?.model_name);
      return undefined;
    }
    const id = r.request!.id;
    const prev = requests.get(id);
    requests.set(id, {
      model: r.request!.model_name,
      systemPrompt: r.systemPrompt ?? prev?.systemPrompt,
      outputs: prev?.outputs ?? new Map(),
    });
    return r.verdict.bytes;
  };

  // the upstream ended OK: flush what the matchers still hold for requests that got no final flag
  const beforeOk = (): void => {
    for (const [id, state] of requests) {
      try {
        const res = blankResponse(id, state.model);
        for (const out of state.outputs.values()) {
          const tail = step(out, (s) => s.end());
          if (tail) appendOutputText(res, out.name, out.index, tail);
        }
        if (res.outputs.length > 0)
          relay.write(encodeStreamResponse({ error_message: '', infer_response: res }));
      } catch (err) {
        if (!(err instanceof Blocked)) throw err;
        return fail(err.guard, err.rule, id, state.model);
      }
    }
    requests.clear();
  };

  // held-back text of unfinished requests is dropped when the upstream fails: it was never released
  return { request: onRequest, response: onResponse, beforeOk };
}

function blankResponse(id: string, model: string): InferResponse {
  return { model_name: model, model_version: '', id, parameters: {}, outputs: [], raw_output_contents: [] };
}
