/**
 * The CA store: opening it, the lock that serialises every change, and the one path by which a
 * change is made (`mutate`): load under the lock → compute → stage every file → audit → publish.
 */
import { existsSync } from 'node:fs';
import { lock } from 'proper-lockfile';
import { BrokerError, isBrokerError, type ErrorCode } from '../errors.ts';
import { ensureDir, PRIVATE_MODE, readText, WriteTransaction } from './files.ts';
import { parseInventory, serializeInventory, type Inventory } from './inventory.ts';
import { storeLayout, type StoreLayout } from './layout.ts';
import { appendLine, nextLine, readHead, type AuditFields } from './audit.ts';
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

export async function withStoreLock<T>(layout: StoreLayout, fn: () => Promise<T>): Promise<T> {
  let release: () => Promise<void>;
  try {
    release = await lock(layout.dir, { lockfilePath: layout.lock, realpath: false, stale: 15_000, update: 3_000, retries: LOCK_RETRY });
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new BrokerError('BRK_ERR_PKI_LOCKED', `the store ${layout.dir} stayed locked by another broker pki command`, { cause });
    }
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot lock the store ${layout.dir}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  try {
    return await fn();
  } finally {
    await release().catch(() => {});
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
   * Runs one change under the lock. Every file the change writes is staged first; the audit line is
   * appended; then the files are renamed into place. A failure anywhere before the renames leaves the
   * store as it was, and is itself recorded in the audit log when the log can be written.
   */
  async mutate<T>(op: string, passphrase: string | undefined, fn: (ctx: MutationContext) => Promise<MutationResult<T>>): Promise<T> {
    const l = this.layout;
    return withStoreLock(l, async () => {
      let partial: Omit<AuditFields, 'op' | 'outcome'> = {};
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
        const { line, head } = nextLine(readHead(l.auditHead), { op, outcome: 'ok', ...audit });
        ctx.tx.write(l.auditHead, `${JSON.stringify(head)}\n`, PRIVATE_MODE);
        ctx.tx.commit(() => appendLine(l.auditLog, line));
        return result;
      } catch (err) {
        recordFailure(l, op, partial, err);
        throw err;
      }
    });
  }
}

/** Best effort: a failed operation still leaves a trace, unless the log itself cannot be written. */
function recordFailure(l: StoreLayout, op: string, fields: Omit<AuditFields, 'op' | 'outcome'>, err: unknown): void {
  try {
    const code: ErrorCode = isBrokerError(err) ? err.code : 'BRK_ERR_INTERNAL';
    const { line, head } = nextLine(readHead(l.auditHead), { op, outcome: 'error', ...fields, code });
    const tx = new WriteTransaction().write(l.auditHead, `${JSON.stringify(head)}\n`, PRIVATE_MODE);
    tx.commit(() => appendLine(l.auditLog, line));
  } catch {
    // the original error is what matters to the caller
  }
}

export function prepareStoreDir(dir: string): void {
  ensureDir(dir);
}
