// A real OTLP trace receiver, the part of an OpenTelemetry Collector (or Jaeger's 4317/4318 ports) that
// tests, the demo and e2e need: the gRPC service `opentelemetry.proto.collector.trace.v1.TraceService/Export`
// and HTTP `POST /v1/traces` in protobuf and JSON. Every exported span is decoded into a plain object
// (hex ids, attributes as a flat record) so tests can assert on what an operator would see in Jaeger.
//
// Like Jaeger's query API it also answers `GET /api/v3/traces/{traceId}` with the trace as OTLP-JSON
// (`{"result":{"resourceSpans":[…]}}`, 404 until spans arrive), so the demo can show that shape.
//
// Run directly for the demo: `tsx testing/otlp-receiver.ts [--host H] [--grpc-port P] [--http-port P]`
// prints `listening grpc=H:P http=http://H:P`, then one JSON line per span received.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync, inflateSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ROOT } from './cli.js';

export type AttrValue = string | number | boolean | null | AttrValue[] | { [key: string]: AttrValue };
export type Attributes = Record<string, AttrValue>;
export type Transport = 'grpc' | 'http/protobuf' | 'http/json';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** undefined for a root span */
  parentSpanId: string | undefined;
  traceState?: string;
  /** W3C trace flags of the span's own context (bit 0 = sampled), when the exporter sent them */
  flags?: number;
  name: string;
  /** 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Attributes;
  /** 0 unset, 1 ok, 2 error */
  status: { code: number; message?: string };
  events: { name: string; timeUnixNano: bigint; attributes: Attributes }[];
  links: { traceId: string; spanId: string; attributes: Attributes }[];
  resource: Attributes;
  scope: { name: string; version?: string };
  transport: Transport;
}

export interface OtlpReceiver {
  /** `127.0.0.1:PORT` for OTEL_EXPORTER_OTLP_ENDPOINT with protocol grpc (use `http://` + it) */
  readonly grpcAddress: string;
  /** `http://127.0.0.1:PORT`: the base OTEL_EXPORTER_OTLP_ENDPOINT for http/protobuf and http/json */
  readonly httpUrl: string;
  /** every span received so far, in arrival order */
  readonly spans: ReceivedSpan[];
  /** one entry per Export call: how it arrived and how many spans it carried */
  readonly exports: { transport: Transport; spans: number; encoding?: string }[];
  /** resolves with the matching spans once `count` (default 1) of them have arrived */
  waitForSpans(
    match: (s: ReceivedSpan) => boolean,
    opts?: { count?: number; timeoutMs?: number },
  ): Promise<ReceivedSpan[]>;
  clear(): void;
  close(): Promise<void>;
}

const PROTO_DIR = path.join(ROOT, 'proto');
const SERVICE = 'opentelemetry.proto.collector.trace.v1.TraceService';

interface WireAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: WireAnyValue[] };
  kvlistValue?: { values?: WireKeyValue[] };
  bytesValue?: Buffer | string;
}
interface WireKeyValue {
  key: string;
  value?: WireAnyValue;
}
type WireId = Buffer | Uint8Array | string | undefined;
interface WireSpan {
  traceId?: WireId;
  spanId?: WireId;
  parentSpanId?: WireId;
  traceState?: string;
  flags?: number;
  name?: string;
  kind?: number | string;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: WireKeyValue[];
  events?: { name?: string; timeUnixNano?: string | number; attributes?: WireKeyValue[] }[];
  links?: { traceId?: WireId; spanId?: WireId; attributes?: WireKeyValue[] }[];
  status?: { code?: number | string; message?: string };
}
interface WireRequest {
  resourceSpans?: {
    resource?: { attributes?: WireKeyValue[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: WireSpan[] }[];
  }[];
}

const SPAN_KINDS = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
];
const STATUS_CODES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'];

function enumNumber(v: number | string | undefined, names: string[]): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const i = names.indexOf(v);
  return i >= 0 ? i : Number(v) || 0;
}

/** protobuf ids are bytes; OTLP/JSON ids are hex strings (not base64, per the OTLP spec) */
function hexId(v: WireId): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v.toLowerCase();
  return Buffer.from(v).toString('hex');
}

function anyValue(v: WireAnyValue | undefined): AttrValue {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue !== undefined) return attributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) {
    return typeof v.bytesValue === 'string' ? v.bytesValue : Buffer.from(v.bytesValue).toString('base64');
  }
  return null;
}

