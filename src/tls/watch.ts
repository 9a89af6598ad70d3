/**
 * Watches the files a broker runs on (its config, the PKI store or the explicit certificate
 * files) and calls back, debounced, when any changes. Folders are watched rather than files, so
 * atomic renames (our own store writes) and Kubernetes-style `..data` symlink swaps are seen.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface Watcher {
  close(): void;
}

export function watchFiles(paths: readonly string[], debounceMs: number, onChange: (what: string) => void): Watcher {
  const dirs = new Set(paths.map((p) => dirname(p)));
  // Only the watched names (and Kubernetes' `..data` swap) count: a log file or a lock in the same
  // folder must not trigger reloads. Temp files renamed into place arrive under the final name too.
  const names = new Set([...paths.map((p) => basename(p)), '..data']);
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let last = '';
  const fire = (what: string) => {
    last = what;
    clearTimeout(timer);
    timer = setTimeout(() => onChange(last), debounceMs);
    timer.unref();
  };
  let closed = false;
  const watchDir = (dir: string): boolean => {
    try {
      const w = watch(dir, { persistent: false }, (_event, file) => {
        if (file === null || names.has(String(file))) fire(`${dir}/${file ?? ''}`);
      });
      w.on('error', () => {});
      watchers.push(w);
      return true;
    } catch {
      return false;
    }
  };
  for (const dir of dirs) {
    if (watchDir(dir)) continue;
    // A folder that does not exist yet (the store's assertion/ before the first
    // `pki rotate assertion-key`): watch its parent until it appears, then the folder itself.
    const parent = dirname(dir);
    const name = basename(dir);
    try {
      const pw = watch(parent, { persistent: false }, (_event, file) => {
        if (closed || (file !== null && String(file) !== name) || !watchDir(dir)) return;
        pw.close();
        fire(`${dir}/`);
      });
      pw.on('error', () => {});
      watchers.push(pw);
    } catch {
      // neither exists: nothing that can change; the config check reports missing files
    }
  }
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
