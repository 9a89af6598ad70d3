/**
 * Leaf issuance: `issue` (key made here and handed out), `server` (kept in the store for `serve`),
 * `sign` (a third party's CSR: only its public key is used) and `renew` (same identity, new key).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerError } from '../errors.ts';
import { createLeaf, fingerprint, leafWindow, randomSerial, type Issuer } from './certs.ts';
import { PRIVATE_MODE, PUBLIC_MODE, readText, type WriteTransaction } from './files.ts';
import { generateKeyPair, keyTypeOf, privateKeyDer, privateKeyPem } from './keys.ts';
import { checkContact, statusOf, type CertRecord, type Inventory } from './inventory.ts';
import { checkName, checkRoles, checkSans, spiffeId } from './names.ts';
import type { CaCert, CaStore, MutationContext } from './store.ts';
import { toPkcs12 } from './pkcs12.ts';
import { x509 } from './x509.ts';

export const DEFAULT_LEAF_TTL_MS = 90 * 86_400_000;

export interface Handout {
  /** Folder the bundle is written to. */
  outDir: string;
  /** PKCS#12 password; a .p12 is written only when set. */
  p12Password?: string;
  /** Replace existing files of the same names. */
  force?: boolean;
  /** Also write the PKCS#12 password to NAME.p12.pass (0600), for a password the broker generated. */
  savePassword?: boolean;
}

export interface IssuedFiles {
  cert: string;
  key?: string;
  ca: string;
  p12?: string;
  p12Password?: string;
}

export interface IssueResult {
  record: CertRecord;
  files: IssuedFiles;
}

function currentFor(inv: Inventory, name: string, type: CertRecord['type']): CertRecord[] {
  return inv.certs.filter((c) => c.name === name && c.type === type && statusOf(c) === 'valid');
}

export function freshSerial(inv: Inventory): string {
  const taken = new Set(inv.certs.map((c) => c.serial));
  for (;;) {
    const s = randomSerial();
    if (!taken.has(s)) return s;
  }
}

interface Mint {
  kind: 'client' | 'server';
  name: string;
  roles: string[];
  dns?: string[];
  ip?: string[];
  ttlMs: number;
  publicKey: CryptoKey;
  source: CertRecord['source'];
  contact?: string | undefined;
}

async function mint(ctx: MutationContext, m: Mint): Promise<{ cert: x509.X509Certificate; record: CertRecord; issuer: Issuer; root: CaCert }> {
  const { intermediate, root } = await ctx.keys();
  const inv = ctx.inventory;
  const serial = freshSerial(inv);
  const window = leafWindow(m.ttlMs, intermediate.cert);
  const cert = await createLeaf(
    {
      kind: m.kind,
      name: m.name,
      roles: m.roles,
      ...(m.dns ? { dns: m.dns } : {}),
      ...(m.ip ? { ip: m.ip } : {}),
      ...(m.kind === 'client' ? { uri: spiffeId(inv.ca.trustDomain, 'client', m.name) } : {}),
      publicKey: m.publicKey,
      serial,
      ...window,
    },
    intermediate,
  );
  const record = certRecord(cert, inv, { ...m, type: m.kind, serial });
  inv.certs.push(record);
  return { cert, record, issuer: intermediate, root };
}

/** The inventory entry of a certificate the issuing CA just made (never a key: the store keeps none for clients). */
export function certRecord(cert: x509.X509Certificate, inv: Inventory, m: { name: string; type: CertRecord['type']; roles: string[]; serial: string; source: CertRecord['source']; dns?: string[] | undefined; ip?: string[] | undefined; contact?: string | undefined }): CertRecord {
  return {
    name: m.name,
    type: m.type,
    roles: m.roles,
    serial: m.serial,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprint: fingerprint(cert.rawData),
    source: m.source,
    issuer: inv.ca.intermediate.serial,
    ...(m.dns ? { dns: m.dns } : {}),
    ...(m.ip ? { ip: m.ip } : {}),
    ...(m.contact ? { contact: m.contact } : {}),
  };
}

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem')}\n`;
}

/** Stages NAME.crt (leaf + intermediate), NAME.key, ca.crt and NAME.p12 into the hand-out folder. */
/** What clients trust: the store's ca.crt (the root, and the previous root too during a rollover). */
function trustBundle(ctx: MutationContext, root: CaCert): string {
  return existsSync(ctx.layout.caCert) ? readText(ctx.layout.caCert, 'CA bundle') : pem(root.cert);
}

