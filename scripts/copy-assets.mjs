// Copies non-TypeScript assets the built CLI loads at run time: rule packs, the built-in default policy,
// schemas, and the .proto files (tests that live beside them stay behind). proto/ lands in dist/proto
// for code that resolves it relative to the package root computed from its own location
// (testing/cli.ts ROOT is dist/ when built); sidecar/grpc/codec.ts also finds ../proto. The container
// images ship dist/ and proto/ only.
import { cpSync, existsSync } from 'node:fs';

for (const asset of ['policy/packs', 'policy/schema', 'policy/default-policy.yaml', 'proto']) {
  if (existsSync(asset)) {
    cpSync(asset, `dist/${asset}`, { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
  }
}
