/**
 * Partner side of enrolment and renewal (`broker enroll`, `broker renew`): the key is made here and
 * never sent; a CSR goes to the broker, the certificate comes back and is written beside the key.
 *
 * Enrolment trusts nothing before it checks the pin: GET /.well-known/broker/ca over TLS that is
 * not yet verified, find the certificate whose SHA-256 equals the token's `ca`, and only then POST
 * the token, over TLS verified against that root alone. Nothing secret travels before the check.
 * Files are staged (temp file beside the target, fsynced) and renamed into place only when all
 * of them are written, so a failure leaves the old files as they were.
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { KeyObject, X509Certificate, hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BrokerError, ERRORS, type ErrorCode } from '../errors.ts';
import { generateKeyPair, privateKeyDer, privateKeyPem, signingAlgorithm, type KeyType } from '../pki/keys.ts';
import { PRIVATE_MODE, PUBLIC_MODE, WriteTransaction } from '../pki/files.ts';
import { parseToken } from '../pki/invitations.ts';
import { toPkcs12 } from '../pki/pkcs12.ts';
import { x509 } from '../pki/x509.ts';

const PREFIX = '/.well-known/broker/';
const TIMEOUT_MS = 30_000;

export interface Issued {
  name: string;
  roles: string[];
  serial: string;
  notAfter: string;
  /** Leaf PEM. */
  certificate: string;
  /** Issuing CA PEM. */
  chain: string;
  /** Root(s) PEM. */
  ca: string;
}

export interface WrittenFiles {
  cert: string;
  key: string;
  /** Absent when renewing in place without a CA file (the system roots verified the broker). */
  ca?: string;
  p12?: string;
  p12Password?: string;
}

function pemCerts(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

function brokerUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONNECT_URL', `--url "${url}" is not a URL`, { cause });
  }
  if (u.protocol !== 'https:') throw new BrokerError('BRK_ERR_CONNECT_URL', `--url must be https:// (got ${u.protocol})`);
  return u;
}

/** One HTTPS exchange; the answer's body as text. */
function exchange(base: URL, path: string, tls: RequestOptions, body?: unknown): Promise<{ status: number; text: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      {
        host: base.hostname.replace(/^\[|\]$/g, ''),
        port: base.port || 443,
        path: base.pathname.replace(/\/$/, '') + PREFIX + path,
        method: data === undefined ? 'GET' : 'POST',
        headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        agent: false,
        timeout: TIMEOUT_MS,
        minVersion: 'TLSv1.2',
        ...tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const retryAfter = res.headers['retry-after'];
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), ...(retryAfter === undefined ? {} : { retryAfter }) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on('error', (cause) => reject(new BrokerError('BRK_ERR_ENROLL_CONNECT', `${base.host}: ${(cause as NodeJS.ErrnoException).code ?? ''} ${cause.message}`.trim(), { cause })));
    req.end(data);
  });
}

/** The broker's refusal as the partner's error: its own code when this client knows it. */
function refusal(status: number, text: string, retryAfter?: string): BrokerError {
  let body: { code?: string; message?: string; reqId?: string; reason?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: reported as is
  }
  const code = body.code;
  // no lifecycle endpoints there: the path fell through to route matching
  if (code === 'BRK_ERR_AUTH_REQUIRED' || code === 'BRK_ERR_HTTP_NOT_FOUND') return new BrokerError('BRK_ERR_ENROLL_NOT_ENABLED', `the broker answered ${status} ${code} for ${PREFIX}`);
  const when = retryAfter !== undefined && /^\d+$/.test(retryAfter) ? `; retry after ${retryAfter} s (${new Date(Date.now() + Number(retryAfter) * 1000).toISOString()})` : '';
  const what = `the broker answered ${status}${body.message ? ` "${body.message}"` : ''}${body.reason ? ` (reason: ${body.reason})` : ''}${body.reqId ? ` (request id ${body.reqId})` : ''}${when}`;
  if (code !== undefined && code in ERRORS) return new BrokerError(code as ErrorCode, what);
  return new BrokerError('BRK_ERR_ENROLL_REFUSED', `${what}${code ? ` with code ${code}` : ''}: ${text.slice(0, 200)}`);
}

function issuedOf(a: { status: number; text: string; retryAfter?: string }): Issued {
  const { status, text } = a;
  if (status !== 200) throw refusal(status, text, a.retryAfter);
  const v = JSON.parse(text) as Issued;
  if (typeof v.certificate !== 'string' || typeof v.name !== 'string' || typeof v.ca !== 'string') throw new BrokerError('BRK_ERR_ENROLL_REFUSED', 'the broker\'s answer has no certificate');
  return v;
}

async function keyAndCsr(keyType: KeyType, name: string): Promise<{ keys: CryptoKeyPair; csr: string }> {
  const keys = await generateKeyPair(keyType);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [name] }], keys, signingAlgorithm: signingAlgorithm(keyType) });
  return { keys, csr: csr.toString('pem') };
}

/** Checks that `certPem` belongs to `key` (what the broker certified is the key made here). */
function sameKey(certPem: string, keys: CryptoKeyPair): void {
  const cert = new X509Certificate(certPem);
  if (!cert.checkPrivateKey(KeyObject.from(keys.privateKey))) throw new BrokerError('BRK_ERR_ENROLL_REFUSED', 'the broker returned a certificate for another key');
}

export interface EnrollOptions {
  url: string;
  token: string;
  outDir: string;
  keyType: KeyType;
  force?: boolean;
  /** PKCS#12 password: a NAME.p12 is written when set. */
  p12Password?: string;
  /** Also write it to NAME.p12.pass (0600) when the password was generated here. */
  savePassword?: boolean;
}

