// The Telemetry implementation against a real OTLP receiver, in-process: the real SDK, the real OTLP
// exporters (gRPC, http/protobuf, http/json) and real sockets. Shutdown flushes, so every assertion runs
// on what actually arrived at the collector.
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../log.js';
import type { Finding } from '../../policy/index.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../testing/otlp-receiver.js';
import { ATTR, FINDING_EVENT, startTelemetry, type SidecarTelemetry } from './index.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

let rx: OtlpReceiver;
beforeAll(async () => {
  rx = await startOtlpReceiver();
});
afterAll(async () => {
  await rx.close();
});
afterEach(() => {
  vi.unstubAllEnvs();
  rx.clear();
});

function logCapture(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function start(
  env: Record<string, string>,
  protocol: 'grpc' | 'http/protobuf' | 'http/json',
  level: 'info' | 'debug' = 'info',
) {
  vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', protocol);
  vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', protocol === 'grpc' ? `http://${rx.grpcAddress}` : rx.httpUrl);
  for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
  const logs = logCapture();
  const log = createLogger({ level, destination: logs.stream });
  const t: SidecarTelemetry = startTelemetry({
    log,
    pod: { name: 'vllm-0', namespace: 'ml' },
    serviceVersion: '0.1.0',
  });
  t.setPolicy('acme', 'a'.repeat(64));
  return { t, logs };
}

const injection: Finding = {
  rule: 'prompt-injection.ignore-previous',
  category: 'prompt-injection',
  action: 'block',
  direction: 'input',
  start: 0,
  end: 10,
  path: 'messages[1].content',
};
const email: Finding = {
  rule: 'pii.email',
  category: 'pii',
  action: 'redact',
  direction: 'input',
  start: 3,
  end: 9,
};

function blockedChat(t: SidecarTelemetry, headers: Record<string, string>) {
  const rt = t.startRequest(headers, {
    protocol: 'http',
    operation: 'chat',
    urlPath: '/v1/chat/completions',
    httpMethod: 'POST',
  });
  rt.setModel('llama-3-8b');
  const carrier: Record<string, string> = {};
  rt.inject(carrier);
  rt.scanned('input', 0.00004);
  rt.decision({ direction: 'input', decision: 'block', findings: [injection, email] });
  rt.end({ decision: 'block', status: 403 });
  return { rt, carrier };
}

function allowedChat(t: SidecarTelemetry, headers: Record<string, string>) {
  const rt = t.startRequest(headers, {
    protocol: 'http',
    operation: 'chat',
    urlPath: '/v1/chat/completions',
  });
  const carrier: Record<string, string> = {};
  rt.inject(carrier);
  rt.scanned('input', 0.00002);
  rt.upstream(0.012);
  rt.end({ decision: 'allow', status: 200 });
  return { rt, carrier };
}

const byName = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);

