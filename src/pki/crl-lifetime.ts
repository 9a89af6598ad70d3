/**
 * How long a published CRL stays valid. A CRL past its nextUpdate makes every client fail
 * verification, so a lifetime under an hour is refused unless forced, and only `pki init` sets the
 * store's default: `pki crl --next-update` applies to that one publication.
 */
import { BrokerError } from '../errors.ts';
import { formatDuration } from '../config/duration.ts';
import type { CaFacts } from './inventory.ts';

export const DEFAULT_CRL_VALIDITY_MS = 30 * 86_400_000;
/** Shorter lifetimes need --force (a missed timer run then cuts every client off within the hour). */
export const MIN_CRL_VALIDITY_MS = 3_600_000;

/** Throws BRK_ERR_PKI_CRL_TOO_SHORT for a lifetime under an hour, unless `force`. */
export function checkCrlValidity(ms: number, flag: string, force = false): number {
  if (ms < MIN_CRL_VALIDITY_MS && !force) {
    throw new BrokerError('BRK_ERR_PKI_CRL_TOO_SHORT', `${flag} ${formatDuration(ms)} is under 1 hour: every client is refused once a CRL passes its nextUpdate`);
  }
  return ms;
}

export interface StoreCrlValidity {
  /** What later publications use. */
  ms: number;
  /** The stored value, when it was ignored (under an hour and not set with --force at init). */
  ignoredMs?: number;
}

/**
 * The store's default CRL lifetime. Stores from before this rule may hold a short value that an
 * old `pki crl --next-update` persisted by accident; under an hour without the init-time
 * `crlValidityForced` mark, it is ignored in favour of the 30-day default (callers warn).
 */
export function storeCrlValidity(ca: Pick<CaFacts, 'crlValidityMs' | 'crlValidityForced'>): StoreCrlValidity {
  if (ca.crlValidityMs >= MIN_CRL_VALIDITY_MS || ca.crlValidityForced === true) return { ms: ca.crlValidityMs };
  return { ms: DEFAULT_CRL_VALIDITY_MS, ignoredMs: ca.crlValidityMs };
}

/** The warning a command prints when the stored lifetime is ignored. */
export function ignoredWarning(v: StoreCrlValidity): string | undefined {
  if (v.ignoredMs === undefined) return undefined;
  return `the store's CRL lifetime ${formatDuration(v.ignoredMs)} (left by an older "broker pki crl --next-update") is under 1 hour and ignored; CRLs are published for ${formatDuration(v.ms)}`;
}
