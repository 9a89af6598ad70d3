/**
 * File I/O for the CA store: reads that fail with a coded error naming the file, and a write
 * transaction that stages every file (temp file + fsync) before renaming any of them into place,
 * so a full disk or a crash while staging leaves the store exactly as it was.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, chmodSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BrokerError } from '../errors.ts';

export const DIR_MODE = 0o700;
export const PRIVATE_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export function readText(file: string, what = 'file'): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read ${what} ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

export function readBytes(file: string, what = 'file'): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read ${what} ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

export function ensureDir(dir: string, mode = DIR_MODE): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot create folder ${dir}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a directory; the renames are still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export interface Staged {
  target: string;
  temp: string;
}

/** The temp file name a target is staged under: `.NAME.<12 hex>.tmp` beside it. */
export const TEMP_NAME = /^\..+\.[0-9a-f]{12}\.tmp$/;

/** Collects file writes; `commit()` makes all of them visible, or none (short of a failing rename). */
export class WriteTransaction {
  readonly #writes: Array<{ target: string; data: string | Uint8Array; mode: number }> = [];

  write(target: string, data: string | Uint8Array, mode = PUBLIC_MODE): this {
    this.#writes.push({ target, data, mode });
    return this;
  }

  get targets(): string[] {
    return this.#writes.map((w) => w.target);
  }

  /** Writes every file to a temp file beside its target (fsynced); on failure removes them all and throws. */
  stage(): Staged[] {
    const staged: Staged[] = [];
    try {
      for (const w of this.#writes) {
        ensureDir(dirname(w.target));
        const temp = join(dirname(w.target), `.${basename(w.target)}.${randomBytes(6).toString('hex')}.tmp`);
        staged.push({ target: w.target, temp });
        writeDurably(temp, w.data, w.mode);
      }
      return staged;
    } catch (cause) {
      discard(staged);
      if (cause instanceof BrokerError) throw cause;
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot write ${staged.at(-1)?.target}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
    }
  }

  /**
   * Stages every file, runs `beforePublish`, then renames them all into place. If staging or
   * `beforePublish` throws, the temp files are removed and nothing is published.
   */
  commit(beforePublish?: () => void): void {
    const staged = this.stage();
    try {
      beforePublish?.();
    } catch (cause) {
      discard(staged);
      if (cause instanceof BrokerError) throw cause;
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot write ${staged.at(-1)?.target}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
    }
    try {
      publish(staged);
    } catch (err) {
      discard(staged);
      throw err;
    }
  }
}

export function discard(staged: readonly Staged[]): void {
  for (const s of staged) rmSync(s.temp, { force: true });
}

/**
 * Renames staged files into place in order, then fsyncs their folders. `afterEach` runs after each
 * rename (a fault-injection point). A failing rename throws; the temps not yet renamed stay.
 */
export function publish(staged: readonly Staged[], afterEach?: (index: number) => void): void {
  const dirs = new Set<string>();
  for (const [i, s] of staged.entries()) {
    try {
      renameSync(s.temp, s.target);
    } catch (cause) {
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot move ${s.target} into place: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
    }
    dirs.add(dirname(s.target));
    afterEach?.(i);
  }
  for (const d of dirs) fsyncDir(d);
}

/** Replaces one file atomically and durably: temp file, fsync, rename, fsync of the folder. */
export function replaceFile(target: string, data: string | Uint8Array, mode: number): void {
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeDurably(temp, data, mode);
    renameSync(temp, target);
  } catch (cause) {
    rmSync(temp, { force: true });
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot write ${target}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  fsyncDir(dirname(target));
}

export { fsyncDir };

function writeDurably(file: string, data: string | Uint8Array, mode: number): void {
  const fd = openSync(file, 'wx', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, mode); // the umask may have narrowed or (for PUBLIC_MODE) not mattered; be exact
}
