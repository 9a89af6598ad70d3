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

export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string;
  crl: string;
  /** Lower-case hex serials of every revoked certificate in the CRL bundle. */
  revoked: ReadonlySet<string>;
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

/** Revoked serials from every CRL in a PEM bundle, with the earliest nextUpdate and the issuers covered. */
/**
 * Revoked serials from every CRL in a PEM bundle, with the earliest nextUpdate and the issuers
 * covered (raw Name DER as hex, to compare with `subjectKey()` of the CA certificates).
 */
export function revokedSerials(crlPem: string): { revoked: Set<string>; nextUpdate: Date | undefined; count: number; issuers: Set<string> } {
  const revoked = new Set<string>();
  const issuers = new Set<string>();
  let nextUpdate: Date | undefined;
  let count = 0;
  for (const der of pemBlocks(crlPem, 'X509 CRL')) {
    const crl = readCrl(der);
    count++;
    issuers.add(crl.issuer.toString('hex'));
    if (crl.nextUpdate && (!nextUpdate || crl.nextUpdate < nextUpdate)) nextUpdate = crl.nextUpdate;
    for (const s of crl.serials) revoked.add(s);
  }
  return { revoked, nextUpdate, count, issuers };
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
  const crl = read('CRL', files.crl);

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
  let revoked = new Set<string>();
  let crlNextUpdate: Date | undefined;
  if (crl) {
    try {
      const r = revokedSerials(crl);
      if (r.count === 0) problems.push(`CRL: ${files.crl} holds no X509 CRL`);
      revoked = r.revoked;
      crlNextUpdate = r.nextUpdate;
      // OpenSSL wants a CRL for every CA level once CRL checking is on; a missing one refuses everyone
      // (and hides the real reason behind UNABLE_TO_GET_CRL), so refuse to start instead.
      for (const der of pemBlocks(ca, 'CERTIFICATE')) {
        const caCert = new x509.X509Certificate(new Uint8Array(der));
        if (!r.issuers.has(subjectKey(der))) problems.push(`CRL: ${files.crl} has no CRL from the CA "${caCert.subject}" in ${files.ca}; every client would be refused (run "broker pki crl" and use its bundle)`);
      }
      if (r.nextUpdate && r.nextUpdate <= now) problems.push(`CRL: ${files.crl} expired on ${r.nextUpdate.toISOString()}; every client would be refused (run "broker pki crl")`);
    } catch (e) {
      problems.push(`CRL: ${files.crl} cannot be parsed (${(e as Error).message})`);
    }
  }
  if (problems.length) {
    throw new BrokerError('BRK_ERR_TLS_MATERIAL', `TLS material is not usable:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return { cert, key, ca, crl, revoked, server, crlNextUpdate, files };
}
