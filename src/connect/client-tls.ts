/**
 * The partner's TLS material for `broker connect`: the certificate, its key and the CA that signs
 * the broker's certificate, read from files and checked together (the key must belong to the
 * certificate) before anything uses them. What is logged is the identity, never the PEMs.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import { BrokerError } from '../errors.ts';

export interface ClientTlsFiles {
  cert: string;
  key: string;
  ca?: string | undefined;
}

export interface ClientTls {
  cert: string;
  key: string;
  ca?: string;
  /** The leaf's subject CN (the identity the broker will see), serial and expiry, for logs. */
  principal: string;
  serial: string;
  notAfter: Date;
  /** Start of the leaf's validity (renewal is timed from its lifetime). */
  notBefore: Date;
  /** SHA-256 over all three files: a reload with the same digest changes nothing. */
  digest: string;
}

function read(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONNECT_CERT', `cannot read the ${flag} file ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

export function loadClientTls(files: ClientTlsFiles): ClientTls {
  const cert = read(files.cert, '--cert');
  const key = read(files.key, '--key');
  const ca = files.ca === undefined ? undefined : read(files.ca, '--ca');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONNECT_CERT', `${files.cert} is not a PEM certificate`, { cause });
  }
  try {
    // The same checks the TLS connection will make, now: PEM syntax, and that the key fits.
    createSecureContext({ cert, key, ...(ca === undefined ? {} : { ca }) });
  } catch (cause) {
    const why = (cause as Error).message.includes('key values mismatch') ? `the key ${files.key} does not belong to the certificate ${files.cert}` : `cannot use ${files.cert} / ${files.key}${ca === undefined ? '' : ` / ${files.ca}`}: ${(cause as Error).message}`;
    throw new BrokerError('BRK_ERR_CONNECT_CERT', why, { cause });
  }
  const digest = createHash('sha256').update(cert).update('\0').update(key).update('\0').update(ca ?? '').digest('hex');
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    principal: /^CN=(.*)$/m.exec(leaf.subject)?.[1] ?? leaf.subject,
    serial: leaf.serialNumber.toLowerCase(),
    notAfter: new Date(leaf.validTo),
    notBefore: new Date(leaf.validFrom),
    digest,
  };
}
