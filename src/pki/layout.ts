/** Where each file of the CA store lives. pki/README.md documents the same layout for people. */
import { join } from 'node:path';

export interface StoreLayout {
  dir: string;
  inventory: string;
  rootCert: string;
  rootKey: string;
  intermediateCert: string;
  intermediateKey: string;
  rootCrl: string;
  intermediateCrl: string;
  /** Every CA level's CRL in one PEM: what `crl` options and `openssl verify -CRLfile` want. */
  crlBundle: string;
  /** The root alone: what clients trust. */
  caCert: string;
  /** Intermediate then root: what the broker uses to verify client chains. */
  chain: string;
  auditLog: string;
  auditHead: string;
  /** The change being committed (its audit line and staged files), while it is: see pki/journal.ts. */
  pending: string;
  /** API keys and Basic credentials (salted scrypt hashes only): `broker keys`. */
  keys: string;
  lock: string;
  /** A replaced issuing CA kept through its overlap, by serial. */
  previousIntermediateCert(serial: string): string;
  previousIntermediateKey(serial: string): string;
  previousIntermediateCrl(serial: string): string;
  previousRootCert(serial: string): string;
  previousRootKey(serial: string): string;
  previousRootCrl(serial: string): string;
  /** The current issuing CA cross-signed by the previous root (during a root rollover). */
  crossCert: string;
  serverCert(name: string): string;
  serverKey(name: string): string;
  /** Identity assertion (JWT) signing keys: `assertion/` (see pki/assertion.ts). */
  assertionDir: string;
  /** Which assertion keys exist, which is current, when the replaced ones retire. */
  assertionKeys: string;
  /** The published public keys (JWKS), for upstreams that read the store. */
  assertionJwks: string;
  /** One assertion signing key (PKCS#8 PEM, unencrypted: the serving process reads it), by kid. */
  assertionKey(kid: string): string;
}

export function storeLayout(dir: string): StoreLayout {
  return {
    dir,
    inventory: join(dir, 'inventory.json'),
    rootCert: join(dir, 'ca', 'root.crt'),
    rootKey: join(dir, 'ca', 'root.key'),
    intermediateCert: join(dir, 'ca', 'intermediate.crt'),
    intermediateKey: join(dir, 'ca', 'intermediate.key'),
    rootCrl: join(dir, 'crl', 'root.crl'),
    intermediateCrl: join(dir, 'crl', 'intermediate.crl'),
    crlBundle: join(dir, 'crl.pem'),
    caCert: join(dir, 'ca.crt'),
    chain: join(dir, 'chain.pem'),
    auditLog: join(dir, 'audit.log'),
    auditHead: join(dir, 'audit.head'),
    pending: join(dir, 'audit.pending'),
    keys: join(dir, 'keys.json'),
    lock: join(dir, '.lock'),
    previousIntermediateCert: (serial) => join(dir, 'ca', `intermediate-${serial}.crt`),
    previousIntermediateKey: (serial) => join(dir, 'ca', `intermediate-${serial}.key`),
    previousIntermediateCrl: (serial) => join(dir, 'crl', `intermediate-${serial}.crl`),
    previousRootCert: (serial) => join(dir, 'ca', `root-${serial}.crt`),
    previousRootKey: (serial) => join(dir, 'ca', `root-${serial}.key`),
    previousRootCrl: (serial) => join(dir, 'crl', `root-${serial}.crl`),
    crossCert: join(dir, 'ca', 'root-cross.crt'),
    serverCert: (name) => join(dir, 'servers', `${name}.crt`),
    serverKey: (name) => join(dir, 'servers', `${name}.key`),
    assertionDir: join(dir, 'assertion'),
    assertionKeys: join(dir, 'assertion', 'keys.json'),
    assertionJwks: join(dir, 'assertion', 'jwks.json'),
    assertionKey: (kid) => join(dir, 'assertion', `${kid}.key`),
  };
}

/** The store folder from a flag, then BROKER_PKI_DIR, then ./pki. */
export function resolveStoreDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.BROKER_PKI_DIR ?? 'pki';
}
