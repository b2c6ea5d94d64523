// The tracing pipeline, registered with @opentelemetry/api: what NodeSDK.start() did for this sidecar,
// without NodeSDK. NodeSDK loads the metrics and logs SDKs, every OTLP exporter for traces, metrics and
// logs, Zipkin, Prometheus and the instrumentation registry whatever is configured (~5 MiB of RSS and
// 3 MiB of V8 heap in a sidecar that uses none of them; docs/sidecar.md "Memory"). The pieces kept are
// the ones NodeSDK used with our configuration, reading the same OTEL_* variables:
//   - OTEL_SDK_DISABLED=true: no tracer provider (the API's no-op tracer), but the propagator is, so the
//     caller's trace context passes through to the model server and clients get the caller's trace id;
//   - the resource: ours, then the env (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME), process and host
//     detectors over it, or the set OTEL_NODE_RESOURCE_DETECTORS names;
//   - OTEL_PROPAGATORS (default tracecontext,baggage; b3, b3multi, jaeger load on demand; none);
//   - span limits from OTEL_SPAN_* / OTEL_ATTRIBUTE_* (read by the tracer provider itself).
// No context manager is registered: the sidecar passes every context explicitly (the request span's
// parent is the extracted traceparent, decision spans are its children), so nothing reads
// context.active(), and async_hooks bookkeeping on every callback would be paid for nothing.
import { createRequire } from 'node:module';
import { diag, propagation, trace, type TextMapPropagator } from '@opentelemetry/api';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
  getBooleanFromEnv,
  getStringListFromEnv,
} from '@opentelemetry/core';
import {
  detectResources,
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
  serviceInstanceIdDetector,
  type Resource,
  type ResourceDetector,
} from '@opentelemetry/resources';
import { BasicTracerProvider, type Sampler, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

const require = createRequire(import.meta.url);

export interface TracingOptions {
  resource: Resource;
  sampler: Sampler;
  processors: SpanProcessor[];
}

export interface Tracing {
  shutdown(): Promise<void>;
}

const DETECTORS: Record<string, ResourceDetector> = {
  env: envDetector,
  host: hostDetector,
  os: osDetector,
  process: processDetector,
  serviceinstance: serviceInstanceIdDetector,
};

/** OTEL_NODE_RESOURCE_DETECTORS as NodeSDK reads it; unset = env, process, host */
function detectors(): ResourceDetector[] {
  const names = getStringListFromEnv('OTEL_NODE_RESOURCE_DETECTORS');
  if (!names || names.length === 0) return [envDetector, processDetector, hostDetector];
  if (names.includes('all')) return Object.values(DETECTORS);
  if (names.includes('none')) return [];
  return names.flatMap((n) => {
    const d = DETECTORS[n];
    if (!d) diag.warn(`Invalid resource detector "${n}" specified in OTEL_NODE_RESOURCE_DETECTORS`);
    return d ? [d] : [];
  });
}

type B3Module = {
  B3Propagator: new (opts?: { injectEncoding?: number }) => TextMapPropagator;
  B3InjectEncoding: { MULTI_HEADER: number };
};

/** OTEL_PROPAGATORS; undefined = none registered */
function propagator(): TextMapPropagator | undefined {
  const names = [...new Set(getStringListFromEnv('OTEL_PROPAGATORS') ?? ['tracecontext', 'baggage'])];
  if (names.includes('none')) return undefined;
  const make: Record<string, () => TextMapPropagator> = {
    tracecontext: () => new W3CTraceContextPropagator(),
    baggage: () => new W3CBaggagePropagator(),
    b3: () => new (require('@opentelemetry/propagator-b3') as B3Module).B3Propagator(),
    b3multi: () => {
      const m = require('@opentelemetry/propagator-b3') as B3Module;
      return new m.B3Propagator({ injectEncoding: m.B3InjectEncoding.MULTI_HEADER });
    },
    jaeger: () =>
      new (
        require('@opentelemetry/propagator-jaeger') as { JaegerPropagator: new () => TextMapPropagator }
      ).JaegerPropagator(),
  };
  const list = names.flatMap((n) => {
    const p = make[n]?.();
    if (!p) diag.warn(`Propagator "${n}" requested through environment variable is unavailable.`);
    return p ? [p] : [];
  });
  return list.length ? new CompositePropagator({ propagators: list }) : undefined;
}

/**
 * register the propagator and the tracer provider; with OTEL_SDK_DISABLED=true only the propagator
 * (returns undefined), so the caller's trace context still reaches the model server and its trace id
 * is the one clients are given (NodeSDK registered nothing, and the caller's trace id was lost)
 */
export function startTracing(opts: TracingOptions): Tracing | undefined {
  const p = propagator();
  if (p) propagation.setGlobalPropagator(p);
  if (getBooleanFromEnv('OTEL_SDK_DISABLED')) return undefined;
  const provider = new BasicTracerProvider({
    resource: opts.resource.merge(detectResources({ detectors: detectors() })),
    sampler: opts.sampler,
    spanProcessors: opts.processors,
  });
  trace.setGlobalTracerProvider(provider);
  return { shutdown: () => provider.shutdown() };
}
