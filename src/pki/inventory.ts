/**
 * The inventory: the CA's own facts and every certificate it issued. One JSON file, rewritten
 * atomically under the store lock; it is the source of truth for the CRLs.
 */
import { BrokerError } from '../errors.ts';
import { KEY_TYPES, type KeyType } from './keys.ts';

export const INVENTORY_FORMAT = 'broker-pki/1';

export const REVOCATION_REASONS = ['unspecified', 'keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged', 'privilegeWithdrawn'] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface CertRecord {
  name: string;
  type: 'client' | 'server';
  roles: string[];
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
  /** How it came to be: issue (key made here), sign (third party's CSR), renew, server, enroll (invitation token; key made by the partner). */
  source: 'issue' | 'sign' | 'renew' | 'server' | 'enroll';
  /** Serial of the issuing CA certificate. */
  issuer: string;
  dns?: string[];
  ip?: string[];
  revokedAt?: string;
  reason?: RevocationReason;
  /** Who to tell about this identity (expiry notices, onboarding kit; from pki issue --contact or the invitation's --contact, kept on renewal): an e-mail address. Absent in older inventories. */
  contact?: string;
}

export interface CaFacts {
  name: string;
  trustDomain: string;
  keyType: KeyType;
  encrypted: boolean;
  createdAt: string;
  /** Lifetime of published CRLs unless `pki crl --next-update` says otherwise (set by `pki init --crl-next-update`). */
  crlValidityMs: number;
  /** Set when `pki init --force` stored a lifetime under an hour: without it such a value is ignored (crl-lifetime.ts). */
  crlValidityForced?: boolean;
  crlNumber: { root: number; intermediate: number };
  root: { serial: string; notAfter: string; fingerprint: string };
  intermediate: { serial: string; notAfter: string; fingerprint: string };
  /**
   * Issuing CAs replaced by `rotate intermediate`: trusted (chain, CRL) until `retireAt`, then
   * retired: dropped from the chain and listed as revoked (superseded) in the root's CRL.
   */
  previous?: Array<{ serial: string; notAfter: string; fingerprint: string; retireAt: string; crlNumber: number; retired?: boolean; root?: string }>;
  /** Roots replaced by `rotate root`: trusted until `retireAt`, then dropped from every bundle. */
  previousRoots?: Array<{ serial: string; notAfter: string; fingerprint: string; retireAt: string; crlNumber: number; retired?: boolean }>;
  /** The current issuing CA cross-signed by the previous root, served in chains during a root overlap. */
  cross?: { serial: string; retireAt: string };
  /**
   * Present once the root can be kept offline (`pki init --root-passphrase-file`, `pki root
   * migrate`): the root keys have their own passphrase, day-to-day operations never load them, and
   * the root CRLs are pre-signed for `crlValidityMs` by root operations only. Absent: older stores,
   * where the root shares the issuing CA's passphrase and its CRL is re-signed with every change.
   */
  rootKey?: RootKeyFacts;
}

export interface RootKeyFacts {
  /** How long a root CRL signed by a root operation stays valid (its nextUpdate). */
  crlValidityMs: number;
  /** Set by `pki root remove`: where the keys were exported to, and when they left this host. */
  offline?: { since: string; exportedTo: string };
}

export interface Inventory {
  format: typeof INVENTORY_FORMAT;
  ca: CaFacts;
  certs: CertRecord[];
}

export type CertStatus = 'valid' | 'revoked' | 'expired';

export function statusOf(rec: CertRecord, now = Date.now()): CertStatus {
  if (rec.revokedAt) return 'revoked';
  return Date.parse(rec.notAfter) <= now ? 'expired' : 'valid';
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isStrArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);

/** Checks the shape strictly enough that a hand-edited or truncated file is caught, and names where. */
export function parseInventory(text: string, file: string): Inventory {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_INVENTORY_CORRUPT', `${file} is not valid JSON (${(cause as Error).message})`, { cause });
  }
  const bad = (where: string): never => {
    throw new BrokerError('BRK_ERR_PKI_INVENTORY_CORRUPT', `${file}: ${where} is missing or malformed`);
  };
  const inv = data as Inventory;
  if (!inv || typeof inv !== 'object' || inv.format !== INVENTORY_FORMAT) bad('format');
  const ca = inv.ca;
  if (!ca || typeof ca !== 'object') bad('ca');
  if (!isStr(ca.name) || !isStr(ca.trustDomain)) bad('ca.name/ca.trustDomain');
  if (!(KEY_TYPES as readonly string[]).includes(ca.keyType)) bad('ca.keyType');
  if (typeof ca.encrypted !== 'boolean' || !Number.isSafeInteger(ca.crlValidityMs) || !(ca.crlValidityMs > 0)) bad('ca.encrypted/ca.crlValidityMs');
  if (ca.crlValidityForced !== undefined && typeof ca.crlValidityForced !== 'boolean') bad('ca.crlValidityForced');
  if (!Number.isSafeInteger(ca.crlNumber?.root) || !Number.isSafeInteger(ca.crlNumber?.intermediate)) bad('ca.crlNumber');
  if (!isStr(ca.root?.serial) || !isStr(ca.intermediate?.serial)) bad('ca.root/ca.intermediate');
  if (ca.rootKey !== undefined && (typeof ca.rootKey !== 'object' || !Number.isSafeInteger(ca.rootKey?.crlValidityMs))) bad('ca.rootKey');
  if (!Array.isArray(inv.certs)) bad('certs');
  inv.certs.forEach((c, i) => {
    const ok =
      c && isStr(c.name) && (c.type === 'client' || c.type === 'server') && Array.isArray(c.roles) && (c.roles.length === 0 || isStrArray(c.roles)) &&
      /^[0-9a-f]+$/.test(c.serial) && !Number.isNaN(Date.parse(c.notBefore)) && !Number.isNaN(Date.parse(c.notAfter)) && /^[0-9a-f]{64}$/.test(c.fingerprint) &&
      (c.revokedAt === undefined || !Number.isNaN(Date.parse(c.revokedAt))) &&
      (c.contact === undefined || isStr(c.contact));
    if (!ok) bad(`certs[${i}]`);
  });
  return inv;
}

const CONTACT = /^[^\s@<>"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$/;

/** A contact is one e-mail address (local@domain), at most 254 characters. */
export function checkContact(contact: string): string {
  if (contact.length > 254 || !CONTACT.test(contact)) {
    throw new BrokerError('BRK_ERR_USAGE_CONTACT', `--contact ${JSON.stringify(contact)} is not an e-mail address`);
  }
  return contact;
}

export function serializeInventory(inv: Inventory): string {
  return `${JSON.stringify(inv, null, 2)}\n`;
}

/** A name resolves to its certificates; a hex serial (with or without colons) to that one. */
export function findCerts(inv: Inventory, nameOrSerial: string): CertRecord[] {
  const serial = nameOrSerial.toLowerCase().replace(/:/g, '').replace(/^0x/, '');
  const bySerial = inv.certs.filter((c) => c.serial === serial);
  if (bySerial.length) return bySerial;
  return inv.certs.filter((c) => c.name === nameOrSerial);
}
