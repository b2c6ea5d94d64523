import { describe, expect, it } from 'vitest';
import { parseConfig, parseHostPort, UsageError, type SidecarConfig } from './config.js';

const parse = (args: string[], env: Record<string, string> = {}): SidecarConfig => {
  const c = parseConfig(args, env);
  if (c === 'help') throw new Error('unexpected help');
  return c;
};
const usage = (args: string[], env: Record<string, string> = {}): string => {
  try {
    parseConfig(args, env);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a usage error');
};

describe('sidecar flags', () => {
  it('defaults: admin on loopback 15020, fail closed, info, 10 s drain, policy mode kept', () => {
    const c = parse(['--http', '15002=8000']);
    expect(c).toEqual({
      policy: undefined,
      listeners: [
        {
          protocol: 'http',
          text: '15002=8000',
          listen: { host: '0.0.0.0', port: 15002 },
          upstream: { host: '127.0.0.1', port: 8000 },
        },
      ],
      admin: { host: '127.0.0.1', port: 15020 },
      mode: undefined,
      fail: 'closed',
      logLevel: 'info',
      drainSeconds: 10,
      pollSeconds: 5,
      allowPaths: [],
      grpcMaxMessageBytes: 64 * 1024 * 1024,
      grpcMaxMetadataBytes: 16384,
      maxConnections: 1024,
      maxConcurrentStreams: 256,
      httpHeadersTimeoutSeconds: 20,
      httpRequestTimeoutSeconds: 300,
    });
  });

  it('connection, stream, metadata and slow-request caps: flags, env twins, bad values named', () => {
    const c = parse([
      '--grpc',
      '15001=8001',
      '--max-connections=10',
      '--max-concurrent-streams',
      '4',
      '--grpc-max-metadata-bytes=8192',
      '--http-headers-timeout-seconds=2.5',
    ]);
    expect([c.maxConnections, c.maxConcurrentStreams, c.grpcMaxMetadataBytes]).toEqual([10, 4, 8192]);
    expect(c.httpHeadersTimeoutSeconds).toBe(2.5);
    const e = parse(['--http', '15002=8000'], {
      INFERGUARD_MAX_CONNECTIONS: '7',
      INFERGUARD_MAX_CONCURRENT_STREAMS: '3',
      INFERGUARD_GRPC_MAX_METADATA_BYTES: '1024',
      INFERGUARD_HTTP_REQUEST_TIMEOUT_SECONDS: '60',
    });
    expect([e.maxConnections, e.maxConcurrentStreams, e.grpcMaxMetadataBytes]).toEqual([7, 3, 1024]);
    expect(e.httpRequestTimeoutSeconds).toBe(60);
    for (const flag of ['--max-connections', '--max-concurrent-streams', '--grpc-max-metadata-bytes'])
      for (const bad of ['0', '1.5', 'many'])
        expect(usage(['--grpc', '15001=8001', `${flag}=${bad}`])).toContain(
          `${flag} "${bad}": must be a whole number`,
        );
    expect(usage(['--http', '15002=8000', '--http-headers-timeout-seconds=0'])).toContain(
      '--http-headers-timeout-seconds "0": must be a number of seconds > 0',
    );
  });

  it('--grpc-max-message-bytes: whole bytes, env twin, bounded by what grpc-js takes', () => {
    expect(parse(['--grpc', '15001=8001', '--grpc-max-message-bytes', '1048576']).grpcMaxMessageBytes).toBe(
      1048576,
    );
    expect(
      parse(['--grpc', '15001=8001'], { INFERGUARD_GRPC_MAX_MESSAGE_BYTES: '4096' }).grpcMaxMessageBytes,
    ).toBe(4096);
    for (const bad of ['0', '1.5', '64Mi', '2147483648', '-1']) {
      expect(usage(['--grpc', '15001=8001', `--grpc-max-message-bytes=${bad}`])).toContain(
        `--grpc-max-message-bytes "${bad}": must be a whole number of bytes`,
      );
    }
  });

  it('--allow-path: repeatable, policy syntax, env comma-separated, the command line replacing env', () => {
    const env = { INFERGUARD_ALLOW_PATHS: 'GET /health, GET /v2/models/llm/ready,GET /health' };
    expect(parse(['--http', '15002=8000'], env).allowPaths).toEqual([
      'GET /health',
      'GET /v2/models/llm/ready',
    ]);
    expect(
      parse(['--http', '15002=8000', '--allow-path', 'GET /v1/models*', '--allow-path=* /ping'], env)
        .allowPaths,
    ).toEqual(['GET /v1/models*', '* /ping']);
    expect(usage(['--http', '15002=8000', '--allow-path', 'GET /a*b'])).toContain(
      '--allow-path "GET /a*b": must be "METHOD /path" with an optional trailing "*"',
    );
    expect(usage(['--http', '15002=8000'], { INFERGUARD_ALLOW_PATHS: 'FETCH /x' })).toContain(
      '--allow-path "FETCH /x"',
    );
  });

  it('keeps repeated --grpc/--http listeners in command-line order, both flag spellings', () => {
    const c = parse([
      '--grpc=:15001=127.0.0.1:8001',
      '--http',
      '0.0.0.0:15002=localhost:8000',
      '--grpc',
      '[::1]:15003=[::1]:9000',
    ]);
    expect(c.listeners.map((l) => [l.protocol, l.listen, l.upstream])).toEqual([
      ['grpc', { host: '0.0.0.0', port: 15001 }, { host: '127.0.0.1', port: 8001 }],
      ['http', { host: '0.0.0.0', port: 15002 }, { host: 'localhost', port: 8000 }],
      ['grpc', { host: '::1', port: 15003 }, { host: '::1', port: 9000 }],
    ]);
  });

  it('reads every flag from INFERGUARD_* env, flags winning', () => {
    const env = {
      INFERGUARD_POLICY: '/etc/inferguard/policy.yaml',
      INFERGUARD_GRPC: '15001=8001, 15003=8003',
      INFERGUARD_HTTP: '15002=8000',
      INFERGUARD_ADMIN: ':15020',
      INFERGUARD_MODE: 'monitor',
      INFERGUARD_FAIL: 'open',
      INFERGUARD_LOG_LEVEL: 'debug',
      INFERGUARD_DRAIN_SECONDS: '30',
      INFERGUARD_POLICY_POLL_SECONDS: '0',
    };
    const c = parse([], env);
    expect(c.policy).toBe('/etc/inferguard/policy.yaml');
    expect(c.listeners.map((l) => `${l.protocol} ${l.listen.port}>${l.upstream.port}`)).toEqual([
      'grpc 15001>8001',
      'grpc 15003>8003',
      'http 15002>8000',
    ]);
    expect(c).toMatchObject({
      admin: { host: '0.0.0.0', port: 15020 },
      mode: 'monitor',
      fail: 'open',
      logLevel: 'debug',
    });
    expect([c.drainSeconds, c.pollSeconds]).toEqual([30, 0]);
    const flagged = parse(['--mode', 'enforce', '--http', '16000=9000'], env);
    expect(flagged.mode).toBe('enforce');
    // --http on the command line replaces INFERGUARD_HTTP; INFERGUARD_GRPC still applies
    expect(flagged.listeners.map((l) => `${l.protocol} ${l.listen.port}`)).toEqual([
      'http 16000',
      'grpc 15001',
      'grpc 15003',
    ]);
  });

  it('answers --help', () => {
    expect(parseConfig(['--http', '1=2', '--help'], {})).toBe('help');
  });

  it.each([
    [[], 'no listener'],
    [['--grpc', 'nonsense'], '--grpc "nonsense": expected LISTEN=UPSTREAM'],
    [['--http', ':15002=127.0.0.1:0'], 'port must be between 1 and 65535'],
    [['--http', ':15002=127.0.0.1:99999'], 'port must be between 1 and 65535'],
    [['--http', 'a:b:c=1'], 'expected host:port'],
    [['--http', '1=2', '--mode', 'audit'], '--mode "audit": must be one of enforce, monitor'],
    [['--http', '1=2', '--fail', 'maybe'], '--fail "maybe": must be one of closed, open'],
    [['--http', '1=2', '--log-level', 'loud'], '--log-level "loud": must be one of trace, debug'],
    [['--http', '1=2', '--drain-seconds', '-1'], '--drain-seconds "-1": must be a number of seconds'],
    [['--http', '1=2', '--verbose'], 'unknown flag --verbose'],
    [['--http', '1=2', 'extra'], 'unexpected argument "extra"'],
    [['--http', '1=2', '--policy'], '--policy needs a value'],
    [['--http', '1=2', '--admin', 'x', '--admin', 'y'], '--admin given more than once'],
    [['--http', '15002=1', '--grpc', '15002=2'], 'listen address 0.0.0.0:15002 is also used'],
  ])('rejects %j with a message naming the flag', (args, message) => {
    expect(usage(args)).toContain(message);
  });

  it('rejects a bad env value by its flag name', () => {
    expect(usage([], { INFERGUARD_HTTP: '1=2', INFERGUARD_FAIL: 'sometimes' })).toContain(
      '--fail "sometimes"',
    );
  });

  it('parses host:port forms', () => {
    expect(parseHostPort('[fd00::1]:80', 'x', 'h', false)).toEqual({ host: 'fd00::1', port: 80 });
    expect(parseHostPort(':0', 'x', '0.0.0.0', true)).toEqual({ host: '0.0.0.0', port: 0 });
    expect(() => parseHostPort('host:', 'x', 'h', false)).toThrow(UsageError);
  });
});
