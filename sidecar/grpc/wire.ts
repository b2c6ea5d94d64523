// Small helpers shared by the unary and streaming paths: metadata in and out, statuses we send.
import { Metadata, status as GrpcStatus, type ServerErrorResponse, type StatusObject } from '@grpc/grpc-js';
import type { RequestTrace } from '../context.js';
import { GuardError } from '../errors.js';

/** gRPC metadata as the plain map Telemetry.startRequest takes (binary values skipped). */
export function metadataMap(md: Metadata): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(md.toJSON())) {
    if (k.endsWith('-bin')) continue;
    const strings = v.filter((x): x is string => typeof x === 'string');
    out[k] = strings.length === 1 ? strings[0] : strings;
  }
  return out;
}

// grpc-js fills these from the connection or the call itself; forwarding them would duplicate or lie.
const HOP_BY_HOP = [
  'user-agent',
  'host',
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'accept-encoding',
  'te',
  'content-type',
];

/** The client's metadata for the upstream call, with the sidecar's span context as traceparent. */
export function upstreamMetadata(incoming: Metadata, trace: RequestTrace): Metadata {
  const md = incoming.clone();
  for (const k of HOP_BY_HOP) md.remove(k);
  const carrier: Record<string, string> = {};
  trace.inject(carrier);
  for (const [k, v] of Object.entries(carrier)) md.set(k.toLowerCase(), v);
  return md;
}

/** Response headers from the upstream, for call.sendMetadata. */
export function responseHeaders(md: Metadata): Metadata {
  const out = md.clone();
  for (const k of ['content-type', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'date', 'te'])
    out.remove(k);
  return out;
}

/** The status we send for one of our own errors: SPEC §5 details and trailers. */
export function guardStatus(
  err: GuardError,
  trace: RequestTrace,
  rule?: string,
): ServerErrorResponse & { code: GrpcStatus } {
  const metadata = new Metadata();
  if (rule) metadata.set('inferguard-rule', rule);
  metadata.set('inferguard-trace-id', trace.traceId);
  return { name: 'GuardError', message: err.message, code: err.grpc, details: err.message, metadata };
}

/** An upstream status to pass to the client as-is (code, details, trailers). */
export function passStatus(st: StatusObject): ServerErrorResponse & { code: GrpcStatus } {
  return {
    name: 'UpstreamStatus',
    message: st.details,
    code: st.code,
    details: st.details,
    metadata: st.metadata,
  };
}

export function statusName(code: number): string {
  return GrpcStatus[code] ?? String(code);
}
