// Resource limits, through the real listeners: every cap on what a client or a model server can make the
// sidecar hold, and the SPEC §5 answer when it is exceeded (413 / RESOURCE_EXHAUSTED for requests; an
// upstream_unavailable error for answers that cannot be inspected within bounds). Nothing over a limit
// reaches the model. Engine-level bounds (decoded payloads, stream hold-back) are checked on the engine.
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStreamScanner, loadPolicyText, scanText } from '../policy/index.js';
import { encodeInferRequest, startFakeTriton, type FakeTriton } from '../testing/fake-triton.js';
import { startFakeVllm, type FakeVllm } from '../testing/fake-vllm.js';
import type { Listener } from './context.js';
import { startGrpcListener } from './grpc/index.js';
import { identity } from './grpc/proxy.js';
import { testContext as grpcContext } from './grpc/test-context.js';
import { createHttpListener } from './http/index.js';
import { testContext as httpContext } from './http/test-context.js';

const POLICY = `apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: limits }
spec:
  packs: [prompt-injection]
  rules:
    - { id: test.secret, category: secrets, pattern: 'SECRET-[0-9]+', directions: [input, output], action: block }
  limits: { maxRequestBytes: 65536, maxMessages: 8, maxHoldback: 64, maxDecodedBytes: 4096 }
`;
const policy = loadPolicyText(POLICY, 'limits.yaml');

