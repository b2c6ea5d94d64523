// docs/annotations.md and docs/injector.md are kept in sync with the code in both directions: every
// annotation key and every reason code is documented, and nothing documented is stale.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ANNOTATION, ANNOTATION_DOCS } from './annotations.js';
import { DENY_REASONS, SKIP_REASONS } from './mutate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const annotationsMd = readFileSync(path.join(ROOT, 'docs', 'annotations.md'), 'utf8');
const injectorMd = readFileSync(path.join(ROOT, 'docs', 'injector.md'), 'utf8');

/** first-column backticked values of the markdown table rows under a heading */
function firstColumn(md: string, heading: string): string[] {
  const start = md.indexOf(heading);
  if (start < 0) return [];
  const rows: string[] = [];
  for (const line of md.slice(start).split('\n').slice(1)) {
    if (line.startsWith('#')) break;
    const m = /^\| `([^`]+)` \|/.exec(line);
    if (m) rows.push(m[1]);
  }
  return rows;
}

describe('docs/annotations.md', () => {
  it('has one table row per annotation key, and none other', () => {
    const rows = firstColumn(annotationsMd, '# Annotations');
    expect(rows.sort()).toEqual(Object.values(ANNOTATION).sort());
    expect(ANNOTATION_DOCS.map((d) => d.key).sort()).toEqual(Object.values(ANNOTATION).sort());
  });

  it('mentions no inferguard.io/ key that does not exist', () => {
    const mentioned = new Set(annotationsMd.match(/inferguard\.io\/[a-z0-9-]+/g));
    const allowed = new Set<string>([
      ...Object.values(ANNOTATION),
      'inferguard.io/injection',
      'inferguard.io/policy',
      'inferguard.io/capure',
      'inferguard.io/v1alpha1',
    ]);
    for (const k of mentioned) expect(allowed, k).toContain(k);
  });
});

describe('docs/injector.md reason codes', () => {
  it('lists every skip code and every deny code, and no stale ones', () => {
    // both tables (skipped, denied) sit under the one heading
    const unique = [...new Set(firstColumn(injectorMd, '## Reason codes'))].sort();
    expect(unique).toEqual([...Object.keys(SKIP_REASONS), ...Object.keys(DENY_REASONS)].sort());
  });
});
