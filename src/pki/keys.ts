/**
 * Key generation, encryption at rest and loading, on Node's own crypto (OpenSSL).
 * CA keys are written as encrypted PKCS#8 (PBES2, AES-256-CBC) when a passphrase is given.
 */
import { createPrivateKey, KeyObject, webcrypto } from 'node:crypto';
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

/** PEM of a private key: encrypted PKCS#8 with the passphrase, plain PKCS#8 without. */
export function privateKeyPem(key: CryptoKey, passphrase?: string): string {
  const obj = KeyObject.from(key);
  const pem = passphrase
    ? obj.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase })
    : obj.export({ type: 'pkcs8', format: 'pem' });
  return pem.toString();
}

export function privateKeyDer(key: CryptoKey): Buffer {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'der' });
}

/** Loads a (possibly encrypted) PKCS#8 PEM as a signing CryptoKey. `file` is named in errors. */
export async function loadPrivateKey(pem: string, type: KeyType, file: string, passphrase?: string): Promise<CryptoKey> {
  const encrypted = pem.includes('ENCRYPTED PRIVATE KEY');
  if (encrypted && !passphrase) {
    throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', `the CA key ${file} is encrypted and no passphrase was given`);
  }
  let obj: KeyObject;
  try {
    obj = createPrivateKey(encrypted ? { key: pem, format: 'pem', passphrase: passphrase as string } : { key: pem, format: 'pem' });
  } catch (cause) {
    if (encrypted) throw new BrokerError('BRK_ERR_PKI_BAD_PASSPHRASE', `cannot decrypt ${file} with the passphrase given`, { cause });
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `${file} does not hold a readable private key`, { cause });
  }
  return obj.toCryptoKey(SPECS[type].algorithm, false, ['sign']) as unknown as CryptoKey;
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
