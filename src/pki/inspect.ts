/**
 * `broker pki inspect` and `broker pki list`: read-only views of certificates against this CA.
 * Inspect answers "would the broker accept this as a client certificate, and if not, why".
 */
import { BrokerError } from '../errors.ts';
import { fingerprint } from './certs.ts';
import { readBytes, readText } from './files.ts';
import { statusOf, type CertStatus, type Inventory } from './inventory.ts';
import type { CaStore } from './store.ts';
import { x509 } from './x509.ts';

export interface ListRow {
  /** Which issuing CA signed it: current, previous (still trusted until it retires) or retired. */
  issuer: 'current' | 'previous' | 'retired';
  name: string;
  type: 'client' | 'server';
  roles: string[];
  serial: string;
  notBefore: string;
  notAfter: string;
  status: CertStatus;
  fingerprint: string;
  /** The identity's contact (e-mail) given at issue; null when none was. */
  contact: string | null;
}

export function listCerts(inv: Inventory, o: { expiringMs?: number; now?: number } = {}): ListRow[] {
  const now = o.now ?? Date.now();
  return inv.certs
    .map((c) => ({
      issuer: c.issuer === inv.ca.intermediate.serial ? ('current' as const) : (inv.ca.previous ?? []).some((p) => p.serial === c.issuer && !p.retired) ? ('previous' as const) : ('retired' as const),
      name: c.name,
      type: c.type,
      roles: c.roles,
      serial: c.serial,
      notBefore: c.notBefore,
      notAfter: c.notAfter,
      status: statusOf(c, now),
      fingerprint: c.fingerprint,
      contact: c.contact ?? null,
    }))
    .filter((r) => o.expiringMs === undefined || (r.status === 'valid' && Date.parse(r.notAfter) - now <= o.expiringMs))
    .sort((a, b) => a.name.localeCompare(b.name) || a.notBefore.localeCompare(b.notBefore));
}

export interface InspectReport {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
  roles: string[];
  sans: string[];
  extendedKeyUsage: string[];
  /** Name in the inventory, when this CA issued it. */
  knownAs?: string;
  accepted: boolean;
  reasons: string[];
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_NAMES: Record<string, string> = { [CLIENT_AUTH]: 'clientAuth', '1.3.6.1.5.5.7.3.1': 'serverAuth' };

export function parseCertificate(data: Buffer, file: string): x509.X509Certificate {
  try {
    const text = data.toString('latin1');
    if (text.includes('-----BEGIN')) {
      const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
      if (!first) throw new Error('no CERTIFICATE block');
      return new x509.X509Certificate(first[0]);
    }
    return new x509.X509Certificate(new Uint8Array(data));
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CERT_INVALID', `${file} does not hold an X.509 certificate`, { cause });
  }
}

export async function inspectFile(store: CaStore, file: string, now = new Date()): Promise<InspectReport> {
  const cert = parseCertificate(readBytes(file, 'certificate'), file);
  const inv = store.readInventory();
  const intermediate = new x509.X509Certificate(readText(store.layout.intermediateCert, 'CA certificate'));
  const root = new x509.X509Certificate(readText(store.layout.rootCert, 'CA certificate'));
  const reasons: string[] = [];

  const serial = cert.serialNumber.toLowerCase();
  const fp = fingerprint(cert.rawData);
  let signedByUs = await cert.verify({ publicKey: intermediate.publicKey, signatureOnly: true }).catch(() => false);
  for (const p of inv.ca.previous ?? []) {
    if (signedByUs || p.retired) continue;
    const prev = new x509.X509Certificate(readText(store.layout.previousIntermediateCert(p.serial), 'CA certificate'));
    signedByUs = await cert.verify({ publicKey: prev.publicKey, signatureOnly: true }).catch(() => false);
  }
  const isCa = (cert.getExtension(x509.BasicConstraintsExtension) as x509.BasicConstraintsExtension | null)?.ca === true;
  if (fp === fingerprint(root.rawData) || fp === fingerprint(intermediate.rawData)) reasons.push('this is one of the CA certificates, not a client certificate');
  else if (!signedByUs) reasons.push(`unknown issuer: not signed by this CA's issuing certificate (${intermediate.subject})`);
  if (cert.notBefore.getTime() > now.getTime()) reasons.push(`not yet valid: valid from ${cert.notBefore.toISOString()}`);
  if (cert.notAfter.getTime() <= now.getTime()) reasons.push(`expired on ${cert.notAfter.toISOString()}`);

  const record = inv.certs.find((c) => c.serial === serial && c.fingerprint === fp);
  if (record?.revokedAt) reasons.push(`revoked on ${record.revokedAt} (${record.reason ?? 'unspecified'})`);
  if (signedByUs && !record && !isCa) reasons.push('signed by this CA but missing from the inventory (restored from an old backup?)');

  const eku = (cert.getExtension(x509.ExtendedKeyUsageExtension) as x509.ExtendedKeyUsageExtension | null)?.usages.map(String) ?? [];
  if (!eku.includes(CLIENT_AUTH)) reasons.push(`wrong key usage: extended key usage has no clientAuth${eku.length ? ` (it has ${eku.map((u) => EKU_NAMES[u] ?? u).join(', ')})` : ''}`);
  const ku = cert.getExtension(x509.KeyUsagesExtension) as x509.KeyUsagesExtension | null;
  if (ku && !(ku.usages & x509.KeyUsageFlags.digitalSignature)) reasons.push('wrong key usage: no digitalSignature');
  if (isCa && !reasons.some((r) => r.startsWith('this is one'))) reasons.push('this is a CA certificate, not a client certificate');

  const san = cert.getExtension(x509.SubjectAlternativeNameExtension) as x509.SubjectAlternativeNameExtension | null;
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprint: fp,
    roles: cert.subjectName.getField('OU'),
    sans: san ? san.names.items.map((n) => `${n.type}:${n.value}`) : [],
    extendedKeyUsage: eku.map((u) => EKU_NAMES[u] ?? u),
    ...(record ? { knownAs: record.name } : {}),
    accepted: reasons.length === 0,
    reasons,
  };
}
