// How guard spans get exported even when the trace is not sampled.
//
// The problem: with OTEL_TRACES_SAMPLER=always_off, a ratio of 0, or a caller's traceparent whose sampled
// flag is 0, the SDK would create non-recording spans and export nothing — yet SPEC §6 requires a span for
// every block. Creating the block span in a separate always-on pipeline would work but detach it from the
// request's span; a sampler that samples "spans with a guard attribute" cannot help the request span,
// whose decision is only known when it ends.
//
// The design, in two pieces that only work together:
//   1. GuardSampler wraps the configured sampler and turns NOT_RECORD into RECORD (record, do not sample): every span of
//      ours records (cheap: a few attributes), keeps the sampled flag it would have had (so what we
//      propagate upstream keeps the caller's flags), and is NOT exported by the normal path.
//   2. GuardSpanProcessor sits in front of the batch exporter: sampled spans pass as usual; an unsampled
//      span passes only if it carries a non-allow `inferguard.decision` (or `inferguard.fail_open`), in
//      which case it is handed on marked sampled. Allowed traffic in an unsampled trace exports nothing.
// Because the request span records either way, the block span is its child and the request span is the
// child of the caller's span: the exported pair sits in the caller's trace with no dangling parent of ours.
import { createRequire } from 'node:module';
import { TraceFlags, type Attributes, type Context, type Link, type SpanKind } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  SamplingDecision,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SamplingResult,
  type Span,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ATTR } from './attributes.js';

/**
 * The three OTLP exporters load on demand, only the one OTEL_EXPORTER_OTLP_PROTOCOL names: the gRPC one
 * brings @grpc/grpc-js and its protobuf tables, and a sidecar with OTEL_TRACES_EXPORTER=none loads none
 * (docs/sidecar.md "Memory"). They are CommonJS packages, so a synchronous require yields the very
 * module instances an `import` would.
 */
const require = createRequire(import.meta.url);
type ExporterModule = { OTLPTraceExporter: new () => SpanExporter };
const EXPORTER_PACKAGES = {
  grpc: '@opentelemetry/exporter-trace-otlp-grpc',
  'http/protobuf': '@opentelemetry/exporter-trace-otlp-proto',
  'http/json': '@opentelemetry/exporter-trace-otlp-http',
} as const;
function newExporter(protocol: OtlpProtocol): SpanExporter {
  return new (require(EXPORTER_PACKAGES[protocol]) as ExporterModule).OTLPTraceExporter();
}

type Env = Record<string, string | undefined>;

/** a span that must reach the collector whatever the sampler said */
export function isGuardSpan(attributes: Attributes): boolean {
  const decision = attributes[ATTR.decision];
  return (typeof decision === 'string' && decision !== 'allow') || attributes[ATTR.failOpen] === true;
}

export class GuardSampler implements Sampler {
  readonly #inner: Sampler;
  constructor(inner: Sampler) {
    this.#inner = inner;
  }
  shouldSample(
    context: Context,
    traceId: string,
    spanName: string,
    spanKind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    const result = this.#inner.shouldSample(context, traceId, spanName, spanKind, attributes, links);
    if (result.decision !== SamplingDecision.NOT_RECORD) return result;
    return { ...result, decision: SamplingDecision.RECORD };
  }
  toString(): string {
    return `GuardSampler{${this.#inner.toString()}}`;
  }
}

/** the same span, as the exporters read it, with the sampled flag set */
function promoted(span: ReadableSpan): ReadableSpan {
  const ctx = span.spanContext();
  const sampled = { ...ctx, traceFlags: ctx.traceFlags | TraceFlags.SAMPLED };
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => sampled,
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes: span.attributes,
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

export class GuardSpanProcessor implements SpanProcessor {
  readonly #inner: SpanProcessor[];
  constructor(inner: SpanProcessor[]) {
    this.#inner = inner;
  }
  onStart(span: Span, parentContext: Context): void {
    for (const p of this.#inner) p.onStart(span, parentContext);
  }
  onEnd(span: ReadableSpan): void {
    if (this.#inner.length === 0) return;
    let out: ReadableSpan | undefined = span;
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) {
      out = isGuardSpan(span.attributes) ? promoted(span) : undefined;
    }
    if (out) for (const p of this.#inner) p.onEnd(out);
  }
  async forceFlush(): Promise<void> {
    await Promise.all(this.#inner.map((p) => p.forceFlush()));
  }
  async shutdown(): Promise<void> {
    await Promise.all(this.#inner.map((p) => p.shutdown()));
  }
}

/** OTEL_TRACES_SAMPLER (+ _ARG) as the spec defines them; unknown values warn and use the default */
export function samplerFromEnv(env: Env, log?: Logger): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? '').trim() || 'parentbased_always_on';
  const ratio = (): number => {
    const raw = env.OTEL_TRACES_SAMPLER_ARG?.trim();
    const n = raw ? Number(raw) : NaN;
    if (Number.isFinite(n) && n >= 0 && n <= 1) return n;
    log?.warn({ value: raw ?? null }, 'OTEL_TRACES_SAMPLER_ARG must be a number in [0, 1]; using 1');
    return 1;
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      log?.warn({ value: name }, 'unknown OTEL_TRACES_SAMPLER; using parentbased_always_on');
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

/** the OTLP exporter for OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL; endpoints and headers are read by the exporter */
export function otlpExporter(env: Env, log?: Logger): { exporter: SpanExporter; protocol: OtlpProtocol } {
  const raw = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? '').trim();
  let protocol: OtlpProtocol = 'http/protobuf';
  if (raw === 'grpc' || raw === 'http/json' || raw === 'http/protobuf') protocol = raw;
  else if (raw !== '') log?.warn({ value: raw }, 'unknown OTEL_EXPORTER_OTLP_PROTOCOL; using http/protobuf');
  return { exporter: newExporter(protocol), protocol };
}

/** span processors for OTEL_TRACES_EXPORTER (otlp by default, console, none) */
export function spanProcessorsFromEnv(
  env: Env,
  log?: Logger,
): { processors: SpanProcessor[]; exporters: string[] } {
  const names = [
    ...new Set(
      (env.OTEL_TRACES_EXPORTER ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
  if (names.length === 0) names.push('otlp');
  if (names.includes('none')) return { processors: [], exporters: [] };
  const processors: SpanProcessor[] = [];
  const exporters: string[] = [];
  for (const name of names) {
    if (name === 'otlp') {
      const { exporter, protocol } = otlpExporter(env, log);
      // BatchSpanProcessor reads OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, … itself
      processors.push(new BatchSpanProcessor(exporter));
      exporters.push(`otlp (${protocol})`);
    } else if (name === 'console') {
      processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
      exporters.push('console');
    } else {
      log?.warn(
        { value: name },
        'unsupported OTEL_TRACES_EXPORTER value ignored (supported: otlp, console, none)',
      );
    }
  }
  return { processors, exporters };
}
