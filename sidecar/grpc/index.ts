// The gRPC listener: KServe Open Inference Protocol v2 and Triton (inference.GRPCInferenceService) plus
// grpc.health.v1.Health, proxied to one upstream model server. See docs/grpc.md.
//
// Every known method is registered with pass-through (de)serializers, so messages stay raw Buffers and
// benign ones reach the other side byte for byte; only ModelInfer and ModelStreamInfer are decoded.
// Unknown methods: grpc-js has no catch-all and answers UNIMPLEMENTED before any handler runs, so the
// server's handler lookup is wrapped: a path not in the table gets a handler that denies it with
// PERMISSION_DENIED naming the method, or, if the policy in force lists it in spec.grpc.allowMethods,
// relays it with every message's bytes scanned as text.
import {
  Client,
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status as GrpcStatus,
  type ChannelOptions,
  type ServerDuplexStream,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type net from 'node:net';
import type { Listener, ListenerSpec, SidecarContext, StartListener, HostPort } from '../context.js';
import { GuardError } from '../errors.js';
import { CallState } from './call.js';
import { decodeHealthStatus, decodeServerReady, KNOWN_METHODS } from './codec.js';
import { Forwarder, identity } from './proxy.js';
import { streamInfer } from './stream.js';
import { guardStatus } from './wire.js';

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** as the HTTP listener's header limit (Node's 16 KiB) */
export const DEFAULT_MAX_METADATA_BYTES = 16 * 1024;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 256;
export const DEFAULT_MAX_CONNECTIONS = 1024;
const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';
const MODEL_STREAM_INFER = '/inference.GRPCInferenceService/ModelStreamInfer';
const SERVER_READY = '/inference.GRPCInferenceService/ServerReady';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';

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
  const limits: ChannelOptions = {
    'grpc.max_receive_message_length': maxBytes,
    'grpc.max_send_message_length': maxBytes,
  };
  const client = new Client(hostPort(spec.upstream), credentials.createInsecure(), {
    ...limits,
    // the model server is on loopback: when it restarts, find it again within a second instead of
    // grpc's default backoff of up to two minutes (calls fail fast with UNAVAILABLE meanwhile)
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1000,
  });
  const server = new Server({
    ...limits,
    // SETTINGS_MAX_CONCURRENT_STREAMS: a client's streams past it wait in the client until one ends
    'grpc.max_concurrent_streams': spec.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
    interceptors: [metadataCap(ctx, spec.maxMetadataBytes ?? DEFAULT_MAX_METADATA_BYTES)],
  });
  const fwd = new Forwarder(ctx, client);

  for (const m of KNOWN_METHODS) {
    if (m.path === MODEL_STREAM_INFER) {
      server.register(m.path, streamInfer(fwd, m.path), identity, identity, 'bidi');
    } else if (!m.requestStream && !m.responseStream) {
      server.register(
        m.path,
        fwd.unary(m.path, m.path === MODEL_INFER ? 'infer' : 'none'),
        identity,
        identity,
        'unary',
      );
    } else {
      // health Watch and any other streaming rpc: the wire is the same for every kind, so relay as bidi
      server.register(m.path, fwd.stream(m.path, 'none'), identity, identity, 'bidi');
    }
  }
  installUnknownMethodHandler(server, ctx, fwd);

  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(hostPort(spec.listen), ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  disableNagle(server);
  capConnections(server, ctx, spec.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  ctx.log.info(
    { listen: hostPort({ ...spec.listen, port: bound }), upstream: hostPort(spec.upstream) },
    'grpc listener started',
  );

  let closing: Promise<void> | undefined;
  return {
    address: { host: spec.listen.host, port: bound },
    protocol: 'grpc',
    upstreamReady: () => upstreamReady(client),
    close(graceMs = 10_000): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        // tryShutdown stops accepting calls and waits for in-flight ones; forceShutdown cancels the rest
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          client.close();
          resolve();
        });
      });
      return closing;
    },
  };
};

/**
 * Wrap grpc-js's handler lookup (Server#_retrieveHandler, internal since 1.10) so unknown paths reach
 * us. If a future grpc-js renames it, unknown methods keep grpc-js's own UNIMPLEMENTED answer, which is
 * still a denial; a test pins the behaviour.
 */
function installUnknownMethodHandler(server: Server, ctx: SidecarContext, fwd: Forwarder): void {
  const s = server as unknown as { _retrieveHandler?: (path: string) => unknown };
  const lookup = s._retrieveHandler;
  if (typeof lookup !== 'function') {
    ctx.log.warn(
      'grpc-js handler lookup not found: unknown gRPC methods get UNIMPLEMENTED and cannot be allow-listed',
    );
    return;
  }
  s._retrieveHandler = function (this: Server, path: string) {
    const known = lookup.call(this, path);
    if (known) return known;
    return {
      func: unknownMethod(ctx, fwd, path),
      serialize: identity,
      deserialize: identity,
      type: 'bidi',
      path,
    };
  };
}

