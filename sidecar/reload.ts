// Hot reload of the policy file or directory.
//
// Kubernetes mounts a ConfigMap as `policy.yaml -> ..data/policy.yaml`, `..data -> ..2026_11_26_…`, and
// updates it by writing a new timestamped directory and renaming a new `..data` symlink over the old one
// (atomic). A watch on the file itself would follow the old inode into the deleted directory and go
// silent, so we watch the DIRECTORY (the policy dir, or the file's parent) and compare a fingerprint of
// the policy files' contents, read through the symlinks. fs.watch can miss events (network and overlay
// filesystems, inotify limits), so a slow poll of the same fingerprint backs it up.
//
// An invalid new policy never replaces a good one: the caller keeps enforcing the last good policy and
// reports the error (log, /readyz detail, metric). The next change on disk is tried again.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CompiledPolicy } from '../policy/index.js';

export interface PolicyWatcherOptions {
  path: string;
  /** loads and compiles the policy (with any --mode override applied) */
  load: () => Promise<CompiledPolicy>;
  onReload: (policy: CompiledPolicy) => void;
  onError: (err: unknown) => void;
  log: Logger;
  /** poll interval; 0 = rely on fs.watch only */
  pollMs: number;
  /** quiet time after the last filesystem event before reloading (editors and kubelet write in steps) */
  debounceMs?: number;
}

const MAX_FILE = 16 << 20;

/**
 * sha256 over the names and contents of the policy files: the file itself, or a directory's *.yaml/*.yml
 * files without dot-entries such as `..data` (the set loadPolicy reads)
 */
export async function fingerprint(p: string): Promise<string> {
  const hash = createHash('sha256');
  const st = await stat(p);
  if (st.isDirectory()) {
    const names = (await readdir(p)).filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n)).sort();
    for (const name of names) {
      const full = path.join(p, name);
      const s = await stat(full).catch(() => undefined);
      if (!s?.isFile()) continue;
      hash.update(`${name}\0${s.size}\0`);
      if (s.size <= MAX_FILE) hash.update(await readFile(full));
      else hash.update(`${s.ino}:${s.mtimeMs}`);
    }
  } else {
    hash.update(`${st.size}\0`);
    hash.update(st.size <= MAX_FILE ? await readFile(p) : `${st.ino}:${st.mtimeMs}`);
  }
  return hash.digest('hex');
}

export class PolicyWatcher {
  readonly #o: PolicyWatcherOptions;
  #fp: string | undefined;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(opts: PolicyWatcherOptions) {
    this.#o = opts;
  }

  /** record what is on disk now; call before the initial load so a change in between is not missed */
  async prime(): Promise<void> {
    this.#fp = await fingerprint(this.#o.path).catch(
      (err: NodeJS.ErrnoException) => `error:${err.code ?? 'unknown'}`,
    );
  }

  async start(): Promise<void> {
    const st = await stat(this.#o.path).catch(() => undefined);
    const dir = st?.isDirectory() ? this.#o.path : path.dirname(this.#o.path);
    this.#watch(dir);
    if (this.#o.pollMs > 0) {
      this.#poll = setInterval(() => {
        if (!this.#watcher) this.#watch(dir);
        void this.check();
      }, this.#o.pollMs);
      this.#poll.unref();
    }
  }

  #watch(dir: string): void {
    if (this.#closed) return;
    try {
      const w = watch(dir, { persistent: false }, () => this.#schedule());
      w.on('error', (err) => {
        this.#o.log.warn({ dir, err: err.message }, 'policy directory watch failed; polling only');
        w.close();
        if (this.#watcher === w) this.#watcher = undefined;
        this.#schedule();
      });
      this.#watcher = w;
    } catch (err) {
      this.#o.log.warn(
        { dir, err: err instanceof Error ? err.message : String(err) },
        'cannot watch the policy directory; polling only',
      );
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.check(), this.#o.debounceMs ?? 150);
    this.#debounce.unref();
  }

  /** compare the files with the last fingerprint and reload on a change; concurrent calls coalesce */
  check(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        if (this.#closed) return;
        const fp = await fingerprint(this.#o.path).catch(
          (err: NodeJS.ErrnoException) => `error:${err.code ?? 'unknown'}`,
        );
        if (fp === this.#fp) continue;
        this.#fp = fp;
        let policy: CompiledPolicy;
        try {
          policy = await this.#o.load();
        } catch (err) {
          if (!this.#closed) this.#o.onError(err);
          continue;
        }
        if (!this.#closed) this.#o.onReload(policy);
      } while (this.#again);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
