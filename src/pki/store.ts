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
import { loadPrivateKey, type KeyType } from './keys.ts';
import { x509 } from './x509.ts';
import type { Issuer } from './certs.ts';

export { recoverStore, withStoreLock, type HeldLock } from './store-lock.ts';

/** A CA certificate whose key this operation may not have loaded (the root, on day-to-day operations of a store whose root has its own passphrase). */
export interface CaCert {
  cert: x509.X509Certificate;
  keyType: KeyType;
  key?: CryptoKey;
}

export interface CaKeys {
  /** Its key is loaded by `rootKeys()`, and by `keys()` in stores where the root shares the issuing CA's passphrase. */
  root: CaCert;
  intermediate: Issuer;
  /** Issuing CAs still in their overlap, by serial (their CRLs must still be signed). */
  previous: Map<string, Issuer>;
  /** Roots still in their overlap, by serial (keys loaded as for `root`). */
  previousRoots: Map<string, CaCert>;
}

/** The keys with the root's loaded: what root operations sign with. */
export interface RootKeys extends CaKeys {
  root: Issuer;
  previousRoots: Map<string, Issuer>;
}

/** The issuing CA's passphrase, and the root's own (only asked for by root operations). */
export interface Passphrases {
  ca?: string | undefined;
  root?: string | undefined;
}

export interface MutationContext {
  layout: StoreLayout;
  inventory: Inventory;
  tx: WriteTransaction;
  /** Decrypts the CA keys (once) with the passphrase the command was given; the root's only where it shares that passphrase. */
  keys(): Promise<CaKeys>;
  /** The same with the root keys loaded (root operations): with the root passphrase; fails when the root is offline. */
  rootKeys(): Promise<RootKeys>;
}

export interface MutationResult<T> {
  result: T;
  audit: Omit<AuditFields, 'op' | 'outcome'>;
  /** Runs after the commit, still under the lock (removing files: the journal only writes). */
  afterCommit?: () => void;
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

  async loadKeys(inv: Inventory, passphrase?: string | Passphrases, withRoot = false): Promise<CaKeys> {
    const l = this.layout;
    const given = typeof passphrase === 'object' ? passphrase : { ca: passphrase };
    const pass = inv.ca.encrypted ? given.ca : undefined;
    if (inv.ca.encrypted && !pass) {
      throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', `the CA keys in ${l.dir} are encrypted and no passphrase was given`);
    }
    // a root with its own passphrase is only decrypted for root operations; an older store's root shares the issuing CA's
    const separate = inv.ca.rootKey !== undefined;
    const loadRoot = !separate || withRoot;
    const cert = (certFile: string) => new x509.X509Certificate(readText(certFile, 'CA certificate'));
    const issuer = async (certFile: string, keyFile: string): Promise<Issuer> => ({
      cert: cert(certFile),
      key: await loadPrivateKey(readText(keyFile, 'CA key'), inv.ca.keyType, keyFile, pass),
      keyType: inv.ca.keyType,
    });
    const rootIssuer = async (certFile: string, keyFile: string): Promise<CaCert> => {
      if (!loadRoot) return { cert: cert(certFile), keyType: inv.ca.keyType };
      if (!separate) return issuer(certFile, keyFile);
      if (!existsSync(keyFile)) {
        const off = inv.ca.rootKey?.offline;
        throw new BrokerError('BRK_ERR_PKI_ROOT_OFFLINE', `the root key ${keyFile} is not on this host${off ? ` (exported to ${off.exportedTo}, removed ${off.since})` : ''}`);
      }
      return { cert: cert(certFile), key: await loadPrivateKey(readText(keyFile, 'root key'), inv.ca.keyType, keyFile, given.root, 'root'), keyType: inv.ca.keyType };
    };
    const previous = new Map<string, Issuer>();
    for (const p of inv.ca.previous ?? []) {
      if (!p.retired) previous.set(p.serial, await issuer(l.previousIntermediateCert(p.serial), l.previousIntermediateKey(p.serial)));
    }
    const root = await rootIssuer(l.rootCert, l.rootKey);
    const previousRoots = new Map<string, CaCert>();
    for (const p of inv.ca.previousRoots ?? []) {
      if (!p.retired) previousRoots.set(p.serial, await rootIssuer(l.previousRootCert(p.serial), l.previousRootKey(p.serial)));
    }
    return { root, intermediate: await issuer(l.intermediateCert, l.intermediateKey), previous, previousRoots };
  }

  /**
   * Runs one change under the lock and commits it through pki/journal.ts (stage, pending record,
   * audit line, renames, head). A failure before the pending record leaves the store as it was, and
   * is itself recorded in the audit log when the log can be written; a crash after it is completed
   * by the next command.
   */
  async mutate<T>(op: string, passphrase: string | undefined | Passphrases, fn: (ctx: MutationContext) => Promise<MutationResult<T>>): Promise<T> {
    const l = this.layout;
    let partial: Omit<AuditFields, 'op' | 'outcome'> = {};
    return withStoreLock(
      l,
      async (held) => {
        try {
          const inventory = this.readInventory();
          let keys: Promise<CaKeys> | undefined;
          let rootKeys: Promise<RootKeys> | undefined;
          const ctx: MutationContext = {
            layout: l,
            inventory,
            tx: new WriteTransaction(),
            keys: () => (keys ??= this.loadKeys(inventory, passphrase)),
            rootKeys: () => (rootKeys ??= this.loadKeys(inventory, passphrase, true) as Promise<RootKeys>),
          };
          const { result, audit, afterCommit } = await fn(ctx);
          partial = audit;
          ctx.tx.write(l.inventory, serializeInventory(inventory), PRIVATE_MODE);
          commitChange(l, ctx.tx, { op, outcome: 'ok', ...audit }, () => held.check());
          afterCommit?.();
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
