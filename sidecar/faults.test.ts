// Faults around the guard, in-process with the real listeners, the real telemetry (exporting to a real
// OTLP receiver) and purpose-built upstreams on loopback:
//   - engine faults on the OUTPUT side (the request scanned fine, the answer's scan throws), unary and
//     mid-stream, for --fail closed (nothing of the answer delivered) and --fail open (delivered, and the
//     exported span carries inferguard.fail_open). Request-side faults are in the adapters' own tests.
//   - upstream resets mid-stream, answers garbage, or the client leaves mid-stream: an error the client
//     can see, no hang, and no socket left open on the upstream side.
// The process-level faults (SIGTERM with calls in flight, a policy replaced at run time, the kubelet
// ..data symlink swap) are in sidecar/main.test.ts, sidecar/reload.test.ts and sidecar/limits.test.ts.
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadPolicyText, type CompiledPolicy } from '../policy/index.js';
import { encodeInferRequest, startFakeTriton, type FakeTriton } from '../testing/fake-triton.js';
import { startOtlpReceiver, type OtlpReceiver } from '../testing/otlp-receiver.js';
import type { FailMode, SidecarContext } from './context.js';
import { encodeStreamResponse } from './grpc/codec.js';
import { startGrpcListener } from './grpc/index.js';
import { identity } from './grpc/proxy.js';
import { createHttpListener } from './http/index.js';
import { startTelemetry, type SidecarTelemetry } from './telemetry/index.js';

const POLICY = `apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: faults }
spec:
  packs: []
  rules:
    - { id: test.secret, category: secrets, pattern: 'SECRET-[0-9]{8}', directions: [input, output], action: block }
`;
const SECRET = 'SECRET-16180339';
const INFER = '/inference.GRPCInferenceService/ModelInfer';
const STREAM_INFER = '/inference.GRPCInferenceService/ModelStreamInfer';

/**
 * The policy with its engine behind a switch: once `state.faulty` is set, every engine access throws,
 * including from stream scanners already created (they read their rule group on every write).
 */
function faultable(p: CompiledPolicy): { policy: CompiledPolicy; state: { faulty: boolean } } {
  const state = { faulty: false };
  const trap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(t, k, r) {
        if (state.faulty) throw new Error('injected engine fault');
        const v = Reflect.get(t, k, r) as unknown;
        return (k === 'output' || k === 'input') && typeof v === 'object' && v !== null ? trap(v) : v;
      },
    });
  return { policy: { ...p, engine: trap(p.engine) } as CompiledPolicy, state };
}

let rx: OtlpReceiver;
let telemetry: SidecarTelemetry;
const closers: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  rx = await startOtlpReceiver();
  vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', 'http/protobuf');
  vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', rx.httpUrl);
  vi.stubEnv('OTEL_BSP_SCHEDULE_DELAY', '50');
  telemetry = startTelemetry({ log: pino({ level: 'silent' }), pod: { name: 'p', namespace: 'ns' } });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});
afterAll(async () => {
  await telemetry.shutdown();
  await rx.close();
  vi.unstubAllEnvs();
});

function context(policy: CompiledPolicy, fail: FailMode): SidecarContext {
  return { policy: () => policy, fail, telemetry, log: pino({ level: 'silent' }), pod: {} };
}

interface Upstream {
  port: number;
  server: Server;
  connections(): Promise<number>;
}

async function httpUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    server,
    connections: () => new Promise((r) => server.getConnections((_e, n) => r(n))),
  };
}

async function httpListener(ctx: SidecarContext, port: number): Promise<string> {
  const l = await createHttpListener(ctx, {
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: '127.0.0.1', port },
  });
  closers.push(() => l.close(100));
  return `http://127.0.0.1:${l.address.port}`;
}

const chat = (base: string, stream = false, signal?: AbortSignal) =>
  fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] }),
    signal: signal ?? AbortSignal.timeout(10_000),
  });

const completion = (text: string) =>
  JSON.stringify({
    id: 'c1',
    object: 'chat.completion',
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
  });
const sseChunk = (text: string) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function failOpenSpans(): Promise<number> {
  const spans = await rx.waitForSpans((s) => s.attributes['inferguard.fail_open'] === true, {
    timeoutMs: 5000,
  });
  return spans.length;
}