function attributes(kvs: WireKeyValue[] | undefined): Attributes {
  const out: Attributes = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

function nanos(v: string | number | undefined): bigint {
  return v === undefined ? 0n : BigInt(v);
}

/** ExportTraceServiceRequest (protobuf-decoded or OTLP/JSON) → plain spans */
export function decodeExport(req: WireRequest, transport: Transport): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version || undefined };
      for (const s of ss.spans ?? []) {
        const parent = hexId(s.parentSpanId);
        out.push({
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: parent === '' ? undefined : parent,
          traceState: s.traceState || undefined,
          flags: s.flags,
          name: s.name ?? '',
          kind: enumNumber(s.kind, SPAN_KINDS),
          startTimeUnixNano: nanos(s.startTimeUnixNano),
          endTimeUnixNano: nanos(s.endTimeUnixNano),
          attributes: attributes(s.attributes),
          status: { code: enumNumber(s.status?.code, STATUS_CODES), message: s.status?.message || undefined },
          events: (s.events ?? []).map((e) => ({
            name: e.name ?? '',
            timeUnixNano: nanos(e.timeUnixNano),
            attributes: attributes(e.attributes),
          })),
          links: (s.links ?? []).map((l) => ({
            traceId: hexId(l.traceId),
            spanId: hexId(l.spanId),
            attributes: attributes(l.attributes),
          })),
          resource,
          scope,
          transport,
        });
      }
    }
  }
  return out;
}

let traceServiceDef: protoLoader.PackageDefinition | undefined;
function traceService(): protoLoader.PackageDefinition {
  traceServiceDef ??= protoLoader.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: false,
    longs: String,
    enums: Number,
    defaults: false,
  });
  return traceServiceDef;
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function toAnyValue(v: AttrValue): WireAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { intValue: v } : { doubleValue: v };
  if (Array.isArray(v)) return { arrayValue: { values: v.map(toAnyValue) } };
  if (v && typeof v === 'object') return { kvlistValue: { values: toKeyValues(v) } };
  return {};
}
function toKeyValues(a: Attributes): WireKeyValue[] {
  return Object.entries(a).map(([key, value]) => ({ key, value: toAnyValue(value) }));
}

/** received spans back to OTLP-JSON, grouped by resource and scope, as Jaeger's /api/v3 answers */
export function toOtlpJson(spans: ReceivedSpan[]): { resourceSpans: unknown[] } {
  const byResource = new Map<string, { resource: Attributes; scopes: Map<string, ReceivedSpan[]> }>();
  for (const s of spans) {
    const rk = JSON.stringify(s.resource);
    let r = byResource.get(rk);
    if (!r) byResource.set(rk, (r = { resource: s.resource, scopes: new Map() }));
    const sk = JSON.stringify(s.scope);
    r.scopes.set(sk, [...(r.scopes.get(sk) ?? []), s]);
  }
  return {
    resourceSpans: [...byResource.values()].map((r) => ({
      resource: { attributes: toKeyValues(r.resource) },
      scopeSpans: [...r.scopes.values()].map((list) => ({
        scope: list[0].scope,
        spans: list.map((s) => ({
          traceId: s.traceId,
          spanId: s.spanId,
          ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
          ...(s.traceState ? { traceState: s.traceState } : {}),
          ...(s.flags !== undefined ? { flags: s.flags } : {}),
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: s.startTimeUnixNano.toString(),
          endTimeUnixNano: s.endTimeUnixNano.toString(),
          attributes: toKeyValues(s.attributes),
          events: s.events.map((e) => ({
            timeUnixNano: e.timeUnixNano.toString(),
            name: e.name,
            attributes: toKeyValues(e.attributes),
          })),
          status: s.status,
        })),
      })),
    })),
  };
}

