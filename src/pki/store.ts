/**
 * The CA store: opening it, and the one path by which a change is made (`mutate`): load under
 * the lock (pki/store-lock.ts) → compute → commit (pki/journal.ts: stage, pending record, audit
 * line, publish).
 */
import { existsSync } from 'node:fs';
import { BrokerError, isBrokerError, type ErrorCode } from '../errors.ts';
import { ensureDir, PRIVATE_MODE, readText, WriteTransaction } from './files.ts';
import { parseInventory, serializeInventory, type Inventory } from './inventory.ts';
import { storeLayout, type StoreLayout } from './layout.ts';
import type { AuditFields } from './audit.ts';
import { commitChange } from './journal.ts';
import { withStoreLock, type HeldLock } from './store-lock.ts';
import { loadPrivateKey } from './keys.ts';
import { x509 } from './x509.ts';
import type { Issuer } from './certs.ts';

export { recoverStore, withStoreLock, type HeldLock } from './store-lock.ts';

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