function unknownMethod(ctx: SidecarContext, fwd: Forwarder, path: string) {
  return (call: ServerDuplexStream<Buffer, Buffer>): void => {
    const policy = ctx.policy();
    if (methodAllowed(policy.grpc.allowMethods, path)) return fwd.stream(path, 'raw')(call);
    const st = new CallState(ctx, path, call.metadata, 'other');
    st.note('block');
    const s = guardStatus(
      new GuardError('route_not_allowed', { route: path, key: 'grpc.allowMethods' }),
      st.trace,
    );
    call.on('error', () => {});
    call.emit('error', s);
    st.end(s.code);
  };
}

/** HTTP/2 header-list size of request metadata as on the wire: name + value + 32 per entry (RFC 9113 §6.5.2) */
export function metadataBytes(md: Metadata): number {
  let size = 0;
  for (const [k, v] of Object.entries(md.toHttp2Headers())) {
    for (const x of Array.isArray(v) ? v : [v]) size += k.length + Buffer.byteLength(String(x)) + 32;
  }
  return size;
}

/**
 * Request metadata over `max` bytes ends the call RESOURCE_EXHAUSTED before any handler runs, so nothing
 * of it reaches the model server (grpc-js has no server-side grpc.max_metadata_size; the HTTP/2 layer
 * alone refuses only around 1 MiB). Messages that follow a refused call's metadata are dropped.
 */
function metadataCap(ctx: SidecarContext, max: number): ServerInterceptor {
  return (desc, call) => {
    let refused = false;
    return new ServerInterceptingCall(call, {
      start(next) {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMetadata((md, pass) => {
              if (metadataBytes(md) <= max) return pass(md);
              refused = true;
              const st = new CallState(ctx, desc.path, md, 'other');
              st.note('block');
              const s = guardStatus(
                new GuardError('request_too_large', { limit: '--grpc-max-metadata-bytes', max }),
                st.trace,
              );
              call.sendStatus({ code: s.code, details: s.details ?? s.message, metadata: s.metadata });
              st.end(s.code);
            })
            .withOnReceiveMessage((m, pass) => {
              if (!refused) pass(m);
            })
            .withOnReceiveHalfClose((pass) => {
              if (!refused) pass();
            })
            .build(),
        );
      },
    });
  };
}

/**
 * At most `max` client connections: Node's net.Server closes the ones past it on accept. grpc-js keeps
 * its http2 servers in a private map (as for disableNagle); without it the cap is not applied and a
 * warning says so.
 */
function capConnections(server: Server, ctx: SidecarContext, max: number): void {
  const servers = (server as unknown as { http2Servers?: Map<net.Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) {
    ctx.log.warn('grpc-js http2 servers not found: --max-connections is not applied to the gRPC listener');
    return;
  }
  let dropped = 0;
  let lastLog = 0;
  for (const srv of servers.keys()) {
    srv.maxConnections = max;
    srv.on('drop', () => {
      dropped++;
      const now = Date.now();
      if (now - lastLog < 10_000) return;
      lastLog = now;
      ctx.log.warn({ maxConnections: max, dropped }, 'grpc connection refused: --max-connections reached');
    });
  }
}

/**
 * Node's http2 server leaves Nagle's algorithm on for accepted sockets. A model server writes a stream's
 * responses in one go, but the sidecar writes each as it arrives from upstream, so with Nagle every small
 * response after the first waits for the client's delayed ACK (up to 40 ms). grpc-js keeps its
 * http2 servers in a private map; without it (a future grpc-js) calls still work, only slower.
 */
export function disableNagle(server: Server): void {
  const servers = (server as unknown as { http2Servers?: Map<net.Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const srv of servers.keys()) {
    srv.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  }
}

/** The upstream answers: ServerReady says ready, or (no KServe API) grpc.health.v1 says SERVING. */
function upstreamReady(client: Client): Promise<boolean> {
  const ask = (path: string): Promise<{ code: number; body?: Buffer }> =>
    new Promise((resolve) => {
      client.makeUnaryRequest<Buffer, Buffer>(
        path,
        identity,
        identity,
        Buffer.alloc(0),
        new Metadata(),
        { deadline: Date.now() + 1000 },
        (err, value) => resolve(err ? { code: err.code } : { code: GrpcStatus.OK, body: value ?? undefined }),
      );
    });
  return (async () => {
    const ready = await ask(SERVER_READY);
    if (ready.code === GrpcStatus.OK) return safe(() => decodeServerReady(ready.body!));
    if (ready.code !== GrpcStatus.UNIMPLEMENTED) return false;
    const health = await ask(HEALTH_CHECK);
    if (health.code === GrpcStatus.OK) return safe(() => decodeHealthStatus(health.body!) === 1);
    // a server that implements neither still answered: it is up
    return health.code === GrpcStatus.UNIMPLEMENTED;
  })();
}

function safe(fn: () => boolean): boolean {
  try {
    return fn();
  } catch {
    return false;
  }
}
