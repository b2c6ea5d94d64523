// `inferguard sidecar` flags and their INFERGUARD_* env twins (docs/sidecar.md). Flags win over env; a
// repeatable flag given on the command line replaces its env list. Every problem is a UsageError with a
// message naming the flag, and the command exits 2.
import type { FailMode, HostPort, ListenerSpec } from './context.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import type { Mode } from '../policy/index.js';

export interface ListenerFlag extends ListenerSpec {
  protocol: 'grpc' | 'http';
  /** as written, for messages */
  text: string;
}

export interface SidecarConfig {
  /** file or directory; undefined = built-in default policy */
  policy?: string;
  listeners: ListenerFlag[];
  admin: HostPort;
  /** overrides the policy's own mode when set */
  mode?: Mode;
  fail: FailMode;
  logLevel: LogLevel;
  /** how long SIGTERM waits for in-flight calls */
  drainSeconds: number;
  /** policy file polling interval (a fallback for fs.watch); 0 turns polling off */
  pollSeconds: number;
  /**
   * `METHOD /path` routes passed through besides the policy's http.allowPaths (--allow-path): the
   * injector lists the model's kubelet probe paths here so probes work whatever the policy says
   */
  allowPaths: string[];
  /** gRPC listeners: largest message accepted or sent, either direction (ListenerSpec.maxMessageBytes) */
  grpcMaxMessageBytes: number;
  /** every listener: open client connections at once; more are closed on accept */
  maxConnections: number;
  /** gRPC listeners: concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS) */
  maxConcurrentStreams: number;
  /** gRPC listeners: largest request metadata in bytes (HTTP/2 header-list size) */
  grpcMaxMetadataBytes: number;
  /** HTTP listeners: seconds to receive a request's headers, and the whole request */
  httpHeadersTimeoutSeconds: number;
  httpRequestTimeoutSeconds: number;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const USAGE = `usage: inferguard sidecar [flags]

Runs the data plane in front of a model server: decodes inference traffic, enforces the policy,
forwards to the upstream. Every flag also reads from the INFERGUARD_* env var shown.

  --policy PATH           policy file or directory, hot-reloaded     INFERGUARD_POLICY
                          (default: the built-in default policy)
  --grpc LISTEN=UPSTREAM  a gRPC (KServe v2 / Triton) listener,       INFERGUARD_GRPC (comma-separated)
                          e.g. 0.0.0.0:15001=127.0.0.1:8001; repeatable
  --http LISTEN=UPSTREAM  an HTTP (OpenAI-compatible, KServe REST)    INFERGUARD_HTTP (comma-separated)
                          listener, e.g. :15002=127.0.0.1:8000; repeatable
  --admin ADDR            /healthz, /readyz, /metrics                INFERGUARD_ADMIN
                          (default 127.0.0.1:15020)
  --mode enforce|monitor  override the policy's mode                  INFERGUARD_MODE
  --fail closed|open      when the engine faults: refuse (closed,     INFERGUARD_FAIL
                          default) or forward unscanned (open)
  --log-level LEVEL       trace|debug|info|warn|error|fatal|silent    INFERGUARD_LOG_LEVEL
                          (default info)
  --drain-seconds N       on SIGTERM, wait up to N s for in-flight    INFERGUARD_DRAIN_SECONDS
                          calls (default 10)
  --policy-poll-seconds N re-check the policy files every N s besides INFERGUARD_POLICY_POLL_SECONDS
                          watching them (default 5, 0 = watch only)
  --allow-path 'METHOD /path'                                         INFERGUARD_ALLOW_PATHS (comma-separated)
                          an HTTP route passed through unscanned in
                          addition to the policy's http.allowPaths
                          (same syntax: 'GET /health', 'GET /v1/models*');
                          repeatable
  --grpc-max-message-bytes N  largest gRPC message accepted or sent,  INFERGUARD_GRPC_MAX_MESSAGE_BYTES
                          either direction (default 67108864 =
                          64 MiB); larger: RESOURCE_EXHAUSTED
  --grpc-max-metadata-bytes N  largest gRPC request metadata        INFERGUARD_GRPC_MAX_METADATA_BYTES
                          (default 16384, as HTTP headers); larger:
                          RESOURCE_EXHAUSTED, nothing forwarded
  --max-connections N     open client connections per listener       INFERGUARD_MAX_CONNECTIONS
                          (default 1024); more are closed on accept
  --max-concurrent-streams N  gRPC streams per client connection    INFERGUARD_MAX_CONCURRENT_STREAMS
                          (default 256); more wait at the client
  --http-headers-timeout-seconds N  time to send a request's        INFERGUARD_HTTP_HEADERS_TIMEOUT_SECONDS
                          headers (default 20; slowloris): 408
  --http-request-timeout-seconds N  time to send a whole request    INFERGUARD_HTTP_REQUEST_TIMEOUT_SECONDS
                          (default 300): 408
  -h, --help              this text

Tracing is configured by the standard OTEL_* env vars (docs/telemetry.md).
`;

const DEFAULT_ADMIN: HostPort = { host: '127.0.0.1', port: 15020 };

/**
 * `host:port`, `[v6]:port`, `:port` (all interfaces) or a bare `port`.
 * `bareHost` is used when no host is written.
 */
export function parseHostPort(text: string, what: string, bareHost: string, allowZero: boolean): HostPort {
  const s = text.trim();
  let host: string;
  let portText: string;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (/^\d+$/.test(s)) {
    host = bareHost;
    portText = s;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0 || s.indexOf(':') !== colon) {
      throw new UsageError(`${what} "${text}": expected host:port (IPv6 as [addr]:port)`);
    }
    host = s.slice(0, colon) || bareHost;
    portText = s.slice(colon + 1);
  }
  if (!/^\d+$/.test(portText)) throw new UsageError(`${what} "${text}": port must be a number`);
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowZero)) {
    throw new UsageError(`${what} "${text}": port must be between ${allowZero ? 0 : 1} and 65535`);
  }
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) throw new UsageError(`${what} "${text}": bad host "${host}"`);
  return { host, port };
}

