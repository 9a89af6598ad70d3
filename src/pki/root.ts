/**
 * Keeping the root offline (`broker pki root`). Once the root key has its own passphrase
 * (`pki init --root-passphrase-file`, or `migrate` for an older store), day-to-day operations
 * (issue, sign, revoke, renew, crl, enrolment) never load it: the root CRLs are pre-signed for
 * `rootKey.crlValidityMs` by root operations (rotations, `root crl`, `root export`, `migrate`) and
 * republished unchanged meanwhile. `export` copies the root keys to a folder for another machine,
 * `remove` deletes them from the store (only after checking that folder), `import` brings them back.
 * Every change goes through CaStore.mutate: under the lock, journalled, one audit line.
 */
import { existsSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { BrokerError } from '../errors.ts';
import { fingerprint } from './certs.ts';
import { stageCrls } from './crl.ts';
import { fsyncDir, PRIVATE_MODE, PUBLIC_MODE, readText } from './files.ts';
import { keyMatches, readPrivateKeyObject, reencryptedKeyPem } from './keys.ts';
import type { Inventory, RootKeyFacts } from './inventory.ts';
import type { StoreLayout } from './layout.ts';
import type { CaStore } from './store.ts';
import { x509 } from './x509.ts';
import { DEFAULT_ROOT_CRL_VALIDITY_MS } from './init.ts';

export const EXPORT_MANIFEST = 'root-export.json';
const EXPORT_FORMAT = 'broker-root-export/1';

interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  exportedAt: string;
  /** Serial of the root current at export time. */
  root: string;
  /** Every root key exported (the current root's, and those of roots it replaced), with its certificate. */
  keys: Array<{ serial: string; fingerprint: string; key: string; cert: string }>;
}

/** The root keys this store holds: the current root's and every previous root's still on disk. */
function rootKeyFiles(inv: Inventory, l: StoreLayout): Array<{ serial: string; key: string; cert: string }> {
  const all = [{ serial: inv.ca.root.serial, key: l.rootKey, cert: l.rootCert }, ...(inv.ca.previousRoots ?? []).map((p) => ({ serial: p.serial, key: l.previousRootKey(p.serial), cert: l.previousRootCert(p.serial) }))];
  return all.filter((f) => existsSync(f.key));
}

function separate(inv: Inventory): RootKeyFacts {
  if (!inv.ca.rootKey) throw new BrokerError('BRK_ERR_PKI_ROOT_SHARED', 'the root key of this store shares the issuing CA\'s passphrase, so it cannot be kept apart yet');
  return inv.ca.rootKey;
}

function nextUpdateOf(file: string): string | undefined {
  try {
    return new x509.X509Crl(readText(file, 'root CRL')).nextUpdate?.toISOString();
  } catch {
    return undefined;
  }
}

/**
 * Reads an export folder and checks every key in it: it decrypts with the root passphrase and is
 * the key of the store's certificate with that serial. Returns the keys' bytes, by serial.
 */
function readExport(dir: string, inv: Inventory, l: StoreLayout, rootPassphrase: string | undefined): Map<string, { bytes: string; target: string }> {
  const invalid = (why: string): never => {
    throw new BrokerError('BRK_ERR_PKI_ROOT_EXPORT_INVALID', `${dir}: ${why}`);
  };
  const manifestFile = join(dir, EXPORT_MANIFEST);
  if (!existsSync(manifestFile)) invalid(`no ${EXPORT_MANIFEST} (not a folder "broker pki root export" wrote)`);
  let manifest: ExportManifest;
  try {
    manifest = JSON.parse(readText(manifestFile, 'root export manifest')) as ExportManifest;
  } catch (cause) {
    if (cause instanceof BrokerError) throw cause;
    return invalid(`${EXPORT_MANIFEST} is not valid JSON`);
  }
  if (manifest?.format !== EXPORT_FORMAT || !Array.isArray(manifest.keys)) invalid(`${EXPORT_MANIFEST} is not a root export manifest`);
  const targets = new Map<string, { key: string; cert: string }>([[inv.ca.root.serial, { key: l.rootKey, cert: l.rootCert }]]);
  for (const p of inv.ca.previousRoots ?? []) targets.set(p.serial, { key: l.previousRootKey(p.serial), cert: l.previousRootCert(p.serial) });
  const out = new Map<string, { bytes: string; target: string }>();
  for (const k of manifest.keys) {
    const target = targets.get(k?.serial);
    if (!target) invalid(`it holds the key of root ${k?.serial}, which is not a root of this CA`);
    const keyFile = join(dir, basename(String(k.key)));
    if (!existsSync(keyFile)) invalid(`${keyFile} is missing`);
    const bytes = readText(keyFile, 'exported root key');
    const key = readPrivateKeyObject(bytes, keyFile, rootPassphrase, 'root');
    const cert = new x509.X509Certificate(readText((target as { cert: string }).cert, 'CA certificate'));
    if (!keyMatches(key, cert.publicKey.rawData)) invalid(`${keyFile} is not the key of root ${k.serial}`);
    out.set(k.serial, { bytes, target: (target as { key: string }).key });
  }
  if (!out.has(inv.ca.root.serial)) invalid(`it does not hold the key of the current root ${inv.ca.root.serial}`);
  return out;
}

