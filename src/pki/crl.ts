/**
 * CRL publication: both CA levels are re-signed together (the root's CRL for intermediates, the
 * intermediate's for leaves) and written as separate files plus one bundle, because OpenSSL-based
 * verifiers, Node's included, want a current CRL for every level once CRL checking is on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { x509 } from './x509.ts';
import { signCrl, type RevokedEntry } from './certs.ts';
import type { BuiltCrl } from './crl-builder.ts';
import { PUBLIC_MODE, readText } from './files.ts';
import { REVOCATION_REASONS, type Inventory, type RevocationReason } from './inventory.ts';
import type { StoreLayout } from './layout.ts';
import type { CaKeys } from './store.ts';
import type { WriteTransaction } from './files.ts';
import { storeCrlValidity } from './crl-lifetime.ts';

export { DEFAULT_CRL_VALIDITY_MS } from './crl-lifetime.ts';

const REASON_CODE: Record<RevocationReason, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
};

export function isRevocationReason(v: string): v is RevocationReason {
  return (REVOCATION_REASONS as readonly string[]).includes(v);
}

/** PEM with the "X509 CRL" label OpenSSL expects (the library's own toString says "CRL"). */
export function crlPem(crl: x509.X509Crl | BuiltCrl): string {
  const der = 'der' in crl ? crl.der : Buffer.from(crl.rawData);
  return `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END X509 CRL-----\n`;
}

export interface PublishedCrls {
  /** Absent when the root key was not loaded: its pre-signed CRL was republished as it is. */
  root?: BuiltCrl;
  intermediate: BuiltCrl;
  bundle: string;
}

/** Marks previous issuing CAs whose overlap has ended as retired; returns whether any was. */
export function retireDue(inv: Inventory, now = new Date()): boolean {
  let changed = false;
  for (const p of [...(inv.ca.previous ?? []), ...(inv.ca.previousRoots ?? [])]) {
    if (!p.retired && Date.parse(p.retireAt) <= now.getTime()) {
      p.retired = true;
      changed = true;
    }
  }
  return changed;
}

/**
 * The trust bundles: chain.pem (what the broker verifies clients against: the issuing CA, previous
 * ones still in their overlap, the root and previous roots in theirs) and ca.crt (what clients
 * trust for the broker: the root, and previous roots during a rollover).
 */
export function stageChain(inv: Inventory, keys: CaKeys, layout: StoreLayout, tx: WriteTransaction): void {
  const pem = (c: x509.X509Certificate) => `${c.toString('pem')}\n`;
  const live = <T extends { serial: string; retired?: boolean }>(list: T[] | undefined, map: Map<string, { cert: x509.X509Certificate }>) =>
    (list ?? []).filter((p) => !p.retired).map((p) => map.get(p.serial)?.cert).filter((c): c is x509.X509Certificate => c !== undefined);
  const ints = live(inv.ca.previous, keys.previous);
  const roots = live(inv.ca.previousRoots, keys.previousRoots);
  tx.write(layout.chain, [keys.intermediate.cert, ...ints, keys.root.cert, ...roots].map(pem).join(''), PUBLIC_MODE);
  tx.write(layout.caCert, [keys.root.cert, ...roots].map(pem).join(''), PUBLIC_MODE);
}

/** After a root retires: server chains stop carrying the cross certificate and end at the new root. */
function stageServerChains(inv: Inventory, keys: CaKeys, layout: StoreLayout, tx: WriteTransaction): void {
  const names = new Set(inv.certs.filter((c) => c.type === 'server' && !c.revokedAt).map((c) => c.name));
  for (const name of names) {
    const file = layout.serverCert(name);
    if (!existsSync(file)) continue;
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(readFileSync(file, 'utf8'))?.[0];
    if (leaf) tx.write(file, `${leaf}\n${keys.intermediate.cert.toString('pem')}\n`, PUBLIC_MODE);
  }
}

