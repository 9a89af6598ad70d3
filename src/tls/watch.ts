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
  for (const dir of dirs) {
    try {
      const w = watch(dir, { persistent: false }, (_event, file) => {
        if (file === null || names.has(String(file))) fire(`${dir}/${file ?? ''}`);
      });
      w.on('error', () => {});
      watchers.push(w);
    } catch {
      // a folder that does not exist cannot change; the config check reports missing files
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