export interface RootCrlResult {
  /** When the pre-signed root CRL stops being valid: run a root operation (e.g. `pki root crl`) before then. */
  rootCrlNextUpdate: string | undefined;
}

/** `pki root migrate`: the root keys (current and previous) re-encrypted under their own passphrase; root CRLs pre-signed. */
export async function migrateRoot(store: CaStore, o: { passphrase?: string; rootPassphrase: string; crlValidityMs?: number }): Promise<RootCrlResult & { keys: number }> {
  return store.mutate('root-migrate', { ca: o.passphrase }, async (ctx) => {
    const inv = ctx.inventory;
    if (inv.ca.rootKey) throw new BrokerError('BRK_ERR_PKI_ROOT_MIGRATED', `the root key in ${ctx.layout.dir} already has its own passphrase`);
    // loads the root with the shared passphrase: proves it before anything is rewritten
    const keys = await ctx.rootKeys();
    const files = rootKeyFiles(inv, ctx.layout);
    for (const f of files) {
      const key = readPrivateKeyObject(readText(f.key, 'root key'), f.key, inv.ca.encrypted ? o.passphrase : undefined);
      ctx.tx.write(f.key, reencryptedKeyPem(key, o.rootPassphrase), PRIVATE_MODE);
    }
    inv.ca.rootKey = { crlValidityMs: o.crlValidityMs ?? DEFAULT_ROOT_CRL_VALIDITY_MS };
    const crls = await stageCrls(inv, keys, ctx.layout, ctx.tx);
    return {
      result: { keys: files.length, rootCrlNextUpdate: crls.root?.nextUpdate.toISOString() },
      audit: { serial: inv.ca.root.serial, detail: `keys=${files.length} rootCrlValidityMs=${inv.ca.rootKey.crlValidityMs}` },
    };
  });
}

/** `pki root crl`: re-signs the root CRLs (pre-signed for the root CRL validity, which --root-crl-validity changes). */
export async function signRootCrl(store: CaStore, o: { passphrase?: string; rootPassphrase?: string; crlValidityMs?: number }): Promise<RootCrlResult> {
  return store.mutate('root-crl', { ca: o.passphrase, root: o.rootPassphrase }, async (ctx) => {
    const facts = separate(ctx.inventory);
    const keys = await ctx.rootKeys();
    if (o.crlValidityMs !== undefined) facts.crlValidityMs = o.crlValidityMs;
    const crls = await stageCrls(ctx.inventory, keys, ctx.layout, ctx.tx);
    const next = crls.root?.nextUpdate.toISOString();
    return { result: { rootCrlNextUpdate: next }, audit: { serial: ctx.inventory.ca.root.serial, detail: `crlNumber=${ctx.inventory.ca.crlNumber.root} nextUpdate=${next}` } };
  });
}

/**
 * `pki root export --out DIR`: the root keys (as stored: encrypted with the root passphrase) and
 * certificates, with a manifest, into DIR; the root CRLs are re-signed first so the store keeps a
 * pre-signed one for the whole period the root may be away.
 */
export async function exportRoot(store: CaStore, o: { out: string; passphrase?: string; rootPassphrase?: string; crlValidityMs?: number }): Promise<RootCrlResult & { out: string; files: string[] }> {
  return store.mutate('root-export', { ca: o.passphrase, root: o.rootPassphrase }, async (ctx) => {
    const inv = ctx.inventory;
    const facts = separate(inv);
    if (existsSync(join(o.out, EXPORT_MANIFEST))) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `${join(o.out, EXPORT_MANIFEST)} already exists`);
    const keys = await ctx.rootKeys();
    if (o.crlValidityMs !== undefined) facts.crlValidityMs = o.crlValidityMs;
    const crls = await stageCrls(inv, keys, ctx.layout, ctx.tx);
    const manifest: ExportManifest = { format: EXPORT_FORMAT, exportedAt: new Date().toISOString(), root: inv.ca.root.serial, keys: [] };
    const files: string[] = [];
    for (const f of rootKeyFiles(inv, ctx.layout)) {
      const certPem = readText(f.cert, 'CA certificate');
      const names = { key: `root-${f.serial}.key`, cert: `root-${f.serial}.crt` };
      ctx.tx.write(join(o.out, names.key), readText(f.key, 'root key'), PRIVATE_MODE).write(join(o.out, names.cert), certPem, PUBLIC_MODE);
      manifest.keys.push({ serial: f.serial, fingerprint: fingerprint(new x509.X509Certificate(certPem).rawData), ...names });
      files.push(join(o.out, names.key), join(o.out, names.cert));
    }
    ctx.tx.write(join(o.out, EXPORT_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, PRIVATE_MODE);
    files.push(join(o.out, EXPORT_MANIFEST));
    const next = crls.root?.nextUpdate.toISOString();
    return {
      result: { out: o.out, files, rootCrlNextUpdate: next },
      audit: { serial: inv.ca.root.serial, detail: `out=${resolve(o.out)} keys=${manifest.keys.length} rootCrlNextUpdate=${next}` },
    };
  });
}