describe('engine fault on the answer (HTTP)', { timeout: 30_000 }, () => {
  for (const fail of ['closed', 'open'] as const) {
    it(`non-streamed, --fail ${fail}`, async () => {
      const { policy, state } = faultable(loadPolicyText(POLICY, 'p.yaml'));
      const up = await httpUpstream((_req, res) => {
        state.faulty = true; // the request was scanned; the answer's scan will throw
        res.writeHead(200, { 'content-type': 'application/json' }).end(completion('the model answer'));
      });
      const base = await httpListener(context(policy, fail), up.port);
      rx.clear();
      const res = await chat(base);
      const body = await res.text();
      if (fail === 'closed') {
        expect(res.status).toBe(503);
        expect(JSON.parse(body).error.type).toBe('engine_fault');
        expect(body).not.toContain('the model answer');
      } else {
        expect(res.status).toBe(200);
        expect(body).toContain('the model answer');
        expect(await failOpenSpans()).toBeGreaterThan(0);
      }
    });

    it(`mid-stream, --fail ${fail}: ${fail === 'closed' ? 'the stream ends with engine_fault, the rest is never sent' : 'the rest goes through unscanned and the span is marked'}`, async () => {
      const { policy, state } = faultable(loadPolicyText(POLICY, 'p.yaml'));
      const up = await httpUpstream((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(sseChunk('The first part is fine. '));
        void sleep(150).then(() => {
          state.faulty = true;
          res.write(sseChunk('AFTER-THE-FAULT'));
          res.end('data: [DONE]\n\n');
        });
      });
      const base = await httpListener(context(policy, fail), up.port);
      rx.clear();
      const res = await chat(base, true);
      const body = await res.text();
      expect(res.status).toBe(200);
      if (fail === 'closed') {
        expect(body).toContain('"engine_fault"');
        expect(body).not.toContain('AFTER-THE-FAULT');
        expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
      } else {
        expect(body).toContain('AFTER-THE-FAULT');
        expect(await failOpenSpans()).toBeGreaterThan(0);
      }
    });
  }
});

describe('engine fault on the answer (gRPC)', { timeout: 30_000 }, () => {
  let triton: FakeTriton;
  beforeAll(async () => {
    triton = await startFakeTriton();
  });
  afterAll(async () => {
    await triton.close();
  });

  for (const fail of ['closed', 'open'] as const) {
    it(`ModelInfer and ModelStreamInfer, --fail ${fail}`, async () => {
      const { policy, state } = faultable(loadPolicyText(POLICY, 'p.yaml'));
      const l = await startGrpcListener(context(policy, fail), {
        listen: { host: '127.0.0.1', port: 0 },
        upstream: { host: '127.0.0.1', port: triton.port },
      });
      closers.push(() => l.close(100));
      const client = new grpc.Client(`127.0.0.1:${l.address.port}`, grpc.credentials.createInsecure());
      closers.push(() => client.close());
      rx.clear();

      triton.script = () => {
        state.faulty = true;
        return { chunks: ['model ', 'ANSWER-TEXT'] };
      };
      const unary = await new Promise<{ status: grpc.StatusObject; value?: Buffer }>((resolve) => {
        let value: Buffer | undefined;
        const call = client.makeUnaryRequest(
          INFER,
          identity,
          identity,
          encodeInferRequest({ model: 'llm', text: 'hi' }),
          (_e, v) => (value = v ?? undefined),
        );
        call.on('status', (status) => setImmediate(() => resolve({ status, value })));
      });
      state.faulty = false;
      const stream = await new Promise<{ status: grpc.StatusObject; data: Buffer[] }>((resolve) => {
        const data: Buffer[] = [];
        const call = client.makeBidiStreamRequest(STREAM_INFER, identity, identity);
        call.on('data', (b: Buffer) => data.push(b));
        call.on('error', () => {});
        call.on('status', (status) => setImmediate(() => resolve({ status, data })));
        call.write(encodeInferRequest({ model: 'llm', id: 'a', text: 'hi' }));
        call.end();
      });
      triton.script = () => ({ chunks: ['ok'] });
      const delivered = (b: Buffer[]) => Buffer.concat(b).includes('ANSWER-TEXT');
      if (fail === 'closed') {
        expect(unary.status.code).toBe(grpc.status.UNAVAILABLE);
        expect(unary.status.details).toBe('inferguard could not scan this request (fail closed)');
        expect(unary.value).toBeUndefined();
        expect(stream.status.code).toBe(grpc.status.UNAVAILABLE);
        expect(delivered(stream.data)).toBe(false);
      } else {
        expect(unary.status.code).toBe(grpc.status.OK);
        expect(unary.value?.includes('ANSWER-TEXT')).toBe(true);
        expect(stream.status.code).toBe(grpc.status.OK);
        expect(delivered(stream.data)).toBe(true);
        expect(await failOpenSpans()).toBeGreaterThan(0);
      }
    });
  }
});

