import { defineConfig } from 'vitest/config';

// Two projects: `unit` is everything that runs without root (npm test);
// `e2e` needs root for network namespaces and iptables (npm run test:e2e, run by .ci/run).
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        test: {
          name: 'unit',
          setupFiles: ['testing/fast-check-setup.ts'],
          include: ['{policy,sidecar,injector,testing,demo,bench,helm}/**/*.test.ts', '*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          setupFiles: ['testing/fast-check-setup.ts'],
          include: ['e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // namespaces and fixed addresses: run files one after another
          fileParallelism: false,
        },
      },
    ],
  },
});