describe('Telemetry', () => {
  it('exports a block span over OTLP/gRPC inside the caller sampled trace, with every attribute', async () => {
    const { t, logs } = start({}, 'grpc');
    const { rt, carrier } = blockedChat(t, { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` });
    expect(rt.traceId).toBe(TRACE);
    await t.shutdown();

    expect(rx.exports.every((e) => e.transport === 'grpc')).toBe(true);
    const [req] = byName(rx.spans, 'inferguard chat');
    const [block] = byName(rx.spans, 'inferguard.block chat');
    expect(rx.spans).toHaveLength(2);
    expect(req).toMatchObject({ traceId: TRACE, parentSpanId: CALLER_SPAN, kind: 2, status: { code: 2 } });
    expect(block).toMatchObject({ traceId: TRACE, parentSpanId: req.spanId, kind: 1 });
    expect(block.status).toEqual({
      code: 2,
      message: 'blocked by inferguard policy: rule prompt-injection.ignore-previous (prompt-injection)',
    });
    expect(block.attributes).toMatchObject({
      [ATTR.decision]: 'block',
      [ATTR.ruleId]: 'prompt-injection.ignore-previous',
      [ATTR.ruleCategory]: 'prompt-injection',
      [ATTR.ruleIds]: ['prompt-injection.ignore-previous', 'pii.email'],
      [ATTR.direction]: 'input',
      [ATTR.operation]: 'chat',
      [ATTR.model]: 'llama-3-8b',
      [ATTR.urlPath]: '/v1/chat/completions',
      [ATTR.podName]: 'vllm-0',
      [ATTR.namespace]: 'ml',
      [ATTR.policyHash]: 'a'.repeat(64),
      [ATTR.findingCount]: 2,
    });
    expect(block.events.map((e) => [e.name, e.attributes[ATTR.ruleId], e.attributes[ATTR.action]])).toEqual([
      [FINDING_EVENT, 'prompt-injection.ignore-previous', 'block'],
      [FINDING_EVENT, 'pii.email', 'redact'],
    ]);
    expect(req.attributes).toMatchObject({
      [ATTR.decision]: 'block',
      [ATTR.httpStatus]: 403,
      [ATTR.httpMethod]: 'POST',
    });
    expect(req.resource).toMatchObject({
      'service.name': 'inferguard-sidecar',
      'service.version': '0.1.0',
      'k8s.pod.name': 'vllm-0',
      'k8s.namespace.name': 'ml',
    });
    // the model server is handed our span as its parent, same trace, sampled
    expect(carrier.traceparent).toBe(`00-${TRACE}-${req.spanId}-01`);

    const [line] = logs.lines().filter((l) => l.event === 'decision');
    expect(line).toMatchObject({
      level: 'warn',
      decision: 'block',
      rule: 'prompt-injection.ignore-previous',
      category: 'prompt-injection',
      direction: 'input',
      trace_id: TRACE,
      span_id: block.spanId,
      protocol: 'http',
      route: '/v1/chat/completions',
    });
  });

  it.each([
    [{ OTEL_TRACES_SAMPLER: 'always_off' }],
    [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }],
    [{ OTEL_TRACES_SAMPLER: 'parentbased_always_off' }],
  ])('with %j exports blocks (http/protobuf) and nothing for allowed traffic', async (sampler) => {
    const { t } = start(sampler, 'http/protobuf');
    const allowed = allowedChat(t, {});
    const blocked = blockedChat(t, {});
    await t.shutdown();

    expect(rx.exports.every((e) => e.transport === 'http/protobuf')).toBe(true);
    expect(rx.spans.map((s) => s.name).sort()).toEqual(['inferguard chat', 'inferguard.block chat']);
    expect(rx.spans.every((s) => s.traceId === blocked.rt.traceId)).toBe(true);
    const [req] = byName(rx.spans, 'inferguard chat');
    expect(req.parentSpanId).toBeUndefined();
    expect(byName(rx.spans, 'inferguard.block chat')[0].parentSpanId).toBe(req.spanId);
    // unsampled: the upstream gets the same trace with the sampled flag off
    expect(blocked.carrier.traceparent).toBe(`00-${blocked.rt.traceId}-${req.spanId}-00`);
    expect(allowed.carrier.traceparent).toMatch(new RegExp(`^00-${allowed.rt.traceId}-[0-9a-f]{16}-00$`));
    expect(allowed.rt.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(allowed.rt.traceId).not.toBe(blocked.rt.traceId);
  });

  it('continues an unsampled parent (flags 00): blocks, redactions and monitor findings export over http/json, allows do not', async () => {
    const { t } = start(
      { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' },
      'http/json',
    );
    const parent = { traceparent: `00-${TRACE}-${CALLER_SPAN}-00`, tracestate: 'vendor=x' };
    const allowed = allowedChat(t, parent);
    const blocked = blockedChat(t, parent);
    const tool = t.startRequest(parent, {
      protocol: 'grpc',
      operation: 'chat',
      rpcMethod: '/inference.GRPCInferenceService/ModelInfer',
    });
    tool.decision({
      direction: 'output',
      decision: 'block',
      toolName: 'shell_exec',
      findings: [
        {
          rule: 'tools.denied',
          category: 'tools',
          action: 'block',
          direction: 'output',
          start: -1,
          end: -1,
          tool: 'shell_exec',
        },
      ],
    });
    tool.end({ decision: 'block', status: 7 });
    const redacted = t.startRequest(parent, {
      protocol: 'http',
      operation: 'text_completion',
      urlPath: '/v1/completions',
    });
    redacted.decision({
      direction: 'output',
      decision: 'redact',
      findings: [{ ...email, direction: 'output' }],
    });
    redacted.end({ decision: 'redact', status: 200 });
    const monitored = t.startRequest(parent, {
      protocol: 'http',
      operation: 'chat',
      urlPath: '/v1/chat/completions',
    });
    monitored.decision({
      direction: 'input',
      decision: 'monitor',
      findings: [{ ...injection, action: 'monitor' }],
    });
    monitored.end({ decision: 'allow', status: 200 });
    await t.shutdown();

    expect(rx.exports.every((e) => e.transport === 'http/json')).toBe(true);
    expect(allowed.rt.traceId).toBe(TRACE);
    expect(allowed.carrier.traceparent).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
    expect(allowed.carrier.tracestate).toBe('vendor=x');
    expect(blocked.carrier.traceparent.endsWith('-00')).toBe(true);
    // nothing from the allowed request: 4 guarded requests × (request span + decision span)
    expect(rx.spans).toHaveLength(8);
    expect(rx.spans.every((s) => s.traceId === TRACE)).toBe(true);
    const requests = rx.spans.filter((s) => s.kind === 2);
    expect(requests.every((s) => s.parentSpanId === CALLER_SPAN)).toBe(true);

    const [toolSpan] = byName(rx.spans, 'inferguard.block chat').filter((s) => s.attributes[ATTR.toolName]);
    expect(toolSpan.attributes).toMatchObject({
      [ATTR.toolName]: 'shell_exec',
      [ATTR.direction]: 'output',
      [ATTR.rpcSystem]: 'grpc',
      [ATTR.rpcMethod]: 'inference.GRPCInferenceService/ModelInfer',
      [ATTR.rpcService]: 'inference.GRPCInferenceService',
    });
    const [redactSpan] = byName(rx.spans, 'inferguard.redact text_completion');
    expect(redactSpan.status.code).toBe(0);
    expect(redactSpan.attributes[ATTR.decision]).toBe('redact');
    const [monitorSpan] = byName(rx.spans, 'inferguard.monitor chat');
    expect(monitorSpan.attributes[ATTR.ruleId]).toBe('prompt-injection.ignore-previous');
    // the request span of a monitored request reports the worst decision, which is why it was exported
    const monitorReq = rx.spans.find((s) => s.spanId === monitorSpan.parentSpanId);
    expect(monitorReq?.attributes[ATTR.decision]).toBe('monitor');
  });

  it('marks fail-open faults and exports them even though the decision is allow', async () => {
    const { t, logs } = start({ OTEL_TRACES_SAMPLER: 'always_off' }, 'http/protobuf');
    const rt = t.startRequest({}, { protocol: 'http', operation: 'chat', urlPath: '/v1/chat/completions' });
    rt.decision({ direction: 'input', decision: 'allow', findings: [], failOpen: true });
    rt.end({ decision: 'allow', status: 200 });
    await t.shutdown();
    const [span] = byName(rx.spans, 'inferguard.allow chat');
    expect(span.attributes[ATTR.failOpen]).toBe(true);
    expect(logs.lines().find((l) => l.event === 'decision')).toMatchObject({
      level: 'warn',
      fail_open: true,
    });
    expect(await t.metrics.text()).toContain('inferguard_fail_open_total{protocol="http"} 1');
  });

  it('at debug level writes one access line per request, without text', async () => {
    const { t, logs } = start({ OTEL_TRACES_EXPORTER: 'none' }, 'http/protobuf', 'debug');
    const { rt } = allowedChat(t, {});
    blockedChat(t, {});
    await t.shutdown();
    const requests = logs.lines().filter((l) => l.event === 'request');
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({
      level: 'debug',
      protocol: 'http',
      route: '/v1/chat/completions',
      decision: 'allow',
      status: 200,
      trace_id: rt.traceId,
    });
    expect(requests[1]).toMatchObject({ decision: 'block', status: 403, model: 'llama-3-8b' });
    expect(typeof requests[0].duration_ms).toBe('number');
  });

  it('with OTEL_TRACES_EXPORTER=none still issues real trace ids and exports nothing', async () => {
    const { t } = start({ OTEL_TRACES_EXPORTER: 'none' }, 'http/protobuf');
    const { rt, carrier } = blockedChat(t, {});
    await t.shutdown();
    expect(rt.traceId).toMatch(/^(?!0{32})[0-9a-f]{32}$/);
    expect(carrier.traceparent).toMatch(new RegExp(`^00-${rt.traceId}-`));
    expect(rx.spans).toHaveLength(0);
  });

  it('with OTEL_SDK_DISABLED=true exports nothing, keeps the caller trace id and passes its traceparent on', async () => {
    const { t } = start({ OTEL_SDK_DISABLED: 'true' }, 'http/protobuf');
    const traceparent = `00-${TRACE}-${CALLER_SPAN}-01`;
    const { rt, carrier } = blockedChat(t, { traceparent });
    const own = blockedChat(t, {});
    await t.shutdown();
    expect(rt.traceId).toBe(TRACE);
    expect(carrier.traceparent).toBe(traceparent);
    expect(own.rt.traceId).toMatch(/^(?!0{32})[0-9a-f]{32}$/);
    expect(rx.spans).toHaveLength(0);
  });

  it('continues and propagates B3 headers with OTEL_PROPAGATORS=b3multi', async () => {
    const { t } = start({ OTEL_PROPAGATORS: 'b3multi' }, 'http/protobuf');
    const { rt, carrier } = blockedChat(t, {
      'x-b3-traceid': TRACE,
      'x-b3-spanid': CALLER_SPAN,
      'x-b3-sampled': '1',
    });
    await t.shutdown();
    expect(rt.traceId).toBe(TRACE);
    expect(carrier['x-b3-traceid']).toBe(TRACE);
    expect(carrier['x-b3-spanid']).toMatch(/^[0-9a-f]{16}$/);
    expect(carrier['x-b3-spanid']).not.toBe(CALLER_SPAN);
    expect(carrier.traceparent).toBeUndefined();
    const request = byName(rx.spans, 'inferguard chat')[0];
    expect(request.traceId).toBe(TRACE);
    expect(request.parentSpanId).toBe(CALLER_SPAN);
  });

  it('reports an unreachable collector as short JSON log lines, and still shuts down', async () => {
    // nothing listens on the discard port
    const { t, logs } = start(
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_BSP_SCHEDULE_DELAY: '10' },
      'grpc',
    );
    blockedChat(t, {});
    const errors = () => logs.lines().filter((l) => l.component === 'opentelemetry' && l.level === 'error');
    for (let i = 0; i < 250 && errors().length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await t.shutdown();
    expect(errors().length).toBeGreaterThan(0);
    expect(String(errors()[0].msg)).toMatch(/UNAVAILABLE/);
    expect(String(errors()[0].msg)).not.toContain('"stack"');
  });

  it('takes the service name and resource attributes from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES', async () => {
    const { t } = start(
      { OTEL_SERVICE_NAME: 'guard-prod', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod' },
      'http/protobuf',
    );
    blockedChat(t, {});
    await t.shutdown();
    expect(rx.spans[0].resource).toMatchObject({
      'service.name': 'guard-prod',
      'deployment.environment': 'prod',
    });
  });

  it('counts requests, findings, latencies and reloads in Prometheus text', async () => {
    const { t } = start({ OTEL_TRACES_EXPORTER: 'none' }, 'http/protobuf');
    blockedChat(t, {});
    allowedChat(t, {});
    allowedChat(t, {});
    t.policyReloaded(true, 'b'.repeat(64));
    t.policyReloaded(false, undefined);
    const text = await t.metrics.text();
    await t.shutdown();
    expect(text).toContain('inferguard_requests_total{protocol="http",decision="block"} 1');
    expect(text).toContain('inferguard_requests_total{protocol="http",decision="allow"} 2');
    expect(text).toContain(
      'inferguard_findings_total{rule="prompt-injection.ignore-previous",category="prompt-injection",direction="input",action="block"} 1',
    );
    expect(text).toContain(
      'inferguard_findings_total{rule="pii.email",category="pii",direction="input",action="redact"} 1',
    );
    expect(text).toContain('inferguard_scan_duration_seconds_count{protocol="http",direction="input"} 3');
    expect(text).toContain('inferguard_upstream_duration_seconds_count{protocol="http"} 2');
    expect(text).toContain('inferguard_policy_reloads_total{result="success"} 1');
    expect(text).toContain('inferguard_policy_reloads_total{result="failure"} 1');
    expect(text).toContain('inferguard_policy_reload_error 1');
    expect(text).toContain(`inferguard_policy_info{name="acme",hash="${'b'.repeat(64)}"} 1`);
    expect(text).not.toContain(`hash="${'a'.repeat(64)}"`);
    expect(text).toContain('process_cpu_seconds_total');
  });
});
