// Hot reload against real files: the real loader, fs.watch on a real directory, a kubelet-style ConfigMap
// symlink swap, and the polling fallback.
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadPolicy, PolicyLoadError, type CompiledPolicy } from '../policy/index.js';
import { PolicyWatcher, fingerprint } from './reload.js';

const doc = (name: string, pattern = 'bluebird'): string => `apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: ${name} }
spec:
  packs: []
  rules:
    - { id: acme.codename, pattern: '${pattern}', action: block }
`;

let dir: string;
let watcher: PolicyWatcher | undefined;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'inferguard-reload-'));
});
afterEach(() => {
  watcher?.close();
  watcher = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function watch(p: string, pollMs: number) {
  const reloads: CompiledPolicy[] = [];
  const errors: unknown[] = [];
  watcher = new PolicyWatcher({
    path: p,
    load: () => loadPolicy(p),
    onReload: (policy) => reloads.push(policy),
    onError: (err) => errors.push(err),
    log: pino({ level: 'silent' }),
    pollMs,
    debounceMs: 20,
  });
  return { reloads, errors, watcher };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('policy hot reload', () => {
  it('picks up a kubelet ConfigMap ..data symlink swap; an invalid policy is reported, then fixed', async () => {
    const swap = (version: string, text: string): void => {
      mkdirSync(path.join(dir, `..${version}`));
      writeFileSync(path.join(dir, `..${version}`, 'policy.yaml'), text);
      symlinkSync(`..${version}`, path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    };
    mkdirSync(path.join(dir, '..v1'));
    writeFileSync(path.join(dir, '..v1', 'policy.yaml'), doc('v1'));
    symlinkSync('..v1', path.join(dir, '..data'));
    symlinkSync('..data/policy.yaml', path.join(dir, 'policy.yaml'));
    const file = path.join(dir, 'policy.yaml');

    const w = watch(file, 0); // fs.watch only
    await w.watcher.prime();
    const first = await loadPolicy(file);
    await w.watcher.start();

    swap('v2', doc('v2', 'bluebird|redwing'));
    await until('reload of v2', () => w.reloads.length === 1);
    expect(w.reloads[0].name).toBe('v2');
    expect(w.reloads[0].hash).not.toBe(first.hash);

    swap('v3', doc('v3', '(unclosed'));
    await until('error for v3', () => w.errors.length === 1);
    expect(w.errors[0]).toBeInstanceOf(PolicyLoadError);
    expect((w.errors[0] as PolicyLoadError).problems[0]).toMatchObject({ line: 7 });
    expect(w.reloads).toHaveLength(1);

    swap('v4', doc('v4'));
    await until('reload of v4', () => w.reloads.length === 2);
    expect(w.reloads[1].name).toBe('v4');
  });

  it('a directory of policies reloads when a file in it changes; unrelated touches do not reload', async () => {
    writeFileSync(path.join(dir, 'a.yaml'), doc('dir'));
    const w = watch(dir, 0);
    await w.watcher.prime();
    await w.watcher.start();
    writeFileSync(path.join(dir, 'a.yaml'), doc('dir'));
    writeFileSync(path.join(dir, '.hidden'), 'x');
    writeFileSync(path.join(dir, 'README.txt'), 'not a policy');
    await new Promise((r) => setTimeout(r, 200));
    expect(w.reloads).toHaveLength(0);
    writeFileSync(path.join(dir, 'a.yaml'), doc('dir2'));
    await until('reload', () => w.reloads.length === 1);
    expect(w.reloads[0].name).toBe('dir2');
  });

  it('check(), what each poll tick runs, reloads once per change on disk', async () => {
    const file = path.join(dir, 'p.yaml');
    writeFileSync(file, doc('poll1'));
    const w = watch(file, 50);
    await w.watcher.prime();
    // no start(): no fs.watch, so only these explicit checks can see the change
    writeFileSync(file, doc('poll2'));
    await w.watcher.check();
    expect(w.reloads.map((p) => p.name)).toEqual(['poll2']);
    await w.watcher.check();
    expect(w.reloads).toHaveLength(1);
  });

  it('fingerprints contents, not timestamps', async () => {
    const file = path.join(dir, 'p.yaml');
    writeFileSync(file, doc('x'));
    const a = await fingerprint(file);
    writeFileSync(file, doc('x'));
    expect(await fingerprint(file)).toBe(a);
    writeFileSync(file, doc('y'));
    expect(await fingerprint(file)).not.toBe(a);
  });
});
