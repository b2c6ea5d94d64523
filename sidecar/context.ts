// What every protocol adapter is handed by sidecar/main.ts. Adapters decode their wire into the
// engine's exchanges, call the engine, and report decisions through `telemetry`; they never read
// flags, env or files themselves.
import type { Context } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { CompiledPolicy, Decision, Direction, Finding } from '../policy/index.js';

export type FailMode = 'closed' | 'open';

export interface SidecarContext {
  /** the policy in force right now (hot reload swaps it atomically; read it once per request) */
  policy(): CompiledPolicy;
  /** what to do when the engine itself throws */
  readonly fail: FailMode;
  readonly telemetry: Telemetry;
  readonly log: Logger;
  /** pod identity from the downward API (POD_NAME, POD_NAMESPACE) */
  readonly pod: { name?: string; namespace?: string };
}

export interface RequestInfo {
  protocol: 'grpc' | 'http';
  /** gen_ai.operation.name: chat, text_completion, embeddings, generate, infer, ... */
  operation: string;
  model?: string;
  /** gRPC: full method path, e.g. /inference.GRPCInferenceService/ModelInfer */
  rpcMethod?: string;
  /** HTTP: request path without the query string */
  urlPath?: string;
  /** HTTP: request method (GET, POST) for the http.request.method span attribute */
  httpMethod?: string;
}

export interface DecisionEvent {
  direction: Direction;
  decision: Decision;
  findings: Finding[];
  /** set for tool-call blocks */
  toolName?: string;
  /** the engine faulted and --fail open forwarded the request */
  failOpen?: boolean;
}

export interface RequestTrace {
  /** 32 hex chars; returned to clients in errors (trace_id, inferguard-trace-id) */
  readonly traceId: string;
  /** add traceparent/tracestate for the upstream call, so the model server joins the trace */
  inject(carrier: Record<string, string>): void;
  /** model name learned after the request was decoded */
  setModel(model: string | undefined): void;
  /** every non-allow decision: span (exported even when unsampled), metrics, one log line */
  decision(ev: DecisionEvent): void;
  scanned(direction: Direction, seconds: number): void;
  upstream(seconds: number): void;
  /** exactly once per request */
  end(outcome: { decision: Decision; status: string | number }): void;
}

export interface Telemetry {
  /** continue the caller's W3C trace context (HTTP headers or gRPC metadata as a plain map) */
  startRequest(headers: Record<string, string | string[] | undefined>, info: RequestInfo): RequestTrace;
  /** policy reload result, for the metric and log */
  policyReloaded(ok: boolean, hash: string | undefined): void;
  shutdown(): Promise<void>;
}

export type { Context };

export interface HostPort {
  host: string;
  port: number;
}

export interface ListenerSpec {
  listen: HostPort;
  upstream: HostPort;
  /** gRPC: largest message accepted or sent, either direction (default 64 MiB); beyond: RESOURCE_EXHAUSTED */
  maxMessageBytes?: number;
  /** open client connections at once (default 1024); more are closed on accept */
  maxConnections?: number;
  /** gRPC: concurrent HTTP/2 streams per client connection (default 256); more wait at the client */
  maxConcurrentStreams?: number;
  /** gRPC: largest request metadata, HTTP/2 header-list bytes (default 16 KiB); beyond: RESOURCE_EXHAUSTED */
  maxMetadataBytes?: number;
  /** HTTP: time to receive a request's headers (default 20 s) and the whole request (default 300 s) */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
}

export interface Listener {
  /** the bound address (port 0 resolves to the real port) */
  readonly address: HostPort;
  readonly protocol: 'grpc' | 'http';
  /** whether the upstream model server answers (for /readyz) */
  upstreamReady(): Promise<boolean>;
  /** stop accepting new calls, let in-flight ones finish for up to graceMs, then close everything */
  close(graceMs?: number): Promise<void>;
}

/** sidecar/grpc/index.ts exports startGrpcListener, sidecar/http/index.ts startHttpListener */
export type StartListener = (ctx: SidecarContext, spec: ListenerSpec) => Promise<Listener>;