function stageHandout(tx: WriteTransaction, h: Handout, name: string, leaf: x509.X509Certificate, issuer: Issuer, root: CaCert, trust: string, key?: CryptoKey): IssuedFiles {
  const files: IssuedFiles = { cert: join(h.outDir, `${name}.crt`), ca: join(h.outDir, 'ca.crt') };
  if (key) files.key = join(h.outDir, `${name}.key`);
  if (key && h.p12Password !== undefined) files.p12 = join(h.outDir, `${name}.p12`);
  if (!h.force) {
    const clash = [files.cert, files.key, files.p12].filter((f): f is string => f !== undefined && existsSync(f));
    if (clash.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${clash.join(', ')}`);
  }
  tx.write(files.cert, pem(leaf) + pem(issuer.cert), PUBLIC_MODE).write(files.ca, trust, PUBLIC_MODE);
  if (key && files.key) tx.write(files.key, privateKeyPem(key), PRIVATE_MODE);
  if (key && files.p12) {
    const p12 = toPkcs12({
      keyPkcs8Der: privateKeyDer(key),
      chainDer: [leaf, issuer.cert, root.cert].map((c) => Buffer.from(c.rawData)),
      password: h.p12Password as string,
      friendlyName: name,
    });
    tx.write(files.p12, p12, PRIVATE_MODE);
    if (h.savePassword) {
      files.p12Password = `${files.p12}.pass`;
      tx.write(files.p12Password, `${h.p12Password}\n`, PRIVATE_MODE);
    }
  }
  return files;
}

export async function issueClient(store: CaStore, o: { name: string; roles: string[]; ttlMs: number; passphrase?: string; contact?: string } & Handout): Promise<IssueResult> {
  const name = checkName(o.name);
  const roles = checkRoles(o.roles);
  const contact = o.contact === undefined ? undefined : checkContact(o.contact);
  return store.mutate('issue', o.passphrase, async (ctx) => {
    if (currentFor(ctx.inventory, name, 'client').length) {
      throw new BrokerError('BRK_ERR_PKI_IDENTITY_EXISTS', `${name} already has a valid client certificate`);
    }
    const keys = await generateKeyPair(ctx.inventory.ca.keyType);
    const { cert, record, issuer, root } = await mint(ctx, { kind: 'client', name, roles, ttlMs: o.ttlMs, publicKey: keys.publicKey, source: 'issue', contact });
    const files = stageHandout(ctx.tx, o, name, cert, issuer, root, trustBundle(ctx, root), keys.privateKey);
    return { result: { record, files }, audit: { name, serial: record.serial, roles } };
  });
}

export async function issueServer(store: CaStore, o: { name: string; dns: string[]; ip: string[]; ttlMs: number; passphrase?: string; outDir?: string; force?: boolean }): Promise<IssueResult> {
  const name = checkName(o.name);
  const sans = checkSans(o.dns, o.ip);
  return store.mutate('server', o.passphrase, async (ctx) => {
    if (currentFor(ctx.inventory, name, 'server').length) {
      throw new BrokerError('BRK_ERR_PKI_IDENTITY_EXISTS', `${name} already has a valid server certificate`);
    }
    return mintServer(ctx, { name, ...sans, ttlMs: o.ttlMs, source: 'server', ...(o.outDir ? { outDir: o.outDir } : {}), force: o.force ?? false });
  });
}

async function mintServer(ctx: MutationContext, o: { name: string; dns: string[]; ip: string[]; ttlMs: number; source: CertRecord['source']; outDir?: string; force: boolean }) {
  const keys = await generateKeyPair(ctx.inventory.ca.keyType);
  const { cert, record, issuer, root } = await mint(ctx, { kind: 'server', name: o.name, roles: [], dns: o.dns, ip: o.ip, ttlMs: o.ttlMs, publicKey: keys.publicKey, source: o.source });
  // During a root rollover the chain carries the issuing CA as cross-signed by the old root: every
  // client still trusts the old root (ca.crt holds both), and OpenSSL-based clients do not search
  // alternative paths, so one chain that ends at the old root is what all of them can verify.
  // When the old root retires, `broker pki crl` rewrites the chain to end at the new root.
  const inv = ctx.inventory;
  const crossLive = inv.ca.cross && (inv.ca.previousRoots ?? []).some((p) => !p.retired) && existsSync(ctx.layout.crossCert);
  const chain = pem(cert) + (crossLive ? readText(ctx.layout.crossCert, 'cross certificate') : pem(issuer.cert));
  ctx.tx.write(ctx.layout.serverCert(o.name), chain, PUBLIC_MODE).write(ctx.layout.serverKey(o.name), privateKeyPem(keys.privateKey), PRIVATE_MODE);
  const files: IssuedFiles = o.outDir
    ? stageHandout(ctx.tx, { outDir: o.outDir, force: o.force }, o.name, cert, issuer, root, trustBundle(ctx, root), keys.privateKey)
    : { cert: ctx.layout.serverCert(o.name), key: ctx.layout.serverKey(o.name), ca: ctx.layout.caCert };
  return { result: { record, files }, audit: { name: o.name, serial: record.serial, detail: `dns=${o.dns.join(',')} ip=${o.ip.join(',')}` } };
}

/** Parses and checks a CSR; only its public key is used. */
export async function readCsr(data: Buffer, file: string): Promise<CryptoKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    const text = data.toString('latin1');
    csr = text.includes('-----BEGIN') ? new x509.Pkcs10CertificateRequest(text) : new x509.Pkcs10CertificateRequest(new Uint8Array(data));
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CSR_INVALID', `${file} is not a PKCS#10 certificate request`, { cause });
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CSR_INVALID', `the signature of ${file} cannot be checked (unsupported key?)`, { cause });
  }
  if (!valid) throw new BrokerError('BRK_ERR_PKI_CSR_INVALID', `the signature of ${file} does not verify`);
  const key = await csr.publicKey.export();
  if (!keyTypeOf(key.algorithm)) {
    throw new BrokerError('BRK_ERR_PKI_CSR_INVALID', `${file} has a ${key.algorithm.name} key the broker does not accept (EC P-256, EC P-384 or RSA of at least 2048 bits)`);
  }
  return key;
}

export async function signCsr(store: CaStore, o: { csr: Buffer; csrFile: string; name: string; roles: string[]; ttlMs: number; passphrase?: string } & Handout): Promise<IssueResult> {
  const name = checkName(o.name);
  const roles = checkRoles(o.roles);
  const publicKey = await readCsr(o.csr, o.csrFile);
  return store.mutate('sign', o.passphrase, async (ctx) => {
    if (currentFor(ctx.inventory, name, 'client').length) {
      throw new BrokerError('BRK_ERR_PKI_IDENTITY_EXISTS', `${name} already has a valid client certificate`);
    }
    const { cert, record, issuer, root } = await mint(ctx, { kind: 'client', name, roles, ttlMs: o.ttlMs, publicKey, source: 'sign' });
    const files = stageHandout(ctx.tx, o, name, cert, issuer, root, trustBundle(ctx, root));
    return { result: { record, files }, audit: { name, serial: record.serial, roles } };
  });
}

/**
 * A new certificate for NAME with the same type, roles (and SANs); a new key unless a CSR is given.
 * The old certificate stays valid until it expires or is revoked, so both can be rolled out.
 * `sans` gives a server certificate new names instead of its current ones.
 */
export async function renew(store: CaStore, o: { name: string; ttlMs: number; csr?: Buffer; csrFile?: string; passphrase?: string; sans?: { dns: string[]; ip: string[] } } & Partial<Handout>): Promise<IssueResult> {
  const name = checkName(o.name);
  const sans = o.sans ? checkSans(o.sans.dns, o.sans.ip) : undefined;
  const publicKeyFromCsr = o.csr ? await readCsr(o.csr, o.csrFile ?? 'CSR') : undefined;
  return store.mutate('renew', o.passphrase, async (ctx) => {
    const current = ctx.inventory.certs.filter((c) => c.name === name && !c.revokedAt).sort((a, b) => Date.parse(b.notAfter) - Date.parse(a.notAfter));
    const prev = current[0];
    if (!prev) throw new BrokerError('BRK_ERR_PKI_IDENTITY_NOT_FOUND', `no unrevoked certificate named ${name} to renew`);
    if (sans && prev.type !== 'server') throw new BrokerError('BRK_ERR_PKI_SAN_INVALID', `${name} is a ${prev.type} certificate: only server certificates have DNS and IP names`);
    if (prev.type === 'server') {
      return mintServer(ctx, { name, dns: sans?.dns ?? prev.dns ?? [], ip: sans?.ip ?? prev.ip ?? [], ttlMs: o.ttlMs, source: 'renew', ...(o.outDir ? { outDir: o.outDir } : {}), force: o.force ?? false });
    }
    const keys = publicKeyFromCsr ? undefined : await generateKeyPair(ctx.inventory.ca.keyType);
    const publicKey = publicKeyFromCsr ?? (keys as CryptoKeyPair).publicKey;
    const { cert, record, issuer, root } = await mint(ctx, { kind: 'client', name, roles: prev.roles, ttlMs: o.ttlMs, publicKey, source: 'renew', contact: prev.contact });
    const handout: Handout = { outDir: o.outDir ?? '.', force: o.force ?? false, savePassword: o.savePassword ?? false, ...(o.p12Password === undefined ? {} : { p12Password: o.p12Password }) };
    const files = stageHandout(ctx.tx, handout, name, cert, issuer, root, trustBundle(ctx, root), keys?.privateKey);
    return { result: { record, files }, audit: { name, serial: record.serial, roles: prev.roles, detail: `renews=${prev.serial}` } };
  });
}
