// The soak's invariants on a small count, so CI checks them on every run (the figures come from
// `npx tsx bench/soak.ts`, see docs/benchmarks.md): through the real sidecar process, 64 concurrent
// clients, mixed benign and attack requests over gRPC and HTTP — nothing lost or misrouted, every
// attack blocked and none reaching an upstream.
import { describe, expect, it } from 'vitest';
import { runSoak, violations } from './soak.js';

describe('soak (small)', () => {
  it(
    '64 concurrent clients: no lost or misrouted answer, every attack blocked',
    { timeout: 90_000 },
    async () => {
      const r = await runSoak({ requests: 640, concurrency: 64, maxSeconds: 60 });
      expect(violations(r)).toEqual([]);
      expect(r.stoppedEarly).toBe(false);
      expect(r.grpc.sent + r.http.sent).toBe(640);
      // a quarter of each protocol's requests are attacks, and each was answered with a block
      expect(r.grpc.blocked).toBe(80);
      expect(r.http.blocked).toBe(80);
      expect(r.rssMiB.end).toBeGreaterThan(0);
    },
  );
});