describe('upstream faults', { timeout: 30_000 }, () => {
  const policy = loadPolicyText(POLICY, 'p.yaml');

  it('HTTP: the model server resets the connection mid-stream → an error event and [DONE], no hang', async () => {
    const up = await httpUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseChunk('partial answer, then '));
      void sleep(50).then(() => req.socket.destroy());
    });
    const base = await httpListener(context(policy, 'closed'), up.port);
    const res = await chat(base, true);
    const body = await res.text();
    expect(res.status).toBe(200);
    expect(body).toContain('"upstream_unavailable"');
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('HTTP: a model server that stalls mid-stream hits the body timeout → an upstream_timeout event and [DONE], upstream closed', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => (closed = r));
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseChunk('then silence '));
      res.on('close', () => closed()); // never ends on its own
    });
    const l = await createHttpListener(
      context(policy, 'closed'),
      { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: up.port } },
      { bodyTimeoutMs: 300 },
    );
    closers.push(() => l.close(100));
    const res = await chat(`http://127.0.0.1:${l.address.port}`, true);
    const body = await res.text();
    expect(body).toContain('"type":"upstream_timeout"');
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await upstreamClosed;
    await expect.poll(() => up.connections(), { timeout: 5000 }).toBe(0);
  });

  it('HTTP: the model server resets before answering → 502', async () => {
    const up = await httpUpstream((req) => req.socket.destroy());
    const base = await httpListener(context(policy, 'closed'), up.port);
    const res = await chat(base);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('upstream_unavailable');
  });

  it('HTTP: a client that leaves mid-stream aborts the upstream request; no socket stays open upstream', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => (closed = r));
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const timer = setInterval(() => res.write(sseChunk('tick ')), 20);
      res.on('close', () => {
        clearInterval(timer);
        closed();
      });
    });
    const base = await httpListener(context(policy, 'closed'), up.port);
    const ac = new AbortController();
    const res = await chat(base, true, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await upstreamClosed; // the sidecar dropped the upstream response
    await expect.poll(() => up.connections(), { timeout: 5000 }).toBe(0);
  });

  it('gRPC: the model server dies mid-stream → the client gets a status (not a hang) and no held text', async () => {
    const server = new grpc.Server();
    server.register(
      STREAM_INFER,
      (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', () => {
          call.write(
            encodeStreamResponse({
              error_message: '',
              infer_response: {
                model_name: 'llm',
                model_version: '',
                id: 'a',
                parameters: { triton_final_response: { bool_param: false } },
                outputs: [
                  {
                    name: 'text_output',
                    datatype: 'BYTES',
                    shape: [1],
                    parameters: {},
                    contents: { bytes_contents: [Buffer.from('held SECRET-1618')] },
                  },
                ],
                raw_output_contents: [],
              },
            }),
          );
          setTimeout(() => server.forceShutdown(), 50);
        });
      },
      identity,
      identity,
      'bidi',
    );
    const port = await new Promise<number>((r, j) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))),
    );
    closers.push(() => server.forceShutdown());
    const l = await startGrpcListener(context(policy, 'closed'), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port },
    });
    closers.push(() => l.close(100));
    const client = new grpc.Client(`127.0.0.1:${l.address.port}`, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const r = await new Promise<{ status: grpc.StatusObject; data: Buffer[] }>((resolve) => {
      const data: Buffer[] = [];
      const call = client.makeBidiStreamRequest(STREAM_INFER, identity, identity, new grpc.Metadata(), {
        deadline: Date.now() + 8000,
      });
      call.on('data', (b: Buffer) => data.push(b));
      call.on('error', () => {});
      call.on('status', (status) => setImmediate(() => resolve({ status, data })));
      call.write(encodeInferRequest({ model: 'llm', id: 'a', text: 'hi' }));
    });
    expect(r.status.code).not.toBe(grpc.status.OK);
    expect(r.status.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
    // the tail that could still become a secret was held back, and is dropped with the error
    expect(Buffer.concat(r.data).includes('SECRET-1618')).toBe(false);
  });

  it('gRPC: a model server that answers garbage bytes → UNAVAILABLE, the garbage is not delivered', async () => {
    const server = new grpc.Server();
    server.register(
      INFER,
      (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.from([0x0a, 0xff, 0xff, 0x41, 0x42, SECRET.charCodeAt(0)])),
      identity,
      identity,
      'unary',
    );
    const port = await new Promise<number>((r, j) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))),
    );
    closers.push(() => server.forceShutdown());
    const l = await startGrpcListener(context(policy, 'open'), {
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port },
    });
    closers.push(() => l.close(100));
    const client = new grpc.Client(`127.0.0.1:${l.address.port}`, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const st = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeUnaryRequest(
        INFER,
        identity,
        identity,
        encodeInferRequest({ text: 'hi' }),
        () => {},
      );
      call.on('status', resolve);
    });
    // even with --fail open: an answer that cannot be decoded cannot be scanned
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.details).toMatch(/^model server unavailable: undecodable response/);
  });
});

