/**
 * Key generation, encryption at rest and loading, on Node's own crypto (OpenSSL).
 * CA keys are written as encrypted PKCS#8 (PBES2, PBKDF2-HMAC-SHA256 600k, AES-256-CBC) when a
 * passphrase is given.
 */
import { createCipheriv, createPrivateKey, createPublicKey, KeyObject, pbkdf2Sync, randomBytes, webcrypto } from 'node:crypto';
import { BrokerError } from '../errors.ts';

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

interface KeySpec {
  generate: EcKeyGenParams | RsaHashedKeyGenParams;
  /** WebCrypto import/sign algorithm for a key of this type. */
  algorithm: EcKeyImportParams | RsaHashedImportParams;
  signing: EcdsaParams | Algorithm;
}

const SPECS: Record<KeyType, KeySpec> = {
  'ec-p256': {
    generate: { name: 'ECDSA', namedCurve: 'P-256' },
    algorithm: { name: 'ECDSA', namedCurve: 'P-256' },
    signing: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
  },
  'ec-p384': {
    generate: { name: 'ECDSA', namedCurve: 'P-384' },
    algorithm: { name: 'ECDSA', namedCurve: 'P-384' },
    signing: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
  },
  'rsa-3072': {
    generate: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    signing: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

export function assertKeyType(value: string): KeyType {
  if ((KEY_TYPES as readonly string[]).includes(value)) return value as KeyType;
  throw new BrokerError('BRK_ERR_PKI_KEY_TYPE', `unknown key type "${value}"`);
}

export function signingAlgorithm(type: KeyType): EcdsaParams | Algorithm {
  return SPECS[type].signing;
}

export async function generateKeyPair(type: KeyType): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(SPECS[type].generate, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** PBKDF2 rounds for CA keys at rest (OWASP's figure for PBKDF2-HMAC-SHA256); ~0.1 s here. */
export const KEY_PBKDF2_ITERATIONS = 600_000;

function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const len = body.length;
  const head = len < 0x80 ? Buffer.from([tag, len]) : len < 0x100 ? Buffer.from([tag, 0x81, len]) : Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  return Buffer.concat([head, body]);
}
const oid = (hex: string) => der(0x06, Buffer.from(hex, 'hex'));
const OID_PBES2 = oid('2a864886f70d01050d'); // 1.2.840.113549.1.5.13
const OID_PBKDF2 = oid('2a864886f70d01050c'); // 1.2.840.113549.1.5.12
const OID_HMAC_SHA256 = oid('2a864886f70d0209'); // 1.2.840.113549.2.9
const OID_AES256_CBC = oid('60864801650304012a'); // 2.16.840.1.101.3.4.1.42

function derUint(n: number): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  return der(0x02, Buffer.from(hex, 'hex'));
}

/**
 * Encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256 with KEY_PBKDF2_ITERATIONS, AES-256-CBC), written
 * here because Node's own export is fixed at 2,048 iterations. Any OpenSSL reads it back.
 */
function encryptPkcs8(plainDer: Buffer, passphrase: string): string {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const kek = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, KEY_PBKDF2_ITERATIONS, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', kek, iv);
  const encrypted = Buffer.concat([cipher.update(plainDer), cipher.final()]);
  const kdf = der(0x30, OID_PBKDF2, der(0x30, der(0x04, salt), derUint(KEY_PBKDF2_ITERATIONS), der(0x30, OID_HMAC_SHA256, Buffer.from([0x05, 0x00]))));
  const scheme = der(0x30, OID_AES256_CBC, der(0x04, iv));
  const info = der(0x30, der(0x30, OID_PBES2, der(0x30, kdf, scheme)), der(0x04, encrypted));
  const b64 = info.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${b64}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
}

/** PEM of a private key: encrypted PKCS#8 with the passphrase, plain PKCS#8 without. */
export function privateKeyPem(key: CryptoKey, passphrase?: string): string {
  const obj = KeyObject.from(key);
  if (passphrase) return encryptPkcs8(obj.export({ type: 'pkcs8', format: 'der' }), passphrase);
  return obj.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function privateKeyDer(key: CryptoKey): Buffer {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'der' });
}

/**
 * Reads a (possibly encrypted) PKCS#8 PEM. `file` is named in errors; `what` says whose passphrase
 * a failure is about (the root's has its own codes once the root has its own passphrase).
 */
export function readPrivateKeyObject(pem: string, file: string, passphrase?: string, what: 'ca' | 'root' = 'ca'): KeyObject {
  const encrypted = pem.includes('ENCRYPTED PRIVATE KEY');
  if (encrypted && !passphrase) {
    if (what === 'root') throw new BrokerError('BRK_ERR_USAGE_ROOT_PASSPHRASE_REQUIRED', `the root key ${file} is encrypted with its own passphrase and none was given`);
    throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', `the CA key ${file} is encrypted and no passphrase was given`);
  }
  try {
    return createPrivateKey(encrypted ? { key: pem, format: 'pem', passphrase: passphrase as string } : { key: pem, format: 'pem' });
  } catch (cause) {
    if (encrypted) throw new BrokerError(what === 'root' ? 'BRK_ERR_PKI_BAD_ROOT_PASSPHRASE' : 'BRK_ERR_PKI_BAD_PASSPHRASE', `cannot decrypt ${file} with the ${what === 'root' ? 'root ' : ''}passphrase given`, { cause });
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `${file} does not hold a readable private key`, { cause });
  }
}

/** Loads a (possibly encrypted) PKCS#8 PEM as a signing CryptoKey. `file` is named in errors. */
export async function loadPrivateKey(pem: string, type: KeyType, file: string, passphrase?: string, what: 'ca' | 'root' = 'ca'): Promise<CryptoKey> {
  const obj = readPrivateKeyObject(pem, file, passphrase, what);
  return obj.toCryptoKey(SPECS[type].algorithm, false, ['sign']) as unknown as CryptoKey;
}

/** The same key as encrypted PKCS#8 PEM under another passphrase (`pki root migrate`). */
export function reencryptedKeyPem(key: KeyObject, passphrase: string): string {
  return encryptPkcs8(key.export({ type: 'pkcs8', format: 'der' }), passphrase);
}

/** Whether a private key is the one behind a certificate's public key (SPKI DER). */
export function keyMatches(key: KeyObject, spkiDer: ArrayBuffer | Uint8Array): boolean {
  return createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(Buffer.from(spkiDer as ArrayBuffer));
}

/** The key type of a public key, or undefined when the broker does not issue for it. */
export function keyTypeOf(algorithm: KeyAlgorithm): KeyType | 'rsa' | undefined {
  if (algorithm.name === 'ECDSA') {
    const curve = (algorithm as EcKeyAlgorithm).namedCurve;
    if (curve === 'P-256') return 'ec-p256';
    if (curve === 'P-384') return 'ec-p384';
    return undefined;
  }
  if (algorithm.name === 'RSASSA-PKCS1-v1_5' || algorithm.name === 'RSA-PSS') {
    const bits = (algorithm as RsaKeyAlgorithm).modulusLength;
    return bits >= 2048 ? 'rsa' : undefined;
  }
  return undefined;
}
