/**
 * The store lock (proper-lockfile's `.lock` folder with a heartbeat) and what runs under it: any
 * change a crash interrupted is completed first, and the holder checks the lock is still its own
 * before committing (BRK_ERR_PKI_LOCK_LOST otherwise, with nothing written).
 */
import { statSync } from 'node:fs';
import { lock } from 'proper-lockfile';
import { BrokerError, isBrokerError } from '../errors.ts';
import { recoverPending, type Recovery } from './journal.ts';
import type { StoreLayout } from './layout.ts';

const LOCK_RETRY = { retries: 400, factor: 1.15, minTimeout: 5, maxTimeout: 100, randomize: true };
/** Another command may take the lock over once its heartbeat (every UPDATE_MS) is this old. */
export const LOCK_STALE_MS = 15_000;
const LOCK_UPDATE_MS = 3_000;
/** A holder whose heartbeat is this old no longer trusts its lock: past it, another may take over any moment. */
const LOCK_TRUST_MS = LOCK_STALE_MS - 3_000;

/** The store lock as its holder sees it. */
export interface HeldLock {
  /** Throws BRK_ERR_PKI_LOCK_LOST unless the lock is still certainly ours: the gate before every commit. */
  check(): void;
}

interface Acquired extends HeldLock {
  /** check() failed: 'stale' (still our folder, but too old to trust) or 'gone' (removed, replaced, compromised). */
  lost: false | 'stale' | 'gone';
  /**
   * Lets go of the lock, once: releases it, unless it is gone, when it only waits (bounded) for
   * proper-lockfile to notice too, so that neither it nor its exit handler removes the new holder's lock.
   */
  finish(): Promise<void>;
}

/** Which lock folder this is (device, inode, birth time) and its heartbeat time; undefined when there is none. */
function lockState(file: string): { id: string; mtimeMs: number } | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return { id: `${st.dev}:${st.ino}:${st.birthtimeNs}`, mtimeMs: Number(st.mtimeMs) };
  } catch {
    return undefined;
  }
}

async function acquire(layout: StoreLayout): Promise<Acquired> {
  let compromised: Error | undefined;
  let noticed: () => void = () => {};
  const noticedP = new Promise<void>((r) => (noticed = r));
  let release: () => Promise<void>;
  try {
    release = await lock(layout.dir, {
      lockfilePath: layout.lock,
      realpath: false,
      stale: LOCK_STALE_MS,
      update: LOCK_UPDATE_MS,
      retries: LOCK_RETRY,
      // the default throws from a timer: an uncaught ECOMPROMISED that kills the command mid-change
      onCompromised: (err) => {
        compromised = err;
        noticed();
      },
    });
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new BrokerError('BRK_ERR_PKI_LOCKED', `the store ${layout.dir} stayed locked by another broker pki command`, { cause });
    }
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot lock the store ${layout.dir}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  const identity = lockState(layout.lock)?.id;
  let finished = false;
  const held: Acquired = {
    lost: false,
    check() {
      let why: string | undefined;
      let gone = true;
      if (compromised) why = `its heartbeat failed (${(compromised as NodeJS.ErrnoException).message})`;
      else {
        const now = lockState(layout.lock);
        const age = now ? Date.now() - now.mtimeMs : 0;
        if (now === undefined) why = `${layout.lock} was removed`;
        else if (now.id !== identity) why = `${layout.lock} was replaced: another command took the lock over`;
        else if (age > LOCK_TRUST_MS) {
          why = `its heartbeat is ${(age / 1000).toFixed(1)} s old (this command was stalled), so another command may take it over`;
          gone = false;
        }
      }
      if (why) {
        held.lost = gone ? 'gone' : 'stale';
        throw new BrokerError('BRK_ERR_PKI_LOCK_LOST', `lost the lock on the store ${layout.dir}: ${why}; nothing of this change was written`);
      }
    },
    async finish() {
      if (finished) return;
      finished = true;
      if (held.lost !== 'gone') return release().catch(() => {});
      if (compromised) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([noticedP, new Promise<void>((r) => (timer = setTimeout(r, LOCK_UPDATE_MS + 2_000)))]);
      clearTimeout(timer);
    },
  };
  return held;
}

/**
 * Runs `fn` holding the store lock, after completing any change a crash interrupted. When the lock
 * is lost (BRK_ERR_PKI_LOCK_LOST from `check()`), it is let go of (left alone if it may be another's
 * now), `onLost` runs under the lock taken again (to record the failure), and the error is rethrown.
 */
export async function withStoreLock<T>(layout: StoreLayout, fn: (lock: HeldLock) => Promise<T>, o: { onLost?: (err: BrokerError) => void } = {}): Promise<T> {
  const held = await acquire(layout);
  try {
    held.check();
    recoverPending(layout);
    return await fn(held);
  } catch (err) {
    if (held.lost && isBrokerError(err, 'BRK_ERR_PKI_LOCK_LOST')) {
      await held.finish();
      if (o.onLost) await relockFor(layout, err, o.onLost);
    }
    throw err;
  } finally {
    await held.finish();
  }
}

/** `broker pki audit recover`: takes the lock, and recovers (what every change does first), alone. */
export async function recoverStore(layout: StoreLayout): Promise<Recovery> {
  const held = await acquire(layout);
  try {
    held.check();
    return recoverPending(layout);
  } finally {
    await held.finish();
  }
}

async function relockFor(layout: StoreLayout, err: BrokerError, onLost: (err: BrokerError) => void): Promise<void> {
  let again: Acquired;
  try {
    again = await acquire(layout);
  } catch {
    return; // the original error is what matters
  }
  try {
    recoverPending(layout);
    onLost(err);
  } catch {
    // best effort
  } finally {
    await again.finish();
  }
}
