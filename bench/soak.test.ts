// The soak's invariants on a small count, so CI checks them on every run (the figures come from
// `npx tsx bench/soak.ts`, see docs/benchmarks.md): through the real sidecar process, 64 concurrent
// clients, mixed benign and attack requests over gRPC and HTTP — nothing lost or misrouted, every
// attack blocked and none reaching an upstream.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { imageNodeOptions, runSoak, violations } from './soak.js';

describe('the sidecar image V8 flags', () => {
  it('start node, and bound the heap well inside the injected sidecar memory limit (256Mi)', () => {
    const flags = imageNodeOptions();
    expect(flags).toMatch(/--max-old-space-size=\d+/);
    // a flag node refuses in NODE_OPTIONS would stop every container of the image from starting
    const r = spawnSync(
      process.execPath,
      [
        '-p',
        'JSON.stringify(require("v8").getHeapSpaceStatistics().concat(require("v8").getHeapStatistics()))',
      ],
      { env: { ...process.env, NODE_OPTIONS: flags }, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const stats = JSON.parse(r.stdout) as { heap_size_limit?: number }[];
    const limitMiB = (stats.at(-1)!.heap_size_limit ?? 0) / 2 ** 20;
    expect(limitMiB).toBeGreaterThan(64);
    expect(limitMiB).toBeLessThanOrEqual(160);
  });
});

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
      // it ran with the image's V8 flags, and its --trace-gc output was read (for the per-round figures)
      expect(r.nodeOptions).toBe(imageNodeOptions());
      expect(r.rounds.reduce((n, x) => n + x.requests, 0)).toBe(640);
    },
  );
});
