// Copies non-TypeScript assets the built CLI loads at run time (rule packs, schemas, .proto files).
// proto/ lands in dist/proto for code that resolves it relative to the package root computed from its
// own location (testing/cli.ts ROOT is dist/ when built); sidecar/grpc/codec.ts also finds ../proto.
import { cpSync, existsSync } from 'node:fs';

for (const dir of ['policy/packs', 'policy/schema', 'proto']) {
  if (existsSync(dir)) cpSync(dir, `dist/${dir}`, { recursive: true });
}
