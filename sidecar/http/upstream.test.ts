import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { GuardError } from '../errors.js';
import { decodeBody, requestHeaders, responseHeaders, upstreamError } from './upstream.js';

describe('headers across the proxy', () => {
  it('drops hop-by-hop fields, the ones Connection names, and expect; keeps the rest', () => {
    const h = requestHeaders({
      host: 'model:8000',
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'x-hop': '1',
      te: 'trailers',
      'transfer-encoding': 'chunked',
      expect: '100-continue',
      authorization: 'Bearer t',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(h).toEqual({
      host: 'model:8000',
      authorization: 'Bearer t',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(
      responseHeaders({
        'content-type': 'text/event-stream',
        'transfer-encoding': 'chunked',
        'set-cookie': ['a=1', 'b=2'],
      }),
    ).toEqual({
      'content-type': 'text/event-stream',
      'set-cookie': ['a=1', 'b=2'],
    });
  });

  it('maps socket failures onto the error table', () => {
    expect(upstreamError({ code: 'ECONNREFUSED' }).http).toBe(502);
    expect(upstreamError({ code: 'UND_ERR_HEADERS_TIMEOUT' }).http).toBe(504);
    expect(upstreamError({ code: 'UND_ERR_DESTROYED' }).http).toBe(503);
  });

  it('decodes bodies within the bound; a bomb is request_too_large, garbage malformed', () => {
    const body = Buffer.from('{"a":1}');
    expect(decodeBody(gzipSync(body), 'gzip', 100).equals(body)).toBe(true);
    const bomb = gzipSync(Buffer.alloc(1 << 20));
    expect(() => decodeBody(bomb, 'gzip', 1000)).toThrow(
      expect.objectContaining({ code: 'request_too_large' }) as GuardError,
    );
    expect(() => decodeBody(Buffer.from('nope'), 'gzip', 1000)).toThrow(
      expect.objectContaining({ code: 'malformed_request' }) as GuardError,
    );
    expect(() => decodeBody(body, 'zstd', 1000)).toThrow(
      expect.objectContaining({ code: 'unsupported_encoding' }) as GuardError,
    );
  });
});
