/**
 * Certificate and CRL minting with @peculiar/x509. Pure apart from the crypto: no file I/O.
 * What each certificate carries is written down in pki/README.md.
 */
import { hash, randomBytes } from 'node:crypto';
import { x509 } from './x509.ts';
import { signingAlgorithm, type KeyType } from './keys.ts';
import { buildCrl, type BuiltCrl } from './crl-builder.ts';

export const MINUTE = 60_000;
/** Leaves and CRLs start one minute in the past so a client with a slightly slow clock accepts them. */
const BACKDATE_MS = MINUTE;

export interface Issuer {
  cert: x509.X509Certificate;
  key: CryptoKey;
  keyType: KeyType;
}

/** 128 random bits with the top bit cleared: positive, at least 64 bits of entropy, 16 bytes of DER. */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x40;
  return b.toString('hex');
}

export function fingerprint(der: ArrayBuffer | Uint8Array): string {
  return hash('sha256', der instanceof Uint8Array ? der : new Uint8Array(der), 'hex');
}

function name(cn: string, extra: { OU?: readonly string[]; O?: string } = {}): x509.JsonName {
  const parts: x509.JsonName = [];
  if (extra.O) parts.push({ O: [extra.O] });
  for (const ou of extra.OU ?? []) parts.push({ OU: [ou] });
  parts.push({ CN: [cn] });
  return parts;
}

async function keyIds(subjectKey: CryptoKey, issuerCert?: x509.X509Certificate): Promise<x509.Extension[]> {
  const ski = await x509.SubjectKeyIdentifierExtension.create(subjectKey);
  const aki = issuerCert
    ? (issuerCert.getExtension(x509.SubjectKeyIdentifierExtension) as x509.SubjectKeyIdentifierExtension).keyId
    : ski.keyId;
  return [ski, new x509.AuthorityKeyIdentifierExtension(aki)];
}

/** " G2", " G3"… after the first: successive CAs get distinct names, so no verifier confuses them. */
const generation = (g?: number) => (g && g > 1 ? ` G${g}` : '');

export async function createRoot(opts: { name: string; keys: CryptoKeyPair; keyType: KeyType; lifetimeMs: number; now?: Date; generation?: number }): Promise<x509.X509Certificate> {
  const now = opts.now ?? new Date();
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: name(`${opts.name} Root${generation(opts.generation)}`),
    notBefore: now,
    notAfter: new Date(now.getTime() + opts.lifetimeMs),
    keys: opts.keys,
    signingAlgorithm: signingAlgorithm(opts.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ...(await keyIds(opts.keys.publicKey)),
    ],
  });
}

export async function createIntermediate(opts: { name: string; publicKey: CryptoKey; issuer: Issuer; lifetimeMs: number; now?: Date; generation?: number }): Promise<x509.X509Certificate> {
  const now = opts.now ?? new Date();
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: name(`${opts.name} Issuing CA${generation(opts.generation)}`),
    issuer: opts.issuer.cert.subjectName,
    notBefore: now,
    notAfter: new Date(Math.min(now.getTime() + opts.lifetimeMs, opts.issuer.cert.notAfter.getTime())),
    publicKey: opts.publicKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: signingAlgorithm(opts.issuer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      ...(await keyIds(opts.publicKey, opts.issuer.cert)),
    ],
  });
}

/**
 * A cross certificate: the new issuing CA's name and key, signed by the old root. Served in chains
 * during a root rollover, it lets clients that trust only the old root verify leaves of the new
 * issuing CA (old root → cross → leaf keeps within the old root's path length of 1).
 */
export async function createCrossCert(opts: { subject: x509.X509Certificate; subjectKey: CryptoKey; issuer: Issuer; now?: Date }): Promise<x509.X509Certificate> {
  const now = opts.now ?? new Date();
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: opts.subject.subjectName,
    issuer: opts.issuer.cert.subjectName,
    notBefore: now,
    notAfter: new Date(Math.min(opts.subject.notAfter.getTime(), opts.issuer.cert.notAfter.getTime())),
    publicKey: opts.subjectKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: signingAlgorithm(opts.issuer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      ...(await keyIds(opts.subjectKey, opts.issuer.cert)),
    ],
  });
}

export interface LeafRequest {
  kind: 'client' | 'server';
  name: string;
  /** Client roles, one OU each. */
  roles?: readonly string[];
  dns?: readonly string[];
  ip?: readonly string[];
  /** spiffe://TRUST_DOMAIN/client/NAME for clients. */
  uri?: string;
  publicKey: CryptoKey;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export async function createLeaf(req: LeafRequest, issuer: Issuer): Promise<x509.X509Certificate> {
  const client = req.kind === 'client';
  const sans: x509.JsonGeneralName[] = [
    ...(req.uri ? [{ type: 'url' as const, value: req.uri }] : []),
    ...(req.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(req.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const usage = x509.KeyUsageFlags.digitalSignature | (client || req.publicKey.algorithm.name === 'ECDSA' ? 0 : x509.KeyUsageFlags.keyEncipherment);
  return x509.X509CertificateGenerator.create({
    serialNumber: req.serial,
    subject: name(req.name, client ? { OU: req.roles ?? [] } : {}),
    issuer: issuer.cert.subjectName,
    notBefore: req.notBefore,
    notAfter: req.notAfter,
    publicKey: req.publicKey,
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithm(issuer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usage, true),
      new x509.ExtendedKeyUsageExtension([client ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth], false),
      ...(sans.length ? [new x509.SubjectAlternativeNameExtension(sans, false)] : []),
      ...(await keyIds(req.publicKey, issuer.cert)),
    ],
  });
}

/** Validity window for a new leaf: backdated a minute, never past the issuing CA's own notAfter. */
export function leafWindow(ttlMs: number, issuer: x509.X509Certificate, now = new Date()): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(Math.min(now.getTime() + ttlMs, issuer.notAfter.getTime())),
  };
}

export interface RevokedEntry {
  serial: string;
  revokedAt: Date;
  reason?: x509.X509CrlReason;
}

const CRL_NUMBER_OID = '2.5.29.20';

/** DER INTEGER for a non-negative safe integer. */
function derInteger(n: number): Uint8Array<ArrayBuffer> {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  return new Uint8Array([0x02, body.length, ...body]);
}

/** The CRL's extensions (authority key identifier, CRL number) and its DER, signed: linear in the entries. */
export function signCrl(opts: { issuer: Issuer; number: number; entries: readonly RevokedEntry[]; validityMs: number; now?: Date }): BuiltCrl {
  const now = opts.now ?? new Date();
  const aki = (opts.issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension) as x509.SubjectKeyIdentifierExtension).keyId;
  return buildCrl({
    issuerCertDer: new Uint8Array(opts.issuer.cert.rawData),
    issuerKey: opts.issuer.key,
    keyType: opts.issuer.keyType,
    thisUpdate: new Date(now.getTime() - BACKDATE_MS),
    nextUpdate: new Date(now.getTime() + opts.validityMs),
    extensions: [new Uint8Array(new x509.AuthorityKeyIdentifierExtension(aki).rawData), new Uint8Array(new x509.Extension(CRL_NUMBER_OID, false, derInteger(opts.number)).rawData)],
    entries: opts.entries,
  });
}

/** The same CRL as a parsed @peculiar/x509 object (for tools and benchmarks; parsing a large one is slow). */
export async function createCrl(opts: { issuer: Issuer; number: number; entries: readonly RevokedEntry[]; validityMs: number; now?: Date }): Promise<x509.X509Crl> {
  return new x509.X509Crl(new Uint8Array(signCrl(opts).der));
}
