/**
 * CRL publication: both CA levels are re-signed together (the root's CRL for intermediates, the
 * intermediate's for leaves) and written as separate files plus one bundle, because OpenSSL-based
 * verifiers, Node's included, want a current CRL for every level once CRL checking is on.
 */
import { x509 } from './x509.ts';
import { createCrl, type RevokedEntry } from './certs.ts';
import { PUBLIC_MODE } from './files.ts';
import { REVOCATION_REASONS, type Inventory, type RevocationReason } from './inventory.ts';
import type { StoreLayout } from './layout.ts';
import type { CaKeys } from './store.ts';
import type { WriteTransaction } from './files.ts';

export const DEFAULT_CRL_VALIDITY_MS = 30 * 86_400_000;

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
export function crlPem(crl: x509.X509Crl): string {
  return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`;
}

export interface PublishedCrls {
  root: x509.X509Crl;
  intermediate: x509.X509Crl;
  bundle: string;
}

/** Signs fresh CRLs from the inventory and stages them; bumps both CRL numbers. */
export async function stageCrls(inv: Inventory, keys: CaKeys, layout: StoreLayout, tx: WriteTransaction, now = new Date()): Promise<PublishedCrls> {
  const leaves: RevokedEntry[] = inv.certs
    .filter((c) => c.revokedAt && c.issuer === inv.ca.intermediate.serial)
    .map((c) => ({ serial: c.serial, revokedAt: new Date(c.revokedAt as string), ...(c.reason ? { reason: REASON_CODE[c.reason] } : {}) }));
  inv.ca.crlNumber.intermediate += 1;
  inv.ca.crlNumber.root += 1;
  const intermediate = await createCrl({ issuer: keys.intermediate, number: inv.ca.crlNumber.intermediate, entries: leaves, validityMs: inv.ca.crlValidityMs, now });
  const root = await createCrl({ issuer: keys.root, number: inv.ca.crlNumber.root, entries: [], validityMs: inv.ca.crlValidityMs, now });
  const bundle = crlPem(intermediate) + crlPem(root);
  tx.write(layout.intermediateCrl, crlPem(intermediate), PUBLIC_MODE)
    .write(layout.rootCrl, crlPem(root), PUBLIC_MODE)
    .write(layout.crlBundle, bundle, PUBLIC_MODE);
  return { root, intermediate, bundle };
}
