/**
 * CRL rollback protection: a CRL bundle put in place of the loaded one must not take the broker
 * back in time. Per issuing CA (a bundle has one CRL per CA level), the next CRL is accepted when
 * - it is the same CRL (same bytes), or
 * - both carry a CRL number (RFC 5280 5.2.3) and the new one is higher, or
 * - failing that (an equal or lower number, or no number on either side), it is not older
 *   (thisUpdate) and still lists every serial the loaded one lists: it cannot revive anything.
 *   This is how a CA that restarts its numbering is accepted (the CRL of an issuing CA that
 *   `pki rotate` moved to "previous" starts again at 1), and CRLs without numbers are ordered.
 * Anything else (an older CRL put back, another CRL with the same number that drops a serial) is
 * refused with BRK_ERR_TLS_CRL_ROLLBACK and the loaded CRL keeps serving. The baseline is the CRL
 * loaded in this process: a restart accepts whatever CRL is in place (within its nextUpdate).
 */
import { createHash } from 'node:crypto';
import { ERRORS } from '../errors.ts';
import { x509 } from '../pki/x509.ts';
import type { CrlFacts } from './crl-der.ts';

export interface CrlRecord {
  readonly number: bigint | undefined;
  readonly thisUpdate: Date;
  readonly serials: readonly string[];
  /** SHA-256 of the CRL's DER. */
  readonly digest: string;
  /** Raw issuer Name DER, for messages. */
  readonly issuer: Buffer;
}

export function crlRecord(facts: CrlFacts, der: Uint8Array): CrlRecord {
  return { number: facts.number, thisUpdate: facts.thisUpdate, serials: facts.serials, digest: createHash('sha256').update(der).digest('hex'), issuer: facts.issuer };
}

/** Whether `a` is a later CRL than `b` of the same issuer (by number, then thisUpdate). */
export function isNewer(a: CrlRecord, b: CrlRecord): boolean {
  if (a.number !== undefined && b.number !== undefined && a.number !== b.number) return a.number > b.number;
  return a.thisUpdate > b.thisUpdate;
}

function issuerName(r: CrlRecord): string {
  try {
    return new x509.Name(new Uint8Array(r.issuer)).toString();
  } catch {
    return r.issuer.toString('hex');
  }
}

const numberText = (n: bigint | undefined) => (n === undefined ? 'no number' : `number ${n}`);

export interface CrlOrder {
  /** One line per issuer whose new CRL is refused, each starting with the code and ending with the hint. */
  refused: string[];
  /** Issuers whose CRL was accepted although its number did not go up (for a warning). */
  renumbered: string[];
}

/** Compares the CRLs of `next` with those loaded, issuer by issuer (new issuers are accepted). */
export function crlOrder(loaded: ReadonlyMap<string, CrlRecord>, next: ReadonlyMap<string, CrlRecord>, file: string): CrlOrder {
  const refused: string[] = [];
  const renumbered: string[] = [];
  for (const [issuer, n] of next) {
    const l = loaded.get(issuer);
    if (!l || l.digest === n.digest) continue;
    if (n.number !== undefined && l.number !== undefined && n.number > l.number) continue;
    const kept = new Set(n.serials);
    const dropped = l.serials.filter((s) => !kept.has(s));
    if (n.thisUpdate >= l.thisUpdate && dropped.length === 0) {
      renumbered.push(`${file}: the CRL of "${issuerName(n)}" has ${numberText(n.number)} (loaded: ${numberText(l.number)}) but is not older and revokes everything the loaded one did; accepted`);
      continue;
    }
    const why = dropped.length ? `no longer lists ${dropped.length} revoked serial${dropped.length === 1 ? '' : 's'} (${dropped.slice(0, 3).join(', ')}${dropped.length > 3 ? ', …' : ''})` : `is older (thisUpdate ${n.thisUpdate.toISOString()}, loaded ${l.thisUpdate.toISOString()})`;
    refused.push(`BRK_ERR_TLS_CRL_ROLLBACK: ${file}: the CRL of "${issuerName(n)}" has ${numberText(n.number)}, not above the loaded ${numberText(l.number)}, and ${why}; still serving the loaded CRL (${ERRORS.BRK_ERR_TLS_CRL_ROLLBACK.hint})`);
  }
  return { refused, renumbered };
}