function parseListener(protocol: 'grpc' | 'http', text: string): ListenerFlag {
  const flag = `--${protocol}`;
  const parts = text.split('=');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new UsageError(`${flag} "${text}": expected LISTEN=UPSTREAM, e.g. 0.0.0.0:15001=127.0.0.1:8000`);
  }
  return {
    protocol,
    text,
    listen: parseHostPort(parts[0], `${flag} listen address`, '0.0.0.0', true),
    upstream: parseHostPort(parts[1], `${flag} upstream address`, '127.0.0.1', false),
  };
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} "${value}": must be one of ${allowed.join(', ')}`);
}

function seconds(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`${flag} "${value}": must be a number of seconds ≥ 0`);
  }
  return n;
}

interface FlagDef {
  env: string;
  repeatable?: boolean;
}

const FLAGS: Record<string, FlagDef> = {
  '--policy': { env: 'INFERGUARD_POLICY' },
  '--grpc': { env: 'INFERGUARD_GRPC', repeatable: true },
  '--http': { env: 'INFERGUARD_HTTP', repeatable: true },
  '--admin': { env: 'INFERGUARD_ADMIN' },
  '--mode': { env: 'INFERGUARD_MODE' },
  '--fail': { env: 'INFERGUARD_FAIL' },
  '--log-level': { env: 'INFERGUARD_LOG_LEVEL' },
  '--drain-seconds': { env: 'INFERGUARD_DRAIN_SECONDS' },
  '--policy-poll-seconds': { env: 'INFERGUARD_POLICY_POLL_SECONDS' },
  '--allow-path': { env: 'INFERGUARD_ALLOW_PATHS', repeatable: true },
  '--grpc-max-message-bytes': { env: 'INFERGUARD_GRPC_MAX_MESSAGE_BYTES' },
  '--grpc-max-metadata-bytes': { env: 'INFERGUARD_GRPC_MAX_METADATA_BYTES' },
  '--max-connections': { env: 'INFERGUARD_MAX_CONNECTIONS' },
  '--max-concurrent-streams': { env: 'INFERGUARD_MAX_CONCURRENT_STREAMS' },
  '--http-headers-timeout-seconds': { env: 'INFERGUARD_HTTP_HEADERS_TIMEOUT_SECONDS' },
  '--http-request-timeout-seconds': { env: 'INFERGUARD_HTTP_REQUEST_TIMEOUT_SECONDS' },
};

/** listener caps (docs/sidecar.md): sizes that fit a busy model pod, far below what exhausts it */
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 256;
export const DEFAULT_GRPC_MAX_METADATA_BYTES = 16 * 1024;

function count(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > MAX_GRPC_MESSAGE_BYTES) {
    throw new UsageError(`${flag} "${value}": must be a whole number from 1 to ${MAX_GRPC_MESSAGE_BYTES}`);
  }
  return n;
}

function positiveSeconds(flag: string, value: string): number {
  const n = seconds(flag, value);
  if (n === 0) throw new UsageError(`${flag} "${value}": must be a number of seconds > 0`);
  return n;
}

/** 64 MiB, the gRPC listener's own default (sidecar/grpc/index.ts) */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** grpc-js takes the limit as a signed 32-bit integer */
const MAX_GRPC_MESSAGE_BYTES = 2 ** 31 - 1;

function bytes(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > MAX_GRPC_MESSAGE_BYTES) {
    throw new UsageError(
      `${flag} "${value}": must be a whole number of bytes from 1 to ${MAX_GRPC_MESSAGE_BYTES}`,
    );
  }
  return n;
}

/** the policy schema's spec.http.allowPaths pattern (policy/schema.ts), so both take the same entries */
const ALLOW_PATH = /^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|\*) \/[^\s*]*\*?$/;

function allowPath(text: string): string {
  const s = text.trim();
  if (!ALLOW_PATH.test(s)) {
    throw new UsageError(
      `--allow-path "${text}": must be "METHOD /path" with an optional trailing "*", e.g. "GET /health" or "GET /v1/models*"`,
    );
  }
  return s;
}

/** parse argv (after `sidecar`) and env; returns 'help' for --help */
export function parseConfig(
  args: string[],
  env: Record<string, string | undefined> = process.env,
): SidecarConfig | 'help' {
  const given = new Map<string, string[]>();
  // --grpc and --http interleave; keep the listeners in command-line order
  const listenerOrder: { protocol: 'grpc' | 'http'; value: string }[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-h' || arg === '--help') return 'help';
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const def = FLAGS[name];
    if (!def) {
      throw new UsageError(arg.startsWith('-') ? `unknown flag ${name}` : `unexpected argument "${arg}"`);
    }
    let value: string;
    if (name !== arg) {
      value = arg.slice(eq + 1);
    } else {
      if (i + 1 >= args.length || args[i + 1].startsWith('--')) throw new UsageError(`${name} needs a value`);
      value = args[++i];
    }
    if (!def.repeatable && given.has(name)) throw new UsageError(`${name} given more than once`);
    given.set(name, [...(given.get(name) ?? []), value]);
    if (name === '--grpc' || name === '--http')
      listenerOrder.push({ protocol: name === '--grpc' ? 'grpc' : 'http', value });
  }

  const get = (flag: string): string | undefined => {
    const v = given.get(flag);
    if (v) return v[0];
    const e = env[FLAGS[flag].env];
    return e === undefined || e.trim() === '' ? undefined : e.trim();
  };

  const listeners = listenerOrder.map((l) => parseListener(l.protocol, l.value));
  // a protocol not given on the command line comes from its env var (comma-separated)
  for (const protocol of ['grpc', 'http'] as const) {
    if (given.has(`--${protocol}`)) continue;
    const raw = env[FLAGS[`--${protocol}`].env];
    for (const item of (raw ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      listeners.push(parseListener(protocol, item));
    }
  }
  if (listeners.length === 0) {
    throw new UsageError('no listener: give at least one --grpc LISTEN=UPSTREAM or --http LISTEN=UPSTREAM');
  }
  const seen = new Map<string, string>();
  for (const l of listeners) {
    const key = `${l.listen.host}:${l.listen.port}`;
    if (l.listen.port !== 0 && seen.has(key)) {
      throw new UsageError(
        `--${l.protocol} "${l.text}": listen address ${key} is also used by "${seen.get(key)}"`,
      );
    }
    seen.set(key, l.text);
  }

  const admin = get('--admin');
  const mode = get('--mode');
  const fail = get('--fail');
  const logLevel = get('--log-level');
  const drain = get('--drain-seconds');
  const poll = get('--policy-poll-seconds');
  const grpcMax = get('--grpc-max-message-bytes');
  const grpcMeta = get('--grpc-max-metadata-bytes');
  const maxConns = get('--max-connections');
  const maxStreams = get('--max-concurrent-streams');
  const headersTimeout = get('--http-headers-timeout-seconds');
  const requestTimeout = get('--http-request-timeout-seconds');
  const allowPaths = (
    given.get('--allow-path') ??
    (env[FLAGS['--allow-path'].env] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)
  ).map(allowPath);
  return {
    policy: get('--policy'),
    listeners,
    admin: admin ? parseHostPort(admin, '--admin', '0.0.0.0', true) : DEFAULT_ADMIN,
    mode: mode ? oneOf('--mode', mode, ['enforce', 'monitor'] as const) : undefined,
    fail: fail ? oneOf('--fail', fail, ['closed', 'open'] as const) : 'closed',
    logLevel: logLevel ? oneOf('--log-level', logLevel, LOG_LEVELS) : 'info',
    drainSeconds: drain ? seconds('--drain-seconds', drain) : 10,
    pollSeconds: poll ? seconds('--policy-poll-seconds', poll) : 5,
    allowPaths: [...new Set(allowPaths)],
    grpcMaxMessageBytes: grpcMax
      ? bytes('--grpc-max-message-bytes', grpcMax)
      : DEFAULT_GRPC_MAX_MESSAGE_BYTES,
    grpcMaxMetadataBytes: grpcMeta
      ? count('--grpc-max-metadata-bytes', grpcMeta)
      : DEFAULT_GRPC_MAX_METADATA_BYTES,
    maxConnections: maxConns ? count('--max-connections', maxConns) : DEFAULT_MAX_CONNECTIONS,
    maxConcurrentStreams: maxStreams
      ? count('--max-concurrent-streams', maxStreams)
      : DEFAULT_MAX_CONCURRENT_STREAMS,
    httpHeadersTimeoutSeconds: headersTimeout
      ? positiveSeconds('--http-headers-timeout-seconds', headersTimeout)
      : 20,
    httpRequestTimeoutSeconds: requestTimeout
      ? positiveSeconds('--http-request-timeout-seconds', requestTimeout)
      : 300,
  };
}