describe('HTTP limits', { timeout: 30_000 }, () => {
  let fake: FakeVllm;
  let listener: Listener;
  let small: Listener;
  let base: string;
  beforeAll(async () => {
    fake = await startFakeVllm();
    const upstream = { host: fake.host, port: fake.port };
    listener = await createHttpListener(httpContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream,
    });
    small = await createHttpListener(
      httpContext(policy),
      { listen: { host: '127.0.0.1', port: 0 }, upstream },
      { maxResponseBytes: 2048 },
    );
    base = `http://127.0.0.1:${listener.address.port}`;
  });
  afterAll(async () => {
    await listener.close(100);
    await small.close(100);
    await fake.close();
  });

  const post = (path: string, body: Buffer | string, headers: Record<string, string> = {}, to = base) =>
    fetch(to + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const chat = (n: number, content = 'hi') =>
    JSON.stringify({ model: 'm', messages: Array.from({ length: n }, () => ({ role: 'user', content })) });

  it('a compressed body that inflates past maxRequestBytes (a zip bomb) is 413, not inflated further, not forwarded', async () => {
    const before = fake.requests.length;
    const huge = `{"model":"m","messages":[{"role":"user","content":"${'a'.repeat(20 << 20)}"}]}`;
    for (const [enc, body] of [
      ['gzip', gzipSync(huge)],
      ['br', brotliCompressSync(huge)],
    ] as const) {
      expect(body.length).toBeLessThan(65536); // small on the wire
      const res = await post('/v1/chat/completions', body, { 'content-encoding': enc });
      expect(res.status).toBe(413);
      expect(((await res.json()) as { error: { type: string } }).error.type).toBe('request_too_large');
    }
    expect(fake.requests.length).toBe(before);
  });

  it('maxRequestBytes: 0 means no policy limit (a body passes), still bounded by the inspection buffer', async () => {
    const unlimited = loadPolicyText(
      POLICY.replace('maxRequestBytes: 65536', 'maxRequestBytes: 0'),
      'l.yaml',
    );
    const l = await createHttpListener(httpContext(unlimited), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: fake.host, port: fake.port },
    });
    try {
      const to = `http://127.0.0.1:${l.address.port}`;
      expect((await post('/v1/chat/completions', chat(1, 'x'.repeat(100_000)), {}, to)).status).toBe(200);
      const before = fake.requests.length;
      const bomb = gzipSync(`{"model":"m","messages":[{"role":"user","content":"${'a'.repeat(65 << 20)}"}]}`);
      const res = await post('/v1/chat/completions', bomb, { 'content-encoding': 'gzip' }, to);
      expect(res.status).toBe(413);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
        'request exceeds the inspection buffer (67108864)',
      );
      expect(fake.requests.length).toBe(before);
    } finally {
      await l.close(100);
    }
  });

  it('maxMessages counts chat messages, responses input items and KServe input tensors: 413 over it', async () => {
    const before = fake.requests.length;
    expect((await post('/v1/chat/completions', chat(8))).status).toBe(200);
    const over = [
      ['/v1/chat/completions', chat(9)],
      [
        '/v1/responses',
        JSON.stringify({
          model: 'm',
          input: Array.from({ length: 9 }, () => ({ role: 'user', content: 'hi' })),
        }),
      ],
      [
        '/v2/models/m/infer',
        JSON.stringify({
          inputs: Array.from({ length: 9 }, (_, i) => ({
            name: `in${i}`,
            datatype: 'BYTES',
            shape: [1],
            data: ['x'],
          })),
        }),
      ],
    ];
    for (const [path, body] of over) {
      const res = await post(path, body);
      expect(res.status, path).toBe(413);
      const err = ((await res.json()) as { error: { message: string } }).error;
      expect(err.message).toBe('request exceeds limits.maxMessages (8)');
    }
    expect(fake.requests.length).toBe(before + 1);
  });

  it('request headers over 16 KiB: 431 from the HTTP parser, nothing forwarded', async () => {
    const before = fake.requests.length;
    const res = await post('/v1/chat/completions', chat(1), { 'x-big': 'a'.repeat(20_000) });
    expect(res.status).toBe(431);
    expect(fake.requests.length).toBe(before);
  });

  it('JSON nested deeper than 256 levels: 400 naming the limit on every inspected route, even where a capped token limit re-serializes the body (was a stack overflow → 503)', async () => {
    const capped = loadPolicyText(
      POLICY.replace('maxDecodedBytes: 4096', 'maxDecodedBytes: 4096, maxOutputTokens: 64'),
      'capped.yaml',
    );
    const l = await createHttpListener(httpContext(capped), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: fake.host, port: fake.port },
    });
    try {
      const to = `http://127.0.0.1:${l.address.port}`;
      const nest = (d: number) => `${'{"a":'.repeat(d - 1)}{}${'}'.repeat(d - 1)}`;
      const bodies: [string, (extra: string) => string][] = [
        ['/v1/chat/completions', (x) => `{"model":"m","messages":[{"role":"user","content":"hi"}],"x":${x}}`],
        ['/v1/completions', (x) => `{"model":"m","prompt":"hi","max_tokens":1000,"x":${x}}`],
        ['/v1/responses', (x) => `{"model":"m","input":"hi","metadata":${x}}`],
        ['/v1/embeddings', (x) => `{"model":"m","input":"hi","x":${x}}`],
        ['/v2/models/m/generate', (x) => `{"text_input":"hi","parameters":${x}}`],
        [
          '/v2/models/m/infer',
          (x) => `{"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"data":["hi"]}],"parameters":${x}}`,
        ],
      ];
      for (const [path, make] of bodies) {
        const before = fake.requests.length;
        const res = await post(path, make(nest(6000)), {}, to);
        expect(res.status, path).toBe(400);
        const err = ((await res.json()) as { error: { message: string; type: string } }).error;
        expect(err.message).toBe('malformed request: body is nested deeper than 256 levels');
        expect(err.type).toBe('invalid_request_error');
        expect(fake.requests.length, path).toBe(before);
      }
      // at the bound (the body itself is level 1), a request is served and its token limit capped
      const before = fake.requests.length;
      const ok = await post('/v1/chat/completions', bodies[0][1](nest(255)), {}, to);
      expect(ok.status).toBe(200);
      expect(fake.requests.length).toBe(before + 1);
      expect((fake.requests.at(-1)!.json as { max_tokens?: number }).max_tokens).toBe(64);
      expect((await post('/v1/chat/completions', bodies[0][1](nest(256)), {}, to)).status).toBe(400);
    } finally {
      await l.close(100);
    }
  });

  it('a non-streamed answer nested deeper than 256 levels is 502, not delivered and not a 503 (even when a redaction re-serializes it)', async () => {
    const deep = `${'['.repeat(6000)}${']'.repeat(6000)}`;
    const up = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        `{"choices":[{"index":0,"message":{"role":"assistant","content":"the code is SECRET-1 MARK"}}],"x":${deep}}`,
      );
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const redacting = loadPolicyText(POLICY.replace('action: block }', 'action: redact }'), 'r.yaml');
    const l = await createHttpListener(httpContext(redacting), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: (up.address() as AddressInfo).port },
    });
    try {
      const res = await post('/v1/chat/completions', chat(1), {}, `http://127.0.0.1:${l.address.port}`);
      expect(res.status).toBe(502);
      const body = await res.text();
      expect(body).not.toContain('MARK');
      expect(JSON.parse(body).error.message).toBe(
        'model server unavailable: answer nested deeper than 256 levels',
      );
    } finally {
      await l.close(100);
      up.closeAllConnections();
      up.close();
    }
  });

  it('an SSE event nested deeper than 256 levels ends the stream with an error event, also with --fail open (was a stack overflow that let the rest through unscanned)', async () => {
    const deep = `${'['.repeat(6000)}${']'.repeat(6000)}`;
    const up = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: {"choices":[{"index":0,"delta":{"content":"code SECRET-1 "}}],"x":${deep}}\n\n`);
      res.end(`data: {"choices":[{"index":0,"delta":{"content":"then SECRET-2 TAIL"}}]}\n\ndata: [DONE]\n\n`);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const redacting = loadPolicyText(POLICY.replace('action: block }', 'action: redact }'), 'r.yaml');
    const l = await createHttpListener(httpContext(redacting, 'open'), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: (up.address() as AddressInfo).port },
    });
    try {
      const res = await post(
        '/v1/chat/completions',
        JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        {},
        `http://127.0.0.1:${l.address.port}`,
      );
      const body = await res.text();
      expect(body).toContain('stream exceeded an inspection bound');
      expect(body).not.toMatch(/SECRET-\d/);
      expect(body).not.toContain('TAIL');
    } finally {
      await l.close(100);
      up.closeAllConnections();
      up.close();
    }
  });

  it('--max-connections: past the cap a new connection is closed on accept; a freed slot serves again', async () => {
    const l = await createHttpListener(httpContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: fake.host, port: fake.port },
      maxConnections: 2,
    });
    const open: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) open.push(await rawConnect(l.address.port));
      // both held connections are answered (here: the route is not allowed; the cap counts connections)
      for (const s of open)
        expect(await rawRequest(s, 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n')).toMatch(/^HTTP\/1.1 403/);
      const third = await rawConnect(l.address.port);
      expect(await closedWith(third, 2000)).toBe('');
      open[0].destroy();
      await new Promise((r) => setTimeout(r, 100));
      const res = await fetch(`http://127.0.0.1:${l.address.port}/health`);
      expect(res.status).toBe(403);
    } finally {
      for (const s of open) s.destroy();
      await l.close(100);
    }
  });

  it('slow body: a request body dribbled past the request timeout gets 408 and a close, nothing forwarded', async () => {
    const l = await createHttpListener(httpContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: fake.host, port: fake.port },
      requestTimeoutMs: 600,
    });
    const before = fake.requests.length;
    const s = await rawConnect(l.address.port);
    s.write(
      'POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{"messages":[',
    );
    const drip = setInterval(() => s.writable && s.write('{"role":"user","content":"a"},'), 100);
    try {
      const t0 = Date.now();
      const got = await closedWith(s, 6000);
      expect(got).toMatch(/^HTTP\/1.1 408/);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(fake.requests.length).toBe(before);
    } finally {
      clearInterval(drip);
      s.destroy();
      await l.close(100);
    }
  });

  it('slowloris: headers dribbled past the headers timeout get 408 and a close, nothing forwarded', async () => {
    const l = await createHttpListener(httpContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: fake.host, port: fake.port },
      headersTimeoutMs: 400,
    });
    const before = fake.requests.length;
    const s = await rawConnect(l.address.port);
    s.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n');
    const drip = setInterval(() => s.writable && s.write('x-a: b\r\n'), 100);
    try {
      const t0 = Date.now();
      const got = await closedWith(s, 5000);
      expect(got).toMatch(/^HTTP\/1.1 408/);
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(fake.requests.length).toBe(before);
    } finally {
      clearInterval(drip);
      s.destroy();
      await l.close(100);
    }
  });

  it('a non-streamed answer larger than the inspection buffer is 502 and never delivered', async () => {
    fake.enqueue({ text: `${'x'.repeat(4096)} END-OF-ANSWER` });
    const res = await post('/v1/chat/completions', chat(1), {}, `http://127.0.0.1:${small.address.port}`);
    expect(res.status).toBe(502);
    const body = await res.text();
    expect(body).not.toContain('END-OF-ANSWER');
    expect(JSON.parse(body).error.message).toMatch(
      /^model server unavailable: response larger than 2048 bytes/,
    );
  });

  it('one SSE event over 1 MiB ends the stream with an error event; the event is not delivered', async () => {
    const up = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: {"choices":[{"index":0,"delta":{"content":"ok "}}]}\n\n`);
      // no blank line for more than 1 MiB: one event that never ends
      res.end(`data: {"choices":[{"index":0,"delta":{"content":"${'y'.repeat(1_200_000)}TAIL"}}]}\n\n`);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const l = await createHttpListener(httpContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: (up.address() as AddressInfo).port },
    });
    try {
      const res = await post(
        '/v1/chat/completions',
        JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        {},
        `http://127.0.0.1:${l.address.port}`,
      );
      const body = await res.text();
      expect(body).toContain('stream exceeded an inspection bound');
      expect(body).not.toContain('TAIL');
      expect(body.length).toBeLessThan(100_000);
    } finally {
      await l.close(100);
      up.closeAllConnections();
      up.close();
    }
  });
});