function revokedBy(inv: Inventory, issuerSerial: string): RevokedEntry[] {
  return inv.certs
    .filter((c) => c.revokedAt && c.issuer === issuerSerial)
    .map((c) => ({ serial: c.serial, revokedAt: new Date(c.revokedAt as string), ...(c.reason ? { reason: REASON_CODE[c.reason] } : {}) }));
}

/**
 * Signs fresh CRLs from the inventory and stages them (one per issuing CA still trusted, one for
 * the root listing retired issuing CAs) with the bundle; bumps the CRL numbers. Retires previous
 * issuing CAs whose overlap has ended, and then stages the trimmed chain too. `validityMs` is this
 * publication's lifetime (`pki crl --next-update`); by default the store's (crl-lifetime.ts).
 */
export async function stageCrls(inv: Inventory, keys: CaKeys, layout: StoreLayout, tx: WriteTransaction, now = new Date(), validityMs = storeCrlValidity(inv.ca).ms): Promise<PublishedCrls> {
  const rootsBefore = (inv.ca.previousRoots ?? []).filter((p) => !p.retired).length;
  if (retireDue(inv, now)) {
    stageChain(inv, keys, layout, tx);
    if ((inv.ca.previousRoots ?? []).filter((p) => !p.retired).length < rootsBefore) stageServerChains(inv, keys, layout, tx);
  }
  inv.ca.crlNumber.intermediate += 1;
  // root CRLs are signed only when the root key is loaded (root operations, or an older store whose
  // root shares the issuing CA's passphrase); otherwise the pre-signed ones are republished as they are
  const rootValidityMs = inv.ca.rootKey?.crlValidityMs ?? validityMs;
  const intermediate = signCrl({ issuer: keys.intermediate, number: inv.ca.crlNumber.intermediate, entries: revokedBy(inv, inv.ca.intermediate.serial), validityMs, now });
  // a retired issuing CA is listed in the CRL of the root that signed it
  const retiredUnder = (rootSerial: string): RevokedEntry[] =>
    (inv.ca.previous ?? []).filter((p) => p.retired && (p.root ?? inv.ca.root.serial) === rootSerial).map((p) => ({ serial: p.serial, revokedAt: new Date(p.retireAt), reason: x509.X509CrlReason.superseded }));
  const rootKey = keys.root.key;
  let root: BuiltCrl | undefined;
  if (rootKey) {
    inv.ca.crlNumber.root += 1;
    root = signCrl({ issuer: { ...keys.root, key: rootKey }, number: inv.ca.crlNumber.root, entries: retiredUnder(inv.ca.root.serial), validityMs: rootValidityMs, now });
  }
  let bundle = crlPem(intermediate);
  for (const p of inv.ca.previous ?? []) {
    const issuer = keys.previous.get(p.serial);
    if (p.retired || !issuer) continue;
    p.crlNumber += 1;
    const crl = signCrl({ issuer, number: p.crlNumber, entries: revokedBy(inv, p.serial), validityMs, now });
    tx.write(layout.previousIntermediateCrl(p.serial), crlPem(crl), PUBLIC_MODE);
    bundle += crlPem(crl);
  }
  for (const p of inv.ca.previousRoots ?? []) {
    const issuer = keys.previousRoots.get(p.serial);
    if (p.retired || !issuer) continue;
    if (!issuer.key) {
      bundle += readText(layout.previousRootCrl(p.serial), 'pre-signed root CRL');
      continue;
    }
    p.crlNumber += 1;
    const crl = signCrl({ issuer: { ...issuer, key: issuer.key }, number: p.crlNumber, entries: retiredUnder(p.serial), validityMs: rootValidityMs, now });
    tx.write(layout.previousRootCrl(p.serial), crlPem(crl), PUBLIC_MODE);
    bundle += crlPem(crl);
  }
  bundle += root ? crlPem(root) : readText(layout.rootCrl, 'pre-signed root CRL');
  tx.write(layout.intermediateCrl, crlPem(intermediate), PUBLIC_MODE);
  if (root) tx.write(layout.rootCrl, crlPem(root), PUBLIC_MODE);
  tx.write(layout.crlBundle, bundle, PUBLIC_MODE);
  return { ...(root ? { root } : {}), intermediate, bundle };
}
