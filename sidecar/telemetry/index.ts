// The sidecar's Telemetry (sidecar/context.ts): OpenTelemetry traces configured from the standard OTEL_*
// env (sdk.ts: a tracer provider and the one exporter configured, not the whole NodeSDK), Prometheus metrics (prom-client) and one pino log line per
// non-allow decision. See docs/telemetry.md for every span attribute and metric.
//
// Spans per request:
//   `inferguard <operation>` (SERVER) continues the caller's W3C trace context; always recorded, exported
//     when the trace is sampled, or when the request ended with a non-allow decision.
//   `inferguard.<decision> <operation>` (INTERNAL), child of the request span, one per DecisionEvent
//     (block, redact, monitor, or a fail-open fault); block spans have status ERROR. Always exported.
// See export.ts for how unsampled guard spans still reach the collector.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context as otelContext,
  diag,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { resourceFromAttributes, defaultResource } from '@opentelemetry/resources';
import type { Logger } from 'pino';
import type { Decision, Direction, Finding } from '../../policy/index.js';
import type { DecisionEvent, RequestInfo, RequestTrace, Telemetry } from '../context.js';
import { ATTR, FINDING_EVENT } from './attributes.js';
import { GuardSampler, GuardSpanProcessor, samplerFromEnv, spanProcessorsFromEnv } from './export.js';
import { SidecarMetrics } from './metrics.js';
import { startTracing, type Tracing } from './sdk.js';
import { GrpcStatus, grpcStatusCode } from '../grpc-status.js';

export { ATTR, FINDING_EVENT } from './attributes.js';
export { SidecarMetrics } from './metrics.js';

export const DEFAULT_SERVICE_NAME = 'inferguard-sidecar';
const SCOPE = 'inferguard';
/** how long shutdown waits for the last export before giving up (a dead collector must not block exit) */
const FLUSH_TIMEOUT_MS = 5_000;

export interface TelemetryOptions {
  log: Logger;
  pod?: { name?: string; namespace?: string };
  /** OTEL_* settings; defaults to process.env (the OTLP exporters and resource detectors always read process.env) */
  env?: Record<string, string | undefined>;
  serviceVersion?: string;
  metrics?: SidecarMetrics;
}

const SEVERITY: Record<Decision, number> = { allow: 0, monitor: 1, redact: 2, block: 3 };
const worse = (a: Decision, b: Decision): Decision => (SEVERITY[b] > SEVERITY[a] ? b : a);

function diagLevel(raw: string | undefined): DiagLogLevel {
  switch ((raw ?? '').trim().toUpperCase()) {
    case 'NONE':
      return DiagLogLevel.NONE;
    case 'ERROR':
      return DiagLogLevel.ERROR;
    case 'INFO':
      return DiagLogLevel.INFO;
    case 'DEBUG':
      return DiagLogLevel.DEBUG;
    case 'VERBOSE':
    case 'ALL':
      return DiagLogLevel.ALL;
    default:
      return DiagLogLevel.WARN;
  }
}

/**
 * The SDK's error handler hands diag a whole error serialised as JSON (stack, metadata); keep its
 * message, which says what failed ("14 UNAVAILABLE: … ECONNREFUSED 127.0.0.1:4317").
 */
function diagText(v: unknown): string {
  const text = v instanceof Error ? v.message : String(v);
  if (!text.startsWith('{')) return text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : text;
  } catch {
    return text;
  }
}

/** HTTP status numbers as given; gRPC status names (OK, PERMISSION_DENIED) or numbers → numbers */
function statusCode(protocol: 'grpc' | 'http', status: string | number): number | undefined {
  if (typeof status === 'number') return status;
  if (/^\d+$/.test(status)) return Number(status);
  if (protocol !== 'grpc') return undefined;
  return grpcStatusCode(status);
}

/** OTel semantic conventions: which server-side statuses mark the span as an error */
const GRPC_SERVER_ERRORS = new Set<number>([
  GrpcStatus.UNKNOWN,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.UNIMPLEMENTED,
  GrpcStatus.INTERNAL,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DATA_LOSS,
]);
function isServerError(protocol: 'grpc' | 'http', code: number): boolean {
  return protocol === 'grpc' ? GRPC_SERVER_ERRORS.has(code) : code >= 500;
}