export async function startOtlpReceiver(
  opts: {
    host?: string;
    grpcPort?: number;
    httpPort?: number;
    onSpans?: (spans: ReceivedSpan[]) => void;
  } = {},
): Promise<OtlpReceiver> {
  const host = opts.host ?? '127.0.0.1';
  const spans: ReceivedSpan[] = [];
  const exports: { transport: Transport; spans: number; encoding?: string }[] = [];
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const def = traceService();
  const method = (def[SERVICE] as protoLoader.ServiceDefinition).Export;

  // encoding: the HTTP content-encoding (grpc-js decompresses before handlers and hides grpc-encoding)
  const accept = (req: WireRequest, transport: Transport, encoding?: string): void => {
    const got = decodeExport(req, transport);
    spans.push(...got);
    exports.push({ transport, spans: got.length, ...(encoding ? { encoding } : {}) });
    opts.onSpans?.(got);
    events.emit('spans');
  };

  // gRPC: the TraceService exactly as a collector serves it
  const grpcServer = new grpc.Server();
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    opentelemetry: {
      proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } };
    };
  };
  grpcServer.addService(pkg.opentelemetry.proto.collector.trace.v1.TraceService.service, {
    Export: (call: grpc.ServerUnaryCall<WireRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      accept(call.request, 'grpc');
      cb(null, {});
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      `${host.includes(':') ? `[${host}]` : host}:${opts.grpcPort ?? 0}`,
      grpc.ServerCredentials.createInsecure(),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );

  // HTTP: POST /v1/traces, protobuf or JSON, optionally gzip/deflate-compressed
  const httpServer = http.createServer((req, res) => {
    const fail = (status: number, message: string): void => {
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ code: status, message }));
    };
    const url = (req.url ?? '').split('?')[0];
    const query = /^\/api\/v3\/traces\/([0-9a-f]{32})$/.exec(url);
    if (req.method === 'GET' && query) {
      const trace = spans.filter((s) => s.traceId === query[1]);
      if (trace.length === 0) return fail(404, 'trace not found');
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ result: toOtlpJson(trace) }));
      return;
    }
    if (req.method !== 'POST' || url !== '/v1/traces') return fail(404, 'not found');
    readBody(req, 64 << 20).then(
      (raw) => {
        let body = raw;
        const encoding = (req.headers['content-encoding'] ?? '').toLowerCase();
        try {
          if (encoding === 'gzip') body = gunzipSync(raw);
          else if (encoding === 'deflate') body = inflateSync(raw);
        } catch {
          return fail(400, 'bad content-encoding');
        }
        const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
        try {
          if (type === 'application/x-protobuf') {
            accept(method.requestDeserialize(body) as WireRequest, 'http/protobuf', encoding || undefined);
            // an empty ExportTraceServiceResponse is zero bytes on the wire
            res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
          } else if (type === 'application/json') {
            accept(JSON.parse(body.toString('utf8')) as WireRequest, 'http/json', encoding || undefined);
            res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          } else {
            fail(415, `unsupported content-type ${type || '(none)'}`);
          }
        } catch (err) {
          fail(400, `cannot decode: ${err instanceof Error ? err.message : String(err)}`);
        }
      },
      () => fail(413, 'body too large'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(opts.httpPort ?? 0, host, resolve);
  });
  const httpPort = (httpServer.address() as { port: number }).port;

  return {
    grpcAddress: `${host}:${grpcPort}`,
    httpUrl: `http://${host}:${httpPort}`,
    spans,
    exports,
    waitForSpans(match, { count = 1, timeoutMs = 10_000 } = {}) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = spans.filter(match);
          if (found.length < count) return false;
          clearTimeout(timer);
          events.off('spans', check);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          events.off('spans', check);
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${count} matching span(s); received ${spans.length}: ` +
                spans.map((s) => s.name).join(', '),
            ),
          );
        }, timeoutMs);
        if (!check()) events.on('spans', check);
      });
    },
    clear() {
      spans.length = 0;
      exports.length = 0;
    },
    async close() {
      httpServer.closeAllConnections();
      await Promise.all([
        new Promise<void>((resolve) => httpServer.close(() => resolve())),
        new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcServer.forceShutdown(), 1000);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
      ]);
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i === -1 ? undefined : process.argv[i + 1];
  };
  const rx = await startOtlpReceiver({
    host: arg('--host'),
    grpcPort: arg('--grpc-port') ? Number(arg('--grpc-port')) : undefined,
    httpPort: arg('--http-port') ? Number(arg('--http-port')) : undefined,
    onSpans: (got) => {
      for (const s of got) {
        process.stdout.write(
          JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n',
        );
      }
    },
  });
  process.stdout.write(`listening grpc=${rx.grpcAddress} http=${rx.httpUrl}\n`);
  const stop = (): void => void rx.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
