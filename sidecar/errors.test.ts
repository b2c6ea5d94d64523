// Keeps the error table in sidecar/errors.ts and the one in docs/errors.md identical, in both directions:
// a code added to the code but not documented (or documented but gone) fails here, as does any drift in
// status, type or message.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../testing/cli.js';
import { ERRORS, GuardError, errorMessage, type ErrorCode } from './errors.js';

interface DocRow {
  code: string;
  http: number;
  grpc: string;
  type: string;
  message: string;
}

function docRows(): DocRow[] {
  const md = readFileSync(path.join(ROOT, 'docs', 'errors.md'), 'utf8');
  const rows: DocRow[] = [];
  for (const line of md.split('\n')) {
    const m =
      /^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*([A-Z_]+)\s*\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|$/.exec(
        line.trim(),
      );
    if (m) rows.push({ code: m[1], http: Number(m[2]), grpc: m[3], type: m[4], message: m[5] });
  }
  return rows;
}

const grpcName = (code: number): string => GrpcStatus[code];

describe('error table', () => {
  const rows = docRows();
  const documented = new Map(rows.map((r) => [r.code, r]));

  it('docs/errors.md has one well-formed row per code, none twice', () => {
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((r) => r.code)).size).toBe(rows.length);
  });

  it('every code in sidecar/errors.ts is documented with the same statuses, type and message', () => {
    for (const [code, def] of Object.entries(ERRORS)) {
      expect(documented.get(code), `docs/errors.md lacks ${code}`).toEqual({
        code,
        http: def.http,
        grpc: grpcName(def.grpc),
        type: def.type,
        message: def.message,
      });
    }
  });

  it('every documented code exists in sidecar/errors.ts', () => {
    const stale = rows.map((r) => r.code).filter((c) => !(c in ERRORS));
    expect(stale).toEqual([]);
  });

  it('HTTP and gRPC statuses agree on the kind of failure', () => {
    for (const def of Object.values(ERRORS)) {
      if (def.http === 403) expect(def.grpc).toBe(GrpcStatus.PERMISSION_DENIED);
      if (def.http >= 500) expect([GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED]).toContain(def.grpc);
    }
  });
});

describe('GuardError', () => {
  it('fills the message template and exposes the wire statuses', () => {
    const err = new GuardError('policy_violation', { rule: 'secrets.aws-access-key', category: 'secrets' });
    expect(err.message).toBe('blocked by inferguard policy: rule secrets.aws-access-key (secrets)');
    expect([err.http, err.grpc, err.type, err.code]).toEqual([
      403,
      GrpcStatus.PERMISSION_DENIED,
      'policy_violation',
      'policy_violation',
    ]);
  });

  it('leaves a missing parameter visible instead of printing undefined', () => {
    expect(errorMessage('request_too_large' as ErrorCode, { limit: 'maxRequestBytes' })).toBe(
      'request exceeds maxRequestBytes ({max})',
    );
  });
});
