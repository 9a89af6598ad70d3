/**
 * The CA store: opening it, the lock that serialises every change, and the one path by which a
 * change is made (`mutate`): load under the lock → compute → stage every file → audit → publish.
 */
import { existsSync, statSync } from 'node:fs';
import { lock } from 'proper-lockfile';
import { BrokerError, isBrokerError, type ErrorCode } from '../errors.ts';
import { ensureDir, PRIVATE_MODE, readText, WriteTransaction } from './files.ts';
import { parseInventory, serializeInventory, type Inventory } from './inventory.ts';
import { storeLayout, type StoreLayout } from './layout.ts';
import type { AuditFields } from './audit.ts';
import { commitChange, recoverPending, type Recovery } from './journal.ts';
import { loadPrivateKey } from './keys.ts';
import { x509 } from './x509.ts';
import type { Issuer } from './certs.ts';

export interface CaKeys {
  root: Issuer;
  intermediate: Issuer;
  /** Issuing CAs still in their overlap, by serial (their CRLs must still be signed). */
  previous: Map<string, Issuer>;
  /** Roots still in their overlap, by serial. */
  previousRoots: Map<string, Issuer>;
}

export interface MutationContext {
  layout: StoreLayout;
  inventory: Inventory;
  tx: WriteTransaction;
  /** Decrypts the CA keys (once) with the passphrase the command was given. */
  keys(): Promise<CaKeys>;
}

export interface MutationResult<T> {
  result: T;
  audit: Omit<AuditFields, 'op' | 'outcome'>;
}

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
  lost: boolean;
  release(): Promise<void>;
  /** After a loss: waits (bounded) for proper-lockfile to notice too, so that it never removes the new holder's lock. */
  abandon(): Promise<void>;
}

