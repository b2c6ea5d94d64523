import { describe, expect, it } from 'vitest';
import { inspectedRoute, pathAllowed } from './routes.js';

describe('inspectedRoute', () => {
  it('knows the OpenAI routes, the /openai prefix and the v2 routes, POST only', () => {
    expect(inspectedRoute('POST', '/v1/chat/completions')?.kind).toBe('chat');
    expect(inspectedRoute('POST', '/openai/v1/completions')?.kind).toBe('completions');
    expect(inspectedRoute('POST', '/v1/responses')?.operation).toBe('chat');
    expect(inspectedRoute('POST', '/v2/models/llama%203/versions/2/infer')).toEqual({
      kind: 'kserve-infer',
      operation: 'infer',
      model: 'llama 3',
    });
    expect(inspectedRoute('POST', '/v2/models/m/generate_stream')?.kind).toBe('triton-generate-stream');
    expect(inspectedRoute('GET', '/v1/chat/completions')).toBeUndefined();
    expect(inspectedRoute('POST', '/v1/chat/completions/')).toBeUndefined();
    expect(inspectedRoute('POST', '/v1/audio/transcriptions')).toBeUndefined();
  });
});

describe('pathAllowed', () => {
  const allow = ['GET /health', 'GET /v1/models*', '/metrics', 'POST /tokenize'];
  it.each([
    ['GET', '/health', true],
    ['HEAD', '/health', true],
    ['POST', '/health', false],
    ['GET', '/healthz', false],
    ['GET', '/v1/models', true],
    ['GET', '/v1/models/fake-model', true],
    ['DELETE', '/metrics', true],
    ['POST', '/tokenize', true],
    ['GET', '/tokenize', false],
    ['GET', '/v1/models/../../v1/chat/completions', false],
    ['GET', '/v1/models/%2e%2e/x', false],
    ['GET', '/v1/models//x', false],
    ['GET', '/v1/models/.\\x', false],
  ])('%s %s → %s', (method, path, ok) => {
    expect(pathAllowed(allow, method, path)).toBe(ok);
  });
  it('nothing is allowed by an empty list', () => {
    expect(pathAllowed([], 'GET', '/health')).toBe(false);
  });
});