describe('SIGTERM with calls in flight (the real process)', { timeout: 60_000 }, () => {
  it('in-flight HTTP streams and gRPC calls finish, new connections and calls are refused, exit 0', async () => {
    const { spawnCli } = await import('../testing/cli.js');
    const triton = await startFakeTriton();
    closers.push(() => triton.close());
    triton.script = () => ({ chunks: ['slow ', 'answer'], delayMs: 1500 });
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const timer = setInterval(() => {
        if (i < 10) res.write(sseChunk(`part${i++} `));
        else {
          clearInterval(timer);
          res.end('data: [DONE]\n\n');
        }
      }, 200);
    });
    const child = spawnCli(
      [
        'sidecar',
        '--http',
        `127.0.0.1:0=127.0.0.1:${up.port}`,
        '--grpc',
        `127.0.0.1:0=${triton.target}`,
        '--admin',
        '127.0.0.1:0',
        '--drain-seconds',
        '5',
      ],
      { env: { OTEL_TRACES_EXPORTER: 'none' } },
    );
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr?.resume();
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    closers.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const started = await new Promise<{
      admin: { port: number };
      listeners: { protocol: string; listen: { port: number } }[];
    }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sidecar did not start:\n${out}`)), 30_000);
      const poll = setInterval(() => {
        const line = out.split('\n').find((l) => l.includes('"inferguard sidecar started"'));
        if (!line) return;
        clearInterval(poll);
        clearTimeout(t);
        resolve(JSON.parse(line) as never);
      }, 25);
    });
    const port = (p: string) => started.listeners.find((l) => l.protocol === p)!.listen.port;
    const base = `http://127.0.0.1:${port('http')}`;
    const grpcTarget = `127.0.0.1:${port('grpc')}`;
    const unary = (client: grpc.Client) =>
      new Promise<grpc.StatusObject>((resolve) => {
        const call = client.makeUnaryRequest(
          INFER,
          identity,
          identity,
          encodeInferRequest({ text: 'hi' }),
          () => {},
        );
        call.on('status', resolve);
      });

    // in flight: a stream that takes ~2 s, and a gRPC call the model answers after 1.5 s
    const streamRes = await chat(base, true);
    const streamBody = streamRes.text();
    const client = new grpc.Client(grpcTarget, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const inferCalls = () => triton.calls.filter((c) => c.method === INFER).length;
    const slow = unary(client);
    await expect.poll(inferCalls, { timeout: 5000 }).toBe(1);

    child.kill('SIGTERM');
    await expect
      .poll(async () => (await fetch(`http://127.0.0.1:${started.admin.port}/readyz`)).status, {
        timeout: 5000,
      })
      .toBe(503);

    // new work is refused: a new HTTP connection, a new gRPC channel
    const fresh = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}' }).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(fresh);
    const other = new grpc.Client(grpcTarget, grpc.credentials.createInsecure());
    closers.push(() => other.close());
    expect((await unary(other)).code).toBe(grpc.status.UNAVAILABLE);
    expect(inferCalls()).toBe(1);

    // the in-flight ones finish whole
    expect((await slow).code).toBe(grpc.status.OK);
    const text = await streamBody;
    for (let i = 0; i < 10; i++) expect(text).toContain(`part${i}`);
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await exited).toBe(0);
  });
});