function lockIdentity(file: string): string | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.birthtimeNs}`;
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
  const identity = lockIdentity(layout.lock);
  const held: Acquired = {
    lost: false,
    check() {
      let why: string | undefined;
      if (compromised) why = `its heartbeat failed (${(compromised as NodeJS.ErrnoException).message})`;
      else {
        const now = lockIdentity(layout.lock);
        if (now === undefined) why = `${layout.lock} was removed`;
        else if (now !== identity) why = `${layout.lock} was replaced: another command took the lock over`;
        else {
          const age = Date.now() - statSync(layout.lock).mtimeMs;
          if (age > LOCK_TRUST_MS) why = `its heartbeat is ${(age / 1000).toFixed(1)} s old (this command was stalled), so another command may take it over`;
        }
      }
      if (why) {
        held.lost = true;
        throw new BrokerError('BRK_ERR_PKI_LOCK_LOST', `lost the lock on the store ${layout.dir}: ${why}; nothing of this change was written`);
      }
    },
    release: () => release().catch(() => {}),
    async abandon() {
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
 * is lost (BRK_ERR_PKI_LOCK_LOST from `check()`), the lock is left alone (it may be another's now)
 * and `onLost` runs under the lock taken again (to record the failure), and the error is rethrown.
 */
export async function withStoreLock<T>(layout: StoreLayout, fn: (lock: HeldLock) => Promise<T>, o: { onLost?: (err: BrokerError) => void } = {}): Promise<T> {
  const held = await acquire(layout);
  try {
    held.check();
    recoverPending(layout);
    return await fn(held);
  } catch (err) {
    if (held.lost && isBrokerError(err, 'BRK_ERR_PKI_LOCK_LOST')) {
      await held.abandon();
      if (o.onLost) await relockFor(layout, err, o.onLost);
    }
    throw err;
  } finally {
    if (!held.lost) await held.release();
  }
}

/** `broker pki audit recover`: takes the lock, and recovers (what every change does first), alone. */
export async function recoverStore(layout: StoreLayout): Promise<Recovery> {
  const held = await acquire(layout);
  try {
    held.check();
    return recoverPending(layout);
  } finally {
    if (!held.lost) await held.release();
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
    if (!again.lost) await again.release();
  }
}

export function caExists(layout: StoreLayout): boolean {
  return existsSync(layout.inventory) || existsSync(layout.rootCert) || existsSync(layout.intermediateCert);
}

export class CaStore {
  readonly layout: StoreLayout;

  constructor(dir: string) {
    this.layout = storeLayout(dir);
  }

  /** A store that must already hold a CA. */
  static open(dir: string): CaStore {
    const store = new CaStore(dir);
    if (!caExists(store.layout)) {
      throw new BrokerError('BRK_ERR_PKI_CA_NOT_FOUND', `no CA in ${dir}`);
    }
    if (!existsSync(store.layout.inventory)) {
      throw new BrokerError('BRK_ERR_PKI_INVENTORY_MISSING', `${store.layout.inventory} is missing but the CA certificates are there`);
    }
    return store;
  }

  readInventory(): Inventory {
    return parseInventory(readText(this.layout.inventory, 'inventory'), this.layout.inventory);
  }

  async loadKeys(inv: Inventory, passphrase?: string): Promise<CaKeys> {
    const l = this.layout;
    const pass = inv.ca.encrypted ? passphrase : undefined;
    if (inv.ca.encrypted && !passphrase) {
      throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', `the CA keys in ${l.dir} are encrypted and no passphrase was given`);
    }
    const issuer = async (certFile: string, keyFile: string): Promise<Issuer> => ({
      cert: new x509.X509Certificate(readText(certFile, 'CA certificate')),
      key: await loadPrivateKey(readText(keyFile, 'CA key'), inv.ca.keyType, keyFile, pass),
      keyType: inv.ca.keyType,
    });
    const previous = new Map<string, Issuer>();
    for (const p of inv.ca.previous ?? []) {
      if (!p.retired) previous.set(p.serial, await issuer(l.previousIntermediateCert(p.serial), l.previousIntermediateKey(p.serial)));
    }
    const previousRoots = new Map<string, Issuer>();
    for (const p of inv.ca.previousRoots ?? []) {
      if (!p.retired) previousRoots.set(p.serial, await issuer(l.previousRootCert(p.serial), l.previousRootKey(p.serial)));
    }
    return { root: await issuer(l.rootCert, l.rootKey), intermediate: await issuer(l.intermediateCert, l.intermediateKey), previous, previousRoots };
  }

  /**
   * Runs one change under the lock and commits it through pki/journal.ts (stage, pending record,
   * audit line, renames, head). A failure before the pending record leaves the store as it was, and
   * is itself recorded in the audit log when the log can be written; a crash after it is completed
   * by the next command.
   */
  async mutate<T>(op: string, passphrase: string | undefined, fn: (ctx: MutationContext) => Promise<MutationResult<T>>): Promise<T> {
    const l = this.layout;
    let partial: Omit<AuditFields, 'op' | 'outcome'> = {};
    return withStoreLock(
      l,
      async (held) => {
        try {
          const inventory = this.readInventory();
          let keys: Promise<CaKeys> | undefined;
          const ctx: MutationContext = {
            layout: l,
            inventory,
            tx: new WriteTransaction(),
            keys: () => (keys ??= this.loadKeys(inventory, passphrase)),
          };
          const { result, audit } = await fn(ctx);
          partial = audit;
          ctx.tx.write(l.inventory, serializeInventory(inventory), PRIVATE_MODE);
          commitChange(l, ctx.tx, { op, outcome: 'ok', ...audit }, () => held.check());
          return result;
        } catch (err) {
          if (!isBrokerError(err, 'BRK_ERR_PKI_LOCK_LOST')) recordFailure(l, op, partial, err, held);
          throw err;
        }
      },
      { onLost: (err) => recordFailure(l, op, partial, err) },
    );
  }
}

/**
 * Best effort: a failed operation still leaves a trace, unless the log itself cannot be written,
 * the lock is no longer ours, or a committed change is still waiting to be completed.
 */
export function recordFailure(l: StoreLayout, op: string, fields: Omit<AuditFields, 'op' | 'outcome'>, err: unknown, held?: HeldLock): void {
  try {
    if (existsSync(l.pending)) return;
    const code: ErrorCode = isBrokerError(err) ? err.code : 'BRK_ERR_INTERNAL';
    commitChange(l, new WriteTransaction(), { op, outcome: 'error', ...fields, code }, held ? () => held.check() : undefined);
  } catch {
    // the original error is what matters to the caller
  }
}

export function prepareStoreDir(dir: string): void {
  ensureDir(dir);
}