export async function enroll(o: EnrollOptions): Promise<{ issued: Issued; files: WrittenFiles }> {
  const token = parseToken(o.token);
  const base = brokerUrl(o.url);
  const name = token.name ?? 'client';
  const planned = plannedFiles(o.outDir, name, o.p12Password !== undefined);
  if (!o.force) clash(planned);
  // 1. the CA, from a connection not yet verified: only public certificates come back
  const ca = await exchange(base, 'ca', { rejectUnauthorized: false });
  if (ca.status !== 200) throw refusal(ca.status, ca.text);
  const pinned = pemCerts(ca.text).find((pem) => hash('sha256', new X509Certificate(pem).raw, 'hex') === token.ca);
  if (pinned === undefined) {
    throw new BrokerError('BRK_ERR_ENROLL_CA_MISMATCH', `no certificate at ${base.origin}${PREFIX}ca has the SHA-256 ${token.ca} the token pins`);
  }
  // 2. the key, here; the CSR and the token, over TLS verified against the pinned root alone
  const { keys, csr } = await keyAndCsr(o.keyType, name);
  const answer = await exchange(base, 'enroll', { ca: pinned, rejectUnauthorized: true }, { token: o.token.trim(), csr });
  const issued = issuedOf(answer);
  sameKey(issued.certificate, keys);
  const files = plannedFiles(o.outDir, issued.name, o.p12Password !== undefined);
  writeFiles(files, issued, keys.privateKey, o);
  return { issued, files };
}

export interface RenewOptions {
  url: string;
  cert: string;
  key: string;
  /** Root(s) that sign the broker's server certificate; default: ca.crt beside --cert if there, else the system roots. */
  ca?: string;
  /** Write NAME.crt, NAME.key and ca.crt here; default: replace --cert, --key (and --ca) in place. */
  outDir?: string;
}

function read(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_ENROLL_FILES', `cannot read the ${what} ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

export async function renew(o: RenewOptions): Promise<{ issued: Issued; files: WrittenFiles }> {
  const base = brokerUrl(o.url);
  const beside = join(dirname(o.cert), 'ca.crt');
  const caFile = o.ca ?? (existsSync(beside) ? beside : undefined);
  const certPem = read(o.cert, 'certificate');
  const keyPem = read(o.key, 'key');
  const caPem = caFile === undefined ? undefined : read(caFile, 'CA file (--ca)');
  let current: X509Certificate;
  try {
    current = new X509Certificate(certPem);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_ENROLL_FILES', `${o.cert} is not a PEM certificate`, { cause });
  }
  const keyType = keyTypeOfCert(current);
  const cn = /CN=([^\n,]+)/.exec(current.subject)?.[1] ?? 'client';
  const { keys, csr } = await keyAndCsr(keyType, cn);
  const answer = await exchange(base, 'renew', { ...(caPem === undefined ? {} : { ca: caPem }), cert: certPem, key: keyPem, rejectUnauthorized: true }, { csr });
  const issued = issuedOf(answer);
  sameKey(issued.certificate, keys);
  const files: WrittenFiles = o.outDir ? plannedFiles(o.outDir, issued.name, false) : { cert: o.cert, key: o.key, ...(caFile === undefined ? {} : { ca: caFile }) };
  writeFiles(files, issued, keys.privateKey, {});
  return { issued, files };
}

/** The new key has the type of the current one (what the partner chose at enrolment). */
function keyTypeOfCert(cert: X509Certificate): KeyType {
  const d = cert.publicKey.asymmetricKeyDetails;
  if (cert.publicKey.asymmetricKeyType === 'ec') return d?.namedCurve === 'secp384r1' ? 'ec-p384' : 'ec-p256';
  return 'rsa-3072';
}

function plannedFiles(dir: string, name: string, p12: boolean): WrittenFiles {
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, 'ca.crt'), ...(p12 ? { p12: join(dir, `${name}.p12`) } : {}) };
}

function clash(f: WrittenFiles): void {
  const there = [f.cert, f.key, f.p12].filter((x): x is string => x !== undefined && existsSync(x));
  if (there.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${there.join(', ')} (nothing was sent to the broker)`);
}

/** All files staged, then renamed into place: a failure leaves the old ones as they were. */
function writeFiles(f: WrittenFiles, issued: Issued, key: CryptoKey, o: { p12Password?: string; savePassword?: boolean }): void {
  const tx = new WriteTransaction().write(f.cert, issued.certificate + issued.chain, PUBLIC_MODE).write(f.key, privateKeyPem(key), PRIVATE_MODE);
  if (f.ca !== undefined) tx.write(f.ca, issued.ca, PUBLIC_MODE);
  if (f.p12 && o.p12Password !== undefined) {
    const chainDer = [...pemCerts(issued.certificate), ...pemCerts(issued.chain), ...pemCerts(issued.ca).slice(0, 1)].map((p) => new X509Certificate(p).raw);
    tx.write(f.p12, toPkcs12({ keyPkcs8Der: privateKeyDer(key), chainDer, password: o.p12Password, friendlyName: issued.name }), PRIVATE_MODE);
    if (o.savePassword) {
      f.p12Password = `${f.p12}.pass`;
      tx.write(f.p12Password, `${o.p12Password}\n`, PRIVATE_MODE);
    }
  }
  try {
    tx.commit();
  } catch (cause) {
    throw new BrokerError('BRK_ERR_ENROLL_FILES', `cannot write the new files: ${(cause as Error).message} (the certificate ${issued.serial} was issued; the old files are unchanged)`, { cause });
  }
}
