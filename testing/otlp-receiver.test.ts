// The receiver against the real OpenTelemetry OTLP exporters, over each transport, compressed or not:
// what they send must come out as the same plain span.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver, type Transport } from './otlp-receiver.js';

let rx: OtlpReceiver;
beforeAll(async () => {
  rx = await startOtlpReceiver();
});
afterAll(async () => {
  await rx.close();
});

type Compression = 'none' | 'gzip';
const exporters: Record<Transport, (c: Compression) => SpanExporter> = {
  grpc: (compression) =>
    new GrpcExporter({ url: `http://${rx.grpcAddress}`, compression: compression as never }),
  'http/protobuf': (compression) =>
    new ProtoExporter({ url: `${rx.httpUrl}/v1/traces`, compression: compression as never }),
  'http/json': (compression) =>
    new JsonExporter({ url: `${rx.httpUrl}/v1/traces`, compression: compression as never }),
};

async function exportOne(transport: Transport, compression: Compression, name: string) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'receiver-test', 'k8s.pod.name': 'p-0' }),
    spanProcessors: [new SimpleSpanProcessor(exporters[transport](compression))],
  });
  const tracer = provider.getTracer('scope-x', '1.2.3');
  const parent = tracer.startSpan('parent');
  const span = tracer.startSpan(
    name,
    {
      kind: SpanKind.SERVER,
      attributes: { s: 'text', i: 42, d: 1.5, b: true, arr: ['a', 'b'] },
    },
    trace.setSpan(ROOT_CONTEXT, parent),
  );
  span.addEvent('ev', { k: 'v' });
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'nope' });
  span.end();
  parent.end();
  await provider.forceFlush();
  await provider.shutdown();
  return { span, parent };
}

describe('OTLP receiver', () => {
  it.each([
    ['grpc', 'none'],
    ['grpc', 'gzip'],
    ['http/protobuf', 'none'],
    ['http/protobuf', 'gzip'],
    ['http/json', 'none'],
    ['http/json', 'gzip'],
  ] as [Transport, Compression][])(
    'decodes what the real %s exporter sends (compression %s)',
    async (transport, compression) => {
      const name = `span-${transport}-${compression}`;
      const { span, parent } = await exportOne(transport, compression, name);
      const [got] = await rx.waitForSpans((s) => s.name === name);
      expect(got).toMatchObject({
        traceId: span.spanContext().traceId,
        spanId: span.spanContext().spanId,
        parentSpanId: parent.spanContext().spanId,
        kind: 2,
        attributes: { s: 'text', i: 42, d: 1.5, b: true, arr: ['a', 'b'] },
        status: { code: 2, message: 'nope' },
        resource: { 'service.name': 'receiver-test', 'k8s.pod.name': 'p-0' },
        scope: { name: 'scope-x', version: '1.2.3' },
        transport,
      });
      expect(got.events.map((e) => [e.name, e.attributes])).toEqual([['ev', { k: 'v' }]]);
      // grpc-js decompresses and hides grpc-encoding from handlers; HTTP bodies arrive gzip-encoded
      if (transport !== 'grpc')
        expect(rx.exports.at(-1)?.encoding).toBe(compression === 'gzip' ? 'gzip' : undefined);
      expect(got.endTimeUnixNano).toBeGreaterThanOrEqual(got.startTimeUnixNano);
      const [root] = rx.spans.filter((s) => s.spanId === parent.spanContext().spanId);
      expect(root.parentSpanId).toBeUndefined();
    },
  );

  it('answers GET /api/v3/traces/{id} with the trace as OTLP-JSON, like Jaeger', async () => {
    const { span } = await exportOne('http/protobuf', 'none', 'queried');
    await rx.waitForSpans((s) => s.name === 'queried');
    const traceId = span.spanContext().traceId;
    const res = await fetch(`${rx.httpUrl}/api/v3/traces/${traceId}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      result: { resourceSpans: { resource: unknown; scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
    };
    const spans = body.result.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
    expect(spans.map((s) => s.name).sort()).toEqual(['parent', 'queried']);
    expect(spans.find((s) => s.name === 'queried')).toMatchObject({
      traceId,
      kind: 2,
      attributes: expect.arrayContaining([{ key: 'i', value: { intValue: 42 } }]),
      status: { code: 2, message: 'nope' },
    });
    expect((await fetch(`${rx.httpUrl}/api/v3/traces/${'0'.repeat(32)}`)).status).toBe(404);
  });

  it('refuses bodies it cannot decode, with a status the exporter reports', async () => {
    const post = (type: string, body: string) =>
      fetch(`${rx.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': type }, body });
    expect((await post('text/plain', 'x')).status).toBe(415);
    expect((await post('application/json', '{not json')).status).toBe(400);
    expect((await fetch(`${rx.httpUrl}/v1/logs`, { method: 'POST' })).status).toBe(404);
  });
});
