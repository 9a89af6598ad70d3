/**
 * The TLS material the listener needs: server chain and key, the client CA bundle, the CRL bundle
 * and the revoked serials read from it. From the PKI store (by server name) or explicit files.
 * Everything is read and checked before anything is used, so a bad file is refused up front.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BrokerError } from '../errors.ts';
import type { BrokerConfig } from '../config/index.ts';
import { storeLayout } from '../pki/layout.ts';
import { x509 } from '../pki/x509.ts';
import { certSubject, pemBlocks, readCrl } from './crl-der.ts';
import { crlRecord, isNewer, type CrlRecord } from './crl-order.ts';

export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string;
  crl: string;
  /** Lower-case hex serials of every revoked certificate in the CRL bundle. */
  revoked: ReadonlySet<string>;
  /** Per CRL issuer (raw Name DER as hex): what the next CRL bundle is checked against (crl-order.ts). */
  crls: ReadonlyMap<string, CrlRecord>;
  server: { subject: string; notAfter: Date; dns: string[] };
  crlNextUpdate: Date | undefined;
  files: { cert: string; key: string; ca: string; crl: string };
}

export function materialFiles(c: BrokerConfig): TlsMaterial['files'] {
  const store = storeLayout(c.pki.dir);
  return {
    cert: c.tls.cert ?? store.serverCert(c.tls.server ?? ''),
    key: c.tls.key ?? store.serverKey(c.tls.server ?? ''),
    ca: c.tls.clientCa ?? store.chain,
    crl: c.tls.crl ?? store.crlBundle,
  };
}

const PEM_BLOCK = (label: string) => new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, 'g');

/** What a CRL bundle holds, read and checked (see `readCrlBundle`). */
export interface CrlBundle {
  crl: string;
  revoked: Set<string>;
  nextUpdate: Date | undefined;
  crls: Map<string, CrlRecord>;
}

/**
 * Revoked serials from every CRL in a PEM bundle, with the earliest nextUpdate, the issuers
 * covered (raw Name DER as hex, to compare with `subjectKey()` of the CA certificates) and, per
 * issuer, what the rollback check compares (the newest CRL when an issuer has several).
 */
export function revokedSerials(crlPem: string): { revoked: Set<string>; nextUpdate: Date | undefined; count: number; issuers: Set<string>; crls: Map<string, CrlRecord> } {
  const revoked = new Set<string>();
  const crls = new Map<string, CrlRecord>();
  let nextUpdate: Date | undefined;
  let count = 0;
  for (const der of pemBlocks(crlPem, 'X509 CRL')) {
    const crl = readCrl(der);
    count++;
    const issuer = crl.issuer.toString('hex');
    const record = crlRecord(crl, der);
    const had = crls.get(issuer);
    if (!had || isNewer(record, had)) crls.set(issuer, record);
    if (crl.nextUpdate && (!nextUpdate || crl.nextUpdate < nextUpdate)) nextUpdate = crl.nextUpdate;
    for (const s of crl.serials) revoked.add(s);
  }
  return { revoked, nextUpdate, count, issuers: new Set(crls.keys()), crls };
}

/**
 * Reads a CRL bundle and checks it against the client CA bundle it will serve with: a CRL for
 * every CA level (OpenSSL refuses everyone otherwise), none expired. Problems are returned, not thrown.
 */
export function readCrlBundle(file: string, ca: { pem: string; file: string }, now = new Date()): { bundle: CrlBundle; problems: string[] } {
  const problems: string[] = [];
  const empty: CrlBundle = { crl: '', revoked: new Set(), nextUpdate: undefined, crls: new Map() };
  let crl: string;
  try {
    crl = readFileSync(file, 'utf8');
  } catch (e) {
    return { bundle: empty, problems: [`CRL: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`] };
  }
  try {
    const r = revokedSerials(crl);
    if (r.count === 0) problems.push(`CRL: ${file} holds no X509 CRL`);
    // OpenSSL wants a CRL for every CA level once CRL checking is on; a missing one refuses everyone
    // (and hides the real reason behind UNABLE_TO_GET_CRL), so refuse to start instead.
    for (const der of pemBlocks(ca.pem, 'CERTIFICATE')) {
      if (!r.issuers.has(subjectKey(der))) {
        const caCert = new x509.X509Certificate(new Uint8Array(der));
        problems.push(`CRL: ${file} has no CRL from the CA "${caCert.subject}" in ${ca.file}; every client would be refused (run "broker pki crl" and use its bundle)`);
      }
    }
    if (r.nextUpdate && r.nextUpdate <= now) problems.push(`CRL: ${file} expired on ${r.nextUpdate.toISOString()}; every client would be refused (run "broker pki crl")`);
    return { bundle: { crl, revoked: r.revoked, nextUpdate: r.nextUpdate, crls: r.crls }, problems };
  } catch (e) {
    return { bundle: empty, problems: [`CRL: ${file} cannot be parsed (${(e as Error).message})`] };
  }
}

/** A certificate's subject in the form `revokedSerials().issuers` uses. */
export function subjectKey(certDer: Uint8Array): string {
  return certSubject(certDer).toString('hex');
}

/** Loads and checks everything; throws BRK_ERR_TLS_MATERIAL listing every problem found. */
export function loadTlsMaterial(c: BrokerConfig, now = new Date()): TlsMaterial {
  const files = materialFiles(c);
  const problems: string[] = [];
  const read = (what: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      problems.push(`${what}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})${what === 'server certificate' && c.tls.server ? ` (run "broker pki server ${c.tls.server} --dns HOST")` : ''}`);
      return '';
    }
  };
  const cert = read('server certificate', files.cert);
  const key = read('server key', files.key);
  const ca = read('client CA', files.ca);

  let server: TlsMaterial['server'] = { subject: '', notAfter: new Date(0), dns: [] };
  if (cert) {
    try {
      const leaf = new X509Certificate(cert);
      server = { subject: leaf.subject, notAfter: new Date(leaf.validTo), dns: (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)) };
      if (server.notAfter <= now) problems.push(`server certificate: ${files.cert} expired on ${server.notAfter.toISOString()} (run "broker pki renew")`);
      if (new Date(leaf.validFrom) > now) problems.push(`server certificate: ${files.cert} is not valid before ${leaf.validFrom}`);
      if (key) {
        try {
          if (!leaf.checkPrivateKey(createPrivateKey(key))) problems.push(`server key: ${files.key} does not match the certificate ${files.cert}`);
        } catch (e) {
          problems.push(`server key: ${files.key} is not a readable unencrypted private key (${(e as Error).message})`);
        }
      }
    } catch (e) {
      problems.push(`server certificate: ${files.cert} is not a PEM certificate (${(e as Error).message})`);
    }
  }
  if (ca && !PEM_BLOCK('CERTIFICATE').test(ca)) problems.push(`client CA: ${files.ca} holds no PEM certificate`);
  const { bundle, problems: crlProblems } = readCrlBundle(files.crl, { pem: ca, file: files.ca }, now);
  problems.push(...crlProblems);
  if (problems.length) {
    throw new BrokerError('BRK_ERR_TLS_MATERIAL', `TLS material is not usable:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return { cert, key, ca, crl: bundle.crl, revoked: bundle.revoked, crls: bundle.crls, server, crlNextUpdate: bundle.nextUpdate, files };
}

/** `m` serving the CRL bundle `b` instead of its own (everything else unchanged). */
export function withCrl(m: TlsMaterial, b: CrlBundle): TlsMaterial {
  return { ...m, crl: b.crl, revoked: b.revoked, crls: b.crls, crlNextUpdate: b.nextUpdate };
}