/**
 * `pki root remove --from DIR --yes`: deletes the root keys from the store once DIR is checked to
 * hold every one of them, readable with the root passphrase. The root certificates and the
 * pre-signed root CRLs stay (the broker needs them). The inventory records the removal in the
 * commit; the key files are deleted right after it, under the lock: a crash in between leaves the
 * keys in place (nothing is lost) and running `remove` again finishes the job.
 */
export async function removeRoot(store: CaStore, o: { from: string; rootPassphrase?: string; yes: boolean }): Promise<RootCrlResult & { removed: string[] }> {
  if (!o.yes) throw new BrokerError('BRK_ERR_USAGE', `"broker pki root remove" deletes the root keys from this host: check the export in ${o.from}, then pass --yes`);
  return store.mutate('root-remove', {}, async (ctx) => {
    const inv = ctx.inventory;
    const facts = separate(inv);
    const l = ctx.layout;
    const present = rootKeyFiles(inv, l);
    if (!present.some((f) => f.serial === inv.ca.root.serial)) throw new BrokerError('BRK_ERR_PKI_ROOT_OFFLINE', `the root key ${l.rootKey} is already gone from this host`);
    const exported = readExport(o.from, inv, l, o.rootPassphrase);
    const missing = present.filter((f) => !exported.has(f.serial));
    if (missing.length) throw new BrokerError('BRK_ERR_PKI_ROOT_EXPORT_INVALID', `${o.from} lacks the key of root ${missing.map((m) => m.serial).join(', ')}; export again with "broker pki root export --out NEWDIR"`);
    facts.offline = { since: new Date().toISOString(), exportedTo: resolve(o.from) };
    const removed = present.map((f) => f.key);
    return {
      result: { removed, rootCrlNextUpdate: nextUpdateOf(l.rootCrl) },
      audit: { serial: inv.ca.root.serial, detail: `exportedTo=${facts.offline.exportedTo} keys=${removed.length}` },
      afterCommit: () => {
        for (const f of removed) rmSync(f, { force: true });
        fsyncDir(dirname(l.rootKey));
      },
    };
  });
}

/** `pki root import --from DIR`: puts the exported root keys back (each checked against its certificate). */
export async function importRoot(store: CaStore, o: { from: string; rootPassphrase?: string }): Promise<{ imported: string[] }> {
  return store.mutate('root-import', {}, async (ctx) => {
    const inv = ctx.inventory;
    const facts = separate(inv);
    const exported = readExport(o.from, inv, ctx.layout, o.rootPassphrase);
    for (const k of exported.values()) ctx.tx.write(k.target, k.bytes, PRIVATE_MODE);
    delete facts.offline;
    return { result: { imported: [...exported.values()].map((k) => k.target) }, audit: { serial: inv.ca.root.serial, detail: `from=${resolve(o.from)} keys=${exported.size}` } };
  });
}

export interface RootStatus {
  /** The root key has its own passphrase (day-to-day operations do not use it). */
  ownPassphrase: boolean;
  /** The current root key is in the store. */
  onHost: boolean;
  offline?: { since: string; exportedTo: string };
  rootCrlValidityMs?: number;
  rootCrlNextUpdate: string | undefined;
}

/** `pki root status`: read-only, no lock. */
export function rootStatus(store: CaStore): RootStatus {
  const inv = store.readInventory();
  const l = store.layout;
  return {
    ownPassphrase: inv.ca.rootKey !== undefined,
    onHost: existsSync(l.rootKey),
    ...(inv.ca.rootKey?.offline ? { offline: inv.ca.rootKey.offline } : {}),
    ...(inv.ca.rootKey ? { rootCrlValidityMs: inv.ca.rootKey.crlValidityMs } : {}),
    rootCrlNextUpdate: nextUpdateOf(l.rootCrl),
  };
}
