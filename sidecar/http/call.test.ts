// The dispatch-based upstream call against real node:http servers: what the adapter relies on —
// headers as request() gave them, a bounded whole-body read, backpressure on streamed bodies, and a
// client that goes away aborting the upstream request.
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Cancel, upstreamCall } from './call.js';

const open: { server: Server; pool: Pool }[] = [];

async function serve(handler: RequestListener): Promise<{ server: Server; pool: Pool }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const s = { server, pool };
  open.push(s);
  return s;
}

afterEach(async () => {
  for (const { server, pool } of open.splice(0)) {
    await pool.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

describe('upstreamCall', () => {
  it('gives status, headers (repeated ones as arrays) and the whole body byte for byte', async () => {
    const body = Buffer.from(JSON.stringify({ text: 'héllo wörld '.repeat(5000) }));
    const { pool } = await serve((_req, res) => {
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.setHeader('x-model', 'm');
      res.writeHead(201, { 'content-type': 'application/json' });
      // several writes: the body arrives in more than one chunk
      for (let i = 0; i < body.length; i += 7000) res.write(body.subarray(i, i + 7000));
      res.end();
    });
    const up = await upstreamCall(pool, { path: '/x', method: 'POST', body: '{}' });
    expect(up.statusCode).toBe(201);
    expect(up.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(up.headers['x-model']).toBe('m');
    expect(up.headers['content-type']).toBe('application/json');
    const got = await up.readAll(1 << 20, () => new Error('too big'));
    expect(got.equals(body)).toBe(true);
  });

  it('a body over the bound fails with the caller’s error and closes the upstream request', async () => {
    let closedEarly: Promise<boolean> | undefined;
    const { pool } = await serve((_req, res) => {
      closedEarly = new Promise((r) => res.once('close', () => r(!res.writableFinished)));
      res.writeHead(200);
      const piece = Buffer.alloc(16 * 1024, 'a');
      const pump = (): void => {
        while (!res.destroyed && res.write(piece));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const up = await upstreamCall(pool, { path: '/big', method: 'GET' });
    await expect(up.readAll(100_000, () => new Error('over the bound'))).rejects.toThrow('over the bound');
    expect(await closedEarly).toBe(true);
  });

  it('streamed chunks apply backpressure: the upstream waits while the consumer is busy, nothing is lost', async () => {
    const piece = Buffer.alloc(64 * 1024, 'x');
    const total = 256; // 16 MiB: far more than the socket buffers hold
    let written = 0;
    const { pool } = await serve((_req, res) => {
      res.writeHead(200);
      const pump = (): void => {
        while (written < total) {
          written++;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const up = await upstreamCall(pool, { path: '/stream', method: 'GET' });
    const it = up[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    // the consumer is busy: the upstream fills the socket buffers and stops
    await new Promise((r) => setTimeout(r, 300));
    const stalledAt = written;
    expect(stalledAt).toBeLessThan(total / 2);
    let bytes = first.value!.length;
    for (let r = await it.next(); !r.done; r = await it.next()) bytes += r.value.length;
    expect(bytes).toBe(total * piece.length);
  });

  it('a client gone mid-answer aborts the upstream request and the read fails', async () => {
    let closedEarly: Promise<boolean> | undefined;
    const { pool } = await serve((_req, res) => {
      closedEarly = new Promise((r) => res.once('close', () => r(!res.writableFinished)));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n'); // then hangs, as a long generation does
    });
    const cancel = new Cancel();
    const up = await upstreamCall(pool, { path: '/hang', method: 'POST', body: '{}' }, cancel);
    const it = up[Symbol.asyncIterator]();
    expect((await it.next()).value?.toString()).toBe('data: {"n":1}\n\n');
    const pending = it.next();
    cancel.abort();
    await expect(pending).rejects.toThrow();
    expect(await closedEarly).toBe(true);
  });

  it('a client gone before the call starts: nothing is sent', async () => {
    let requests = 0;
    const { pool } = await serve((_req, res) => {
      requests++;
      res.end();
    });
    const cancel = new Cancel();
    cancel.abort();
    await expect(upstreamCall(pool, { path: '/', method: 'GET' }, cancel)).rejects.toThrow('aborted');
    expect(requests).toBe(0);
  });

  it('a refused connection rejects with the socket error code (mapped to 502 by the listener)', async () => {
    const { server, pool } = await serve(() => undefined);
    server.close();
    await once(server, 'close');
    await expect(upstreamCall(pool, { path: '/', method: 'GET' })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
  });
});
