// The gRPC listener: KServe Open Inference Protocol v2 and Triton (inference.GRPCInferenceService) plus
// grpc.health.v1.Health, proxied to one upstream model server. See docs/grpc.md.
//
// Built on node:http2 directly (h2c): every stream on the listener is relayed to a stream on a shared
// upstream session. ModelInfer and ModelStreamInfer are decoded and guarded message by message; the
// other known methods are relayed as bytes; unknown methods are denied with PERMISSION_DENIED naming
// the method, or, if the policy in force lists them in spec.grpc.allowMethods, relayed with every
// message's bytes scanned as text.
import http2 from 'node:http2';
import type net from 'node:net';
import type { Listener, ListenerSpec, SidecarContext, StartListener, HostPort } from '../context.js';
import { GuardError } from '../errors.js';
import { CallState } from './call.js';
import { decodeHealthStatus, decodeServerReady, KNOWN_METHODS } from './codec.js';
import { inspectRaw, inspectRequest, inspectResponse } from './guard.js';
import { operationOf, Relay, respondStatus, type MessageHooks, type RelayEnv } from './proxy.js';
import { streamInfer } from './stream.js';
import { rawUnary, SESSION_WINDOW, UpstreamPool } from './upstream.js';
import { guardStatus, metadataBytes, parseDeadline, type Headers } from './wire.js';

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** as the HTTP listener's header limit (Node's 16 KiB) */
export const DEFAULT_MAX_METADATA_BYTES = 16 * 1024;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 256;
export const DEFAULT_MAX_CONNECTIONS = 1024;
const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';
const MODEL_STREAM_INFER = '/inference.GRPCInferenceService/ModelStreamInfer';
const SERVER_READY = '/inference.GRPCInferenceService/ServerReady';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const KNOWN = new Set(KNOWN_METHODS.map((m) => m.path));

const OK = 0;
const INTERNAL = 13;
const UNIMPLEMENTED = 12;

export function hostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** spec.grpc.allowMethods entries: `/pkg.Service/Method`, `pkg.Service/Method`, `/pkg.Service/*`, `*` */
export function methodAllowed(allow: readonly string[], path: string): boolean {
  for (const raw of allow) {
    const entry = raw.startsWith('/') ? raw : `/${raw}`;
    if (raw === '*' || entry === path) return true;
    if (entry.endsWith('/*') && path.startsWith(entry.slice(0, -1))) return true;
  }
  return false;
}

export const startGrpcListener: StartListener = async (
  ctx: SidecarContext,
  spec: ListenerSpec,
): Promise<Listener> => {
  const maxBytes = spec.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const maxMetadata = spec.maxMetadataBytes ?? DEFAULT_MAX_METADATA_BYTES;
  const pool = new UpstreamPool(spec.upstream.host, spec.upstream.port);
  const env: RelayEnv = { ctx, pool, maxBytes };

  const server = http2.createServer({
    // like grpc-js: Node's default (10 MB of queued frames) makes busy sessions fail with ENHANCE_YOUR_CALM
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
    maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    // metadata is bounded by --grpc-max-metadata-bytes (in bytes), not by Node's 128 header fields
    maxHeaderListPairs: 4096,
    settings: {
      // SETTINGS_MAX_CONCURRENT_STREAMS: a client's streams past it wait in the client until one ends
      maxConcurrentStreams: spec.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
      enablePush: false,
    },
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  let draining = false;
  server.on('session', (s: http2.ServerHttp2Session) => {
    if (draining) return s.close();
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
    s.on('connect', () => s.setLocalWindowSize(SESSION_WINDOW));
  });
  // Nagle's algorithm would hold each small response until the client's delayed ACK (up to 40 ms)
  server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  capConnections(server, ctx, spec.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  server.on('stream', (down: http2.ServerHttp2Stream, headers: Headers, _flags: number, raw: string[]) =>
    onStream(env, down, headers, raw, maxMetadata),
  );

  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(spec.listen.port, spec.listen.host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
  server.on('error', (err) => ctx.log.warn({ err: err.message }, 'grpc listener error'));
  ctx.log.info(
    { listen: hostPort({ ...spec.listen, port: bound }), upstream: hostPort(spec.upstream) },
    'grpc listener started',
  );

  let closing: Promise<void> | undefined;
  return {
    address: { host: spec.listen.host, port: bound },
    protocol: 'grpc',
    upstreamReady: () => upstreamReady(pool),
    close(graceMs = 10_000): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        // no new connections; GOAWAY on every open one (its calls in flight finish, new streams are
        // refused); after the grace period whatever is left is cut
        draining = true;
        let pending = 1 + sessions.size;
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          pool.destroy();
        }, graceMs);
        timer.unref();
        const done = (): void => {
          if (--pending > 0) return;
          clearTimeout(timer);
          pool.close();
          resolve();
        };
        server.close(() => done());
        for (const s of sessions) {
          if (s.closed || s.destroyed) done();
          else {
            s.once('close', done);
            s.close();
          }
        }
      });
      return closing;
    },
  };
};

