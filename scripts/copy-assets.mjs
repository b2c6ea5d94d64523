// Copies non-TypeScript assets the built CLI loads at run time (rule packs, schemas).
import { cpSync, existsSync } from 'node:fs';

for (const dir of ['policy/packs', 'policy/schema']) {
  if (existsSync(dir)) cpSync(dir, `dist/${dir}`, { recursive: true });
}
