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
  status as GrpcStatus,
  type ChannelOptions,
  type ServerDuplexStream,
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
  const server = new Server(limits);
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