function onStream(
  env: RelayEnv,
  down: http2.ServerHttp2Stream,
  headers: Headers,
  raw: string[],
  maxMetadata: number,
): void {
  down.on('error', () => {});
  const path = headers[':path'] ?? '';
  const contentType = headers['content-type'];
  if (
    headers[':method'] !== 'POST' ||
    typeof contentType !== 'string' ||
    !contentType.startsWith('application/grpc')
  ) {
    // not a gRPC call: what grpc-js answers too
    if (!down.headersSent && !down.destroyed) {
      down.respond(
        { ':status': 415, 'grpc-status': String(UNIMPLEMENTED), 'grpc-message': 'not a gRPC request' },
        { endStream: true },
      );
      down.resume();
    }
    return;
  }
  const { ctx } = env;
  if (metadataBytes(raw) > maxMetadata) {
    // refused before anything is read or forwarded; its messages are dropped
    return refuse(
      ctx,
      down,
      headers,
      path,
      new GuardError('request_too_large', {
        limit: '--grpc-max-metadata-bytes',
        max: maxMetadata,
      }),
    );
  }
  let deadline: number | undefined;
  try {
    deadline = parseDeadline(headers['grpc-timeout']);
  } catch (err) {
    return respondStatus(down, { code: INTERNAL, details: (err as Error).message });
  }

  let hooks: ((r: Relay) => MessageHooks) | undefined;
  let st: CallState | undefined;
  if (path === MODEL_INFER) hooks = inferHooks;
  else if (path === MODEL_STREAM_INFER) hooks = streamInfer;
  else if (!KNOWN.has(path)) {
    // read the policy once: the same snapshot decides and then guards the call
    st = new CallState(ctx, path, headers, operationOf(path));
    if (!methodAllowed(st.policy.grpc.allowMethods, path)) {
      st.note('block');
      const s = guardStatus(
        new GuardError('route_not_allowed', { route: path, key: 'grpc.allowMethods' }),
        st.trace,
      );
      respondStatus(down, s);
      return st.end(s.code);
    }
    hooks = rawHooks;
  }
  new Relay(env, down, headers, path, deadline, hooks, st).start();
}

function refuse(
  ctx: SidecarContext,
  down: http2.ServerHttp2Stream,
  headers: Headers,
  path: string,
  err: GuardError,
): void {
  const st = new CallState(ctx, path, headers, 'other');
  st.note('block');
  const s = guardStatus(err, st.trace);
  respondStatus(down, s);
  st.end(s.code);
}

/** ModelInfer: the request and the response are decoded and guarded */
function inferHooks(relay: Relay): MessageHooks {
  const st = relay.st;
  let requests = 0;
  let systemPrompt: string | undefined;
  return {
    request(msg) {
      if (++requests > 1) {
        relay.fail(
          new GuardError('malformed_request', { reason: 'a unary call carries one request message' }),
        );
        return undefined;
      }
      const r = inspectRequest(st, msg);
      st.note(r.verdict.decision);
      if (!r.verdict.ok) {
        relay.fail(r.verdict.error, r.verdict.rule);
        return undefined;
      }
      systemPrompt = r.systemPrompt;
      return r.verdict.bytes;
    },
    response(msg) {
      const v = inspectResponse(st, msg, systemPrompt);
      st.note(v.decision);
      if (!v.ok) {
        relay.fail(v.error, v.rule);
        return undefined;
      }
      return v.bytes;
    },
  };
}

/** allow-listed unknown methods: every message's raw bytes are scanned as text */
function rawHooks(relay: Relay): MessageHooks {
  const st = relay.st;
  const scan = (msg: Buffer, direction: 'input' | 'output'): Buffer | undefined => {
    const v = inspectRaw(st, msg, direction);
    st.note(v.decision);
    if (v.ok) return msg;
    relay.fail(v.error, v.rule);
    return undefined;
  };
  return { request: (m) => scan(m, 'input'), response: (m) => scan(m, 'output') };
}

/**
 * At most `max` client connections: Node's net.Server closes the ones past it on accept, before HTTP/2
 * starts; a warning says so at most every 10 s.
 */
function capConnections(server: net.Server, ctx: SidecarContext, max: number): void {
  server.maxConnections = max;
  let dropped = 0;
  let lastLog = 0;
  server.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - lastLog < 10_000) return;
    lastLog = now;
    ctx.log.warn({ maxConnections: max, dropped }, 'grpc connection refused: --max-connections reached');
  });
}

/** The upstream answers: ServerReady says ready, or (no KServe API) grpc.health.v1 says SERVING. */
async function upstreamReady(pool: UpstreamPool): Promise<boolean> {
  const ready = await rawUnary(pool, SERVER_READY, Buffer.alloc(0), 1000);
  if (ready.code === OK) return safe(() => decodeServerReady(ready.body!));
  if (ready.code !== UNIMPLEMENTED) return false;
  const health = await rawUnary(pool, HEALTH_CHECK, Buffer.alloc(0), 1000);
  if (health.code === OK) return safe(() => decodeHealthStatus(health.body!) === 1);
  // a server that implements neither still answered: it is up
  return health.code === UNIMPLEMENTED;
}

function safe(fn: () => boolean): boolean {
  try {
    return fn();
  } catch {
    return false;
  }
}