describe('gRPC limits', { timeout: 30_000 }, () => {
  let triton: FakeTriton;
  let listener: Listener;
  let client: grpc.Client;
  beforeAll(async () => {
    triton = await startFakeTriton();
    listener = await startGrpcListener(grpcContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: triton.port },
      maxMessageBytes: 256 * 1024,
    });
    client = new grpc.Client(`127.0.0.1:${listener.address.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await listener.close(100);
    await triton.close();
  });

  const unary = (body: Buffer, md = new grpc.Metadata()) =>
    new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeUnaryRequest(
        '/inference.GRPCInferenceService/ModelInfer',
        identity,
        identity,
        body,
        md,
        () => {},
      );
      call.on('status', resolve);
    });

  it('a message over the listener cap → RESOURCE_EXHAUSTED; over maxRequestBytes → RESOURCE_EXHAUSTED naming the limit', async () => {
    const before = triton.calls.length;
    const over = await unary(encodeInferRequest({ model: 'llm', text: 'a'.repeat(300 * 1024) }));
    expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const policyOver = await unary(encodeInferRequest({ model: 'llm', text: 'a'.repeat(70_000) }));
    expect(policyOver.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(policyOver.details).toBe('request exceeds maxRequestBytes (65536)');
    expect(triton.calls.length).toBe(before);
  });

  it('on a ModelStreamInfer stream, a request over maxRequestBytes ends the stream RESOURCE_EXHAUSTED; it is not forwarded', async () => {
    const before = triton.calls.length;
    const st = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeBidiStreamRequest(
        '/inference.GRPCInferenceService/ModelStreamInfer',
        identity,
        identity,
      );
      call.on('data', () => {});
      call.on('error', () => {});
      call.on('status', resolve);
      call.write(encodeInferRequest({ model: 'llm', id: 'big', text: 'b'.repeat(70_000) }));
      call.end();
    });
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const forwarded = triton.calls.slice(before).flatMap((c) => c.requests);
    expect(forwarded.some((b) => b.length > 65536)).toBe(false);
  });

  it('request metadata over --grpc-max-metadata-bytes (16 KiB by default, as HTTP headers) → RESOURCE_EXHAUSTED naming the flag; the model server sees nothing', async () => {
    const before = triton.calls.length;
    const md = new grpc.Metadata();
    md.set('x-big', 'a'.repeat(100 * 1024));
    const st = await unary(encodeInferRequest({ model: 'llm', text: 'hi' }), md);
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.details).toBe('request exceeds --grpc-max-metadata-bytes (16384)');
    expect(st.metadata.get('inferguard-trace-id')).toHaveLength(1);
    // a stream is refused the same way, with its messages
    const stream = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeBidiStreamRequest(
        '/inference.GRPCInferenceService/ModelStreamInfer',
        identity,
        identity,
        md,
      );
      call.on('data', () => {});
      call.on('error', () => {});
      call.on('status', resolve);
      call.write(encodeInferRequest({ model: 'llm', id: 's', text: 'hi' }));
      call.end();
    });
    expect(stream.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // binary metadata counts as its base64 wire form
    const bin = new grpc.Metadata();
    bin.set('x-blob-bin', Buffer.alloc(13 * 1024));
    expect((await unary(encodeInferRequest({ model: 'llm', text: 'hi' }), bin)).code).toBe(
      grpc.status.RESOURCE_EXHAUSTED,
    );
    expect(triton.calls.length).toBe(before);
    // metadata under the cap is forwarded as before
    const ok = new grpc.Metadata();
    ok.set('x-ok', 'b'.repeat(8 * 1024));
    expect((await unary(encodeInferRequest({ model: 'llm', text: 'hi' }), ok)).code).toBe(grpc.status.OK);
    expect(triton.calls.length).toBe(before + 1);
    expect(triton.calls.at(-1)!.metadata['x-ok']).toBe('b'.repeat(8 * 1024));
  });

  it("--max-concurrent-streams: past the cap, a connection's next call waits in the client and reaches the model only when a stream ends", async () => {
    const l = await startGrpcListener(grpcContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: triton.port },
      maxConcurrentStreams: 2,
    });
    const c = new grpc.Client(`127.0.0.1:${l.address.port}`, grpc.credentials.createInsecure());
    const script = triton.script;
    triton.script = () => ({ hang: true });
    const before = triton.calls.length;
    const calls: grpc.ClientUnaryCall[] = [];
    const statuses: Promise<grpc.StatusObject>[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const call = c.makeUnaryRequest(
          '/inference.GRPCInferenceService/ModelInfer',
          identity,
          identity,
          encodeInferRequest({ model: 'llm', text: `call ${i}` }),
          new grpc.Metadata(),
          () => {},
        );
        calls.push(call);
        statuses.push(new Promise((r) => call.on('status', r)));
      }
      await triton.waitFor(() => triton.calls.length >= before + 2, 5000);
      await new Promise((r) => setTimeout(r, 300));
      expect(triton.calls.length).toBe(before + 2);
      calls[0].cancel();
      await triton.waitFor(() => triton.calls.length >= before + 3, 5000);
      expect(triton.calls.length).toBe(before + 3);
    } finally {
      for (const call of calls) call.cancel();
      await Promise.all(statuses);
      triton.script = script;
      c.close();
      await l.close(100);
    }
  });

  it('--max-connections: past the cap a new connection is closed on accept, before HTTP/2 starts', async () => {
    const l = await startGrpcListener(grpcContext(policy), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: triton.port },
      maxConnections: 1,
    });
    const held = await rawConnect(l.address.port);
    try {
      const second = await rawConnect(l.address.port);
      expect(await closedWith(second, 2000)).toBe('');
      held.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const c = new grpc.Client(`127.0.0.1:${l.address.port}`, grpc.credentials.createInsecure());
      const st = await new Promise<grpc.StatusObject>((resolve) => {
        const call = c.makeUnaryRequest(
          '/inference.GRPCInferenceService/ModelInfer',
          identity,
          identity,
          encodeInferRequest({ model: 'llm', text: 'hi' }),
          new grpc.Metadata(),
          () => {},
        );
        call.on('status', resolve);
      });
      c.close();
      expect(st.code).toBe(grpc.status.OK);
    } finally {
      held.destroy();
      await l.close(100);
    }
  });

  it('request metadata of 1 MiB is refused before any handler runs', async () => {
    const before = triton.calls.length;
    const md = new grpc.Metadata();
    md.set('x-big', 'a'.repeat(1 << 20));
    const st = await unary(encodeInferRequest({ model: 'llm', text: 'hi' }), md);
    expect(st.code).not.toBe(grpc.status.OK);
    expect(triton.calls.length).toBe(before);
  });
});

describe('engine bounds', () => {
  it('decoded payloads: an encoded attack within maxDecodedBytes is caught; past it, it is not decoded (documented cap)', () => {
    const attack = Buffer.from('the code is SECRET-1234567').toString('base64');
    const filler = (n: number) => Buffer.from('z'.repeat(n)).toString('base64');
    expect(scanText(policy, `${attack} ${filler(100)}`, 'input').decision).toBe('block');
    // 4096 decoded bytes are spent on the filler run before the attack run is reached
    expect(scanText(policy, `${filler(5000)} ${attack}`, 'input').decision).toBe('allow');
    // the plain text is always scanned, whatever the decode budget
    expect(scanText(policy, `${filler(5000)} the code is SECRET-1234567`, 'input').decision).toBe('block');
  });

  it('stream hold-back never exceeds limits.maxHoldback, even for an unbounded pattern fed without end', () => {
    const s = createStreamScanner(policy, { direction: 'output' });
    let released = 0;
    for (let i = 0; i < 2000; i++) {
      const step = s.write(i === 0 ? 'SECRET-' : '7');
      released += step.release.length;
      expect(s.held).toBeLessThanOrEqual(64);
      if (step.blocked) break;
    }
    // an unbounded pattern is capped: after the first match window the scanner decided (blocked)
    expect(released).toBe(0);
  });
});

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** send one request on a kept-alive socket; the first chunk of the answer */
function rawRequest(s: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    s.once('data', (d) => resolve(d.toString('latin1')));
    s.write(text);
  });
}

/** everything the peer sent until it closed the socket ('timeout' if it did not within ms) */
function closedWith(s: Socket, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const timer = setTimeout(() => resolve('timeout'), ms);
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}