/** "/inference.GRPCInferenceService/ModelInfer" → service and fully qualified method */
function rpcNames(path: string): { service?: string; method: string } {
  const trimmed = path.replace(/^\//, '');
  const slash = trimmed.lastIndexOf('/');
  return slash > 0 ? { service: trimmed.slice(0, slash), method: trimmed } : { method: trimmed };
}

export class SidecarTelemetry implements Telemetry {
  readonly metrics: SidecarMetrics;
  readonly #log: Logger;
  readonly #pod: { name?: string; namespace?: string };
  readonly #sdk: Tracing | undefined;
  readonly #tracer: Tracer;
  /** what the sidecar exports to, for the start-up log line */
  readonly exporters: string[];
  #policy: { name: string; hash: string } | undefined;
  #closed = false;

  constructor(opts: TelemetryOptions) {
    const env = opts.env ?? process.env;
    this.#log = opts.log;
    this.#pod = opts.pod ?? {};
    this.metrics = opts.metrics ?? new SidecarMetrics();
    // first, so what the exporters and detectors say is logged too: SDK complaints (an unreachable collector) become JSON log lines like everything else
    const otelLog = this.#log.child({ component: 'opentelemetry' });
    const line =
      (level: 'error' | 'warn' | 'info' | 'debug' | 'trace') =>
      (msg: string, ...args: unknown[]) =>
        otelLog[level](args.length ? { args: args.map(diagText) } : {}, diagText(msg));
    diag.setLogger(
      {
        error: line('error'),
        warn: line('warn'),
        info: line('info'),
        debug: line('debug'),
        verbose: line('trace'),
      },
      { logLevel: diagLevel(env.OTEL_LOG_LEVEL), suppressOverrideMessage: true },
    );
    const { processors, exporters } = spanProcessorsFromEnv(env, this.#log);
    this.exporters = exporters;
    const resource = defaultResource().merge(
      resourceFromAttributes({
        'service.name': DEFAULT_SERVICE_NAME,
        ...(opts.serviceVersion ? { 'service.version': opts.serviceVersion } : {}),
        ...(this.#pod.name ? { [ATTR.podName]: this.#pod.name } : {}),
        ...(this.#pod.namespace ? { [ATTR.namespace]: this.#pod.namespace } : {}),
      }),
    );
    // The env detector merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these defaults.
    this.#sdk = startTracing({
      resource,
      sampler: new GuardSampler(samplerFromEnv(env, this.#log)),
      // even with OTEL_TRACES_EXPORTER=none a processor is registered, so spans still get real trace ids
      // (clients see them in errors and logs) while nothing is exported. Metrics are served as
      // Prometheus text on /metrics; logs are pino JSON on stdout.
      processors: [new GuardSpanProcessor(processors)],
    });
    this.#tracer = trace.getTracer(SCOPE, opts.serviceVersion);
  }

  /** the policy in force: labels the info metric and every decision span */
  setPolicy(name: string, hash: string): void {
    this.#policy = { name, hash };
    this.metrics.setPolicy(name, hash);
  }

  policyReloaded(ok: boolean, hash: string | undefined): void {
    this.metrics.reloads.inc({ result: ok ? 'success' : 'failure' });
    this.metrics.reloadError.set(ok ? 0 : 1);
    if (ok && hash && this.#policy) this.setPolicy(this.#policy.name, hash);
  }

  startRequest(headers: Record<string, string | string[] | undefined>, info: RequestInfo): RequestTrace {
    const parent = propagation.extract(ROOT_CONTEXT, headers);
    const attributes: Attributes = {
      [ATTR.protocol]: info.protocol,
      [ATTR.operation]: info.operation,
    };
    if (info.model) attributes[ATTR.model] = info.model;
    if (info.rpcMethod) {
      const { service, method } = rpcNames(info.rpcMethod);
      attributes[ATTR.rpcSystem] = 'grpc';
      attributes[ATTR.rpcMethod] = method;
      if (service) attributes[ATTR.rpcService] = service;
    }
    if (info.urlPath) attributes[ATTR.urlPath] = info.urlPath;
    if (info.httpMethod) attributes[ATTR.httpMethod] = info.httpMethod;
    if (this.#pod.name) attributes[ATTR.podName] = this.#pod.name;
    if (this.#pod.namespace) attributes[ATTR.namespace] = this.#pod.namespace;
    if (this.#policy) attributes[ATTR.policyHash] = this.#policy.hash;
    const span = this.#tracer.startSpan(
      `inferguard ${info.operation}`,
      { kind: SpanKind.SERVER, attributes },
      parent,
    );
    return new GuardRequestTrace(this, span, parent, attributes, info);
  }

  /** @internal used by GuardRequestTrace */
  get tracer(): Tracer {
    return this.#tracer;
  }
  /** @internal */
  get log(): Logger {
    return this.#log;
  }

  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const sdk = this.#sdk;
    if (sdk) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), FLUSH_TIMEOUT_MS);
      });
      const result = await Promise.race([sdk.shutdown().then(() => 'ok' as const), timeout]).catch(
        (err: unknown) => (err instanceof Error ? err.message : String(err)),
      );
      clearTimeout(timer);
      if (result !== 'ok') this.#log.warn({ result }, 'telemetry flush did not complete');
    }
    // release the global registrations so a later instance (tests, a restart in-process) can register
    trace.disable();
    propagation.disable();
    otelContext.disable();
    diag.disable();
  }
}

class GuardRequestTrace implements RequestTrace {
  readonly traceId: string;
  readonly #t: SidecarTelemetry;
  readonly #span: Span;
  /** the context the request span lives in: parent of decision spans and what goes upstream */
  readonly #ctx: Context;
  readonly #parent: Context;
  readonly #attrs: Attributes;
  readonly #info: RequestInfo;
  #worst: Decision = 'allow';
  #firstBlock: Finding | undefined;
  #ended = false;
  readonly #started = performance.now();

  constructor(t: SidecarTelemetry, span: Span, parent: Context, attrs: Attributes, info: RequestInfo) {
    this.#t = t;
    this.#span = span;
    this.#parent = parent;
    this.#attrs = attrs;
    this.#info = info;
    this.#ctx = trace.setSpan(parent, span);
    const sc = span.spanContext();
    const incoming = trace.getSpanContext(parent);
    // With the SDK disabled (OTEL_SDK_DISABLED) spans are no-ops: keep the caller's trace id, or make one
    // up so clients still get a trace_id to quote.
    this.traceId = trace.isSpanContextValid(sc)
      ? sc.traceId
      : incoming && trace.isSpanContextValid(incoming)
        ? incoming.traceId
        : randomBytes(16).toString('hex');
  }

  inject(carrier: Record<string, string>): void {
    const ours = this.#span.spanContext();
    // our span context carries the caller's trace id and the sampled flag the caller's decision implied;
    // when our span is a no-op, pass on the caller's context untouched
    propagation.inject(trace.isSpanContextValid(ours) ? this.#ctx : this.#parent, carrier);
  }

  setModel(model: string | undefined): void {
    if (!model) return;
    this.#attrs[ATTR.model] = model;
    this.#span.setAttribute(ATTR.model, model);
  }

  decision(ev: DecisionEvent): void {
    if (ev.decision === 'allow' && !ev.failOpen) return;
    const info = this.#info;
    const metrics = this.#t.metrics;
    metrics.decisions.inc({ protocol: info.protocol, direction: ev.direction, decision: ev.decision });
    for (const f of ev.findings) {
      metrics.findings.inc({ rule: f.rule, category: f.category, direction: f.direction, action: f.action });
    }
    if (ev.failOpen) metrics.failOpen.inc({ protocol: info.protocol });

    const primary = ev.findings.find((f) => f.action === ev.decision) ?? ev.findings[0];
    const ruleIds = [...new Set(ev.findings.map((f) => f.rule))];
    const toolName = ev.toolName ?? primary?.tool;
    this.#worst = worse(this.#worst, ev.decision);
    if (ev.decision === 'block' && primary && !this.#firstBlock) this.#firstBlock = primary;

    // the request's own attributes (route, model, pod) plus the decision's
    const attributes: Attributes = {
      ...this.#attrs,
      [ATTR.decision]: ev.decision,
      [ATTR.direction]: ev.direction,
    };
    delete attributes[ATTR.httpMethod];
    if (primary) {
      attributes[ATTR.ruleId] = primary.rule;
      attributes[ATTR.ruleCategory] = primary.category;
    }
    if (ruleIds.length > 1) attributes[ATTR.ruleIds] = ruleIds;
    attributes[ATTR.findingCount] = ev.findings.length;
    if (toolName) attributes[ATTR.toolName] = toolName;
    if (ev.failOpen) attributes[ATTR.failOpen] = true;

    const span = this.#t.tracer.startSpan(
      `inferguard.${ev.decision} ${info.operation}`,
      { kind: SpanKind.INTERNAL, attributes },
      this.#ctx,
    );
    for (const f of ev.findings) {
      const ea: Attributes = {
        [ATTR.ruleId]: f.rule,
        [ATTR.ruleCategory]: f.category,
        [ATTR.action]: f.action,
        [ATTR.direction]: f.direction,
      };
      // paths are structural (messages[2].content), never the text itself
      if (f.path) ea[ATTR.path] = f.path.slice(0, 128);
      if (f.tool) ea[ATTR.toolName] = f.tool;
      if (f.decoded) ea[ATTR.decoded] = true;
      span.addEvent(FINDING_EVENT, ea);
    }
    if (ev.decision === 'block') {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: primary
          ? `blocked by inferguard policy: rule ${primary.rule} (${primary.category})`
          : 'blocked',
      });
    }
    span.end();

    // one log line per non-allow decision: ids and routes only, never text
    const route = info.rpcMethod ?? info.urlPath;
    const line = {
      event: 'decision',
      decision: ev.decision,
      rule: primary?.rule,
      category: primary?.category,
      rules: ruleIds.length > 1 ? ruleIds : undefined,
      direction: ev.direction,
      protocol: info.protocol,
      operation: info.operation,
      route,
      model: this.#attrs[ATTR.model],
      tool: toolName,
      fail_open: ev.failOpen || undefined,
      trace_id: this.traceId,
      span_id: span.spanContext().spanId,
    };
    const msg = ev.failOpen
      ? 'engine fault: request forwarded unscanned (fail open)'
      : `${ev.decision} by rule ${primary?.rule ?? '(none)'}`;
    if (ev.decision === 'block' || ev.failOpen) this.#t.log.warn(line, msg);
    else this.#t.log.info(line, msg);
  }

  scanned(direction: Direction, seconds: number): void {
    this.#t.metrics.scanSeconds.observe({ protocol: this.#info.protocol, direction }, seconds);
  }

  upstream(seconds: number): void {
    this.#t.metrics.upstreamSeconds.observe({ protocol: this.#info.protocol }, seconds);
  }

  end(outcome: { decision: Decision; status: string | number }): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#t.metrics.requests.inc({ protocol: this.#info.protocol, decision: outcome.decision });
    const decision = worse(this.#worst, outcome.decision);
    const span = this.#span;
    span.setAttribute(ATTR.decision, decision);
    if (this.#firstBlock) {
      span.setAttribute(ATTR.ruleId, this.#firstBlock.rule);
      span.setAttribute(ATTR.ruleCategory, this.#firstBlock.category);
    }
    const code = statusCode(this.#info.protocol, outcome.status);
    if (code !== undefined) {
      span.setAttribute(this.#info.protocol === 'grpc' ? ATTR.grpcStatus : ATTR.httpStatus, code);
    } else {
      span.setAttribute('inferguard.status', String(outcome.status));
    }
    if (decision === 'block') {
      const rule = this.#firstBlock;
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: rule ? `blocked by inferguard policy: rule ${rule.rule} (${rule.category})` : 'blocked',
      });
    } else if (code !== undefined && isServerError(this.#info.protocol, code)) {
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
    // an access log for debugging (--log-level debug): one line per request, ids and routes only
    const log = this.#t.log;
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          event: 'request',
          protocol: this.#info.protocol,
          operation: this.#info.operation,
          route: this.#info.rpcMethod ?? this.#info.urlPath,
          model: this.#attrs[ATTR.model],
          decision,
          status: outcome.status,
          duration_ms: Math.round((performance.now() - this.#started) * 1000) / 1000,
          trace_id: this.traceId,
        },
        'request',
      );
    }
  }
}

export function startTelemetry(opts: TelemetryOptions): SidecarTelemetry {
  return new SidecarTelemetry(opts);
}
