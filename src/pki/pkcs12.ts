/**
 * PKCS#12 (.p12 / .pfx) export of an identity: private key plus its certificate chain.
 *
 * Why not node-forge's `pkcs12.toPkcs12Asn1`: it only takes forge RSA key objects and parsed forge
 * certificates, and forge cannot parse EC certificates, so it is useless for our EC P-256/P-384
 * identities. Instead the PFX is assembled here with `forge.asn1` (RFC 7292), using forge only for
 * the crypto primitives. Certificates go in as raw DER inside CertBags and are never parsed by forge.
 *
 * Layout (the same shape OpenSSL 3 writes by default, with stronger iteration counts):
 *
 *   PFX { version 3,
 *         authSafe data [ EncryptedData(SafeContents[CertBag leaf, CertBag intermediate..., CertBag root]),
 *                         Data(SafeContents[PKCS8ShroudedKeyBag]) ],
 *         macData HMAC-SHA256 }
 *
 * - key bag and certificate SafeContents: PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC, 16-byte salts;
 * - MAC: HMAC-SHA256 keyed with the PKCS#12 KDF (RFC 7292 B.2) over SHA-256;
 * - the key bag and the leaf's cert bag carry localKeyId (SHA-1 of the leaf DER, as OpenSSL does)
 *   and, when given, friendlyName (which keytool shows as the alias).
 *
 * Password encoding differs per mechanism, as the standards and OpenSSL/JDK expect:
 * PBES2 (PBKDF2) takes the UTF-8 bytes of the password, while the PKCS#12 MAC KDF takes it as a
 * BMPString (UTF-16BE plus a 0x0000 terminator) — forge's `pkcs12.generateKey` builds that itself
 * from the JS string's UTF-16 code units, so it must get the plain string, not UTF-8 bytes.
 * Note: JDK 17 keytool refuses any PBES2 PKCS#12 with a non-ASCII password ("Password is not
 * ASCII"), OpenSSL-made files included; OpenSSL 3 opens them fine.
 *
 * Cost: forge's PBKDF2 with an HMAC-SHA256 PRF runs in pure JavaScript (~5-6 µs per iteration),
 * so the counts below keep one export at about 0.15-0.2 s (measured on a 2-core VM; 16k/32k was
 * already ~0.3 s cold). The MAC gets twice the PBKDF2 count because one PKCS#12 KDF iteration is
 * one SHA-256 compression where a PBKDF2-HMAC iteration is two: that way the MAC is not a cheaper
 * password-guessing oracle than the encrypted bags.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { BrokerError } from '../errors.ts';

export interface Pkcs12Input {
  /** Unencrypted PKCS#8 PrivateKeyInfo DER (EC P-256/P-384 or RSA). */
  keyPkcs8Der: Buffer;
  /** Certificate DERs, leaf first: [leaf, intermediate, root]. */
  chainDer: Buffer[];
  /** Any Unicode text (non-ASCII is fine); must be non-empty. */
  password: string;
  /** Shown as the alias by keytool and as the name by OS key stores, e.g. the identity name. */
  friendlyName?: string;
}

/** PBKDF2 iterations for the key bag and the certificate SafeContents. */
const PBES2_ITERATIONS = 12_000;
/** PKCS#12 KDF iterations for the MAC key (see the top comment for why it is twice PBES2's). */
const MAC_ITERATIONS = 24_000;
const SALT_BYTES = 16;

const OID = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  pkcs8ShroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  sha256: '2.16.840.1.101.3.4.2.1',
} as const;

const { asn1 } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

const seq = (items: forge.asn1.Asn1[]) => asn1.create(U, T.SEQUENCE, true, items);
const oid = (dotted: string) => asn1.create(U, T.OID, false, asn1.oidToDer(dotted).getBytes());
const octets = (bytes: string) => asn1.create(U, T.OCTETSTRING, false, bytes);
const int = (n: number) => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());
/** `[0] EXPLICIT` wrapper. */
const explicit0 = (inner: forge.asn1.Asn1) => asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [inner]);
const der = (node: forge.asn1.Asn1) => asn1.toDer(node).getBytes();
const binary = (buf: Buffer) => buf.toString('binary');

/** DER `SET OF`: elements sorted by their encodings (X.690 11.6). */
function setOf(items: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  const sorted = items.map((item) => ({ item, bytes: Buffer.from(der(item), 'binary') }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((e) => e.item);
  return asn1.create(U, T.SET, true, sorted);
}

/** SafeBag { bagId, [0] EXPLICIT bagValue, bagAttributes SET OF Attribute OPTIONAL } */
function safeBag(bagId: string, value: forge.asn1.Asn1, attributes: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  const bag = [oid(bagId), explicit0(value)];
  if (attributes.length > 0) bag.push(setOf(attributes));
  return seq(bag);
}

function attribute(type: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return seq([oid(type), setOf([value])]);
}

/** ContentInfo of type data: the content is the DER of `inner` inside an OCTET STRING. */
function dataContentInfo(inner: forge.asn1.Asn1): forge.asn1.Asn1 {
  return seq([oid(OID.data), explicit0(octets(der(inner)))]);
}

/** PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) of `node`'s DER; forge returns SEQUENCE { algId, OCTET STRING }. */
function pbes2Encrypt(node: forge.asn1.Asn1, passwordUtf8: string): { algorithm: forge.asn1.Asn1; ciphertext: string } {
  const encrypted = forge.pki.encryptPrivateKeyInfo(node, passwordUtf8, {
    algorithm: 'aes256',
    prfAlgorithm: 'sha256',
    count: PBES2_ITERATIONS,
    saltSize: SALT_BYTES,
  });
  const [algorithm, ciphertext] = encrypted.value as forge.asn1.Asn1[];
  if (algorithm === undefined || ciphertext === undefined || typeof ciphertext.value !== 'string') {
    throw new Error('unexpected EncryptedPrivateKeyInfo shape from node-forge');
  }
  return { algorithm, ciphertext: ciphertext.value };
}

function checkInput(input: Pkcs12Input): void {
  const { keyPkcs8Der, chainDer, password } = input;
  if (typeof password !== 'string' || password.length === 0) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'a PKCS#12 export needs a non-empty password');
  }
  if (!password.isWellFormed()) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'the PKCS#12 password is not valid Unicode (lone surrogate)');
  }
  if (chainDer.length === 0) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'a PKCS#12 export needs at least the leaf certificate');
  }
  let certs: X509Certificate[];
  try {
    certs = chainDer.map((d) => new X509Certificate(d));
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'a certificate for the PKCS#12 export is not valid DER', { cause });
  }
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!certs[i]!.checkIssued(certs[i + 1]!)) {
      throw new BrokerError('BRK_ERR_PKI_CRYPTO', `PKCS#12 chain is not leaf-first: certificate ${i + 1} was not issued by certificate ${i + 2}`);
    }
  }
  let key;
  try {
    key = createPrivateKey({ key: keyPkcs8Der, format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'the private key for the PKCS#12 export is not unencrypted PKCS#8 DER', { cause });
  }
  if (!certs[0]!.checkPrivateKey(key)) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', 'the private key does not match the leaf certificate');
  }
}

/** Builds a password-protected PKCS#12 file (DER) holding the key and its chain; see the top comment. */
export function toPkcs12(input: Pkcs12Input): Buffer {
  checkInput(input);
  const { keyPkcs8Der, chainDer, password, friendlyName } = input;
  try {
    const passwordUtf8 = forge.util.encodeUtf8(password);

    // forge's parser re-encodes what it parsed; insist that this is byte-exact so the key is untouched.
    const keyInfo = asn1.fromDer(binary(keyPkcs8Der));
    if (der(keyInfo) !== binary(keyPkcs8Der)) {
      throw new Error('PKCS#8 key does not survive a DER round trip through node-forge');
    }

    const leafDer = chainDer[0]!;
    const idAttributes = [attribute(OID.localKeyId, octets(binary(createHash('sha1').update(leafDer).digest())))];
    if (friendlyName !== undefined && friendlyName !== '') {
      // forge writes a BMPSTRING value as UTF-16BE code units, so it takes the JS string as is.
      idAttributes.push(attribute(OID.friendlyName, asn1.create(U, T.BMPSTRING, false, friendlyName)));
    }

    const certBags = chainDer.map((certDer, i) =>
      safeBag(OID.certBag, seq([oid(OID.x509Certificate), explicit0(octets(binary(certDer)))]), i === 0 ? idAttributes : []),
    );
    const certs = pbes2Encrypt(seq(certBags), passwordUtf8);
    // ContentInfo { encryptedData, [0] EncryptedData { version 0, EncryptedContentInfo { data, algId, [0] IMPLICIT ciphertext } } }
    const certsContentInfo = seq([
      oid(OID.encryptedData),
      explicit0(seq([
        int(0),
        seq([oid(OID.data), certs.algorithm, asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, certs.ciphertext)]),
      ])),
    ]);

    const shroudedKey = forge.pki.encryptPrivateKeyInfo(keyInfo, passwordUtf8, {
      algorithm: 'aes256',
      prfAlgorithm: 'sha256',
      count: PBES2_ITERATIONS,
      saltSize: SALT_BYTES,
    });
    const keyContentInfo = dataContentInfo(seq([safeBag(OID.pkcs8ShroudedKeyBag, shroudedKey, idAttributes)]));

    const authSafeDer = der(seq([certsContentInfo, keyContentInfo]));

    // MacData { DigestInfo { sha256, digest }, macSalt, iterations }; the MAC covers the AuthenticatedSafe DER.
    const macSalt = forge.random.getBytesSync(SALT_BYTES);
    const macKey = forge.pkcs12.generateKey(password, forge.util.createBuffer(macSalt), 3, MAC_ITERATIONS, 32, forge.md.sha256.create());
    const hmac = forge.hmac.create();
    hmac.start('sha256', macKey);
    hmac.update(authSafeDer);
    const macData = seq([
      seq([seq([oid(OID.sha256), asn1.create(U, T.NULL, false, '')]), octets(hmac.digest().getBytes())]),
      octets(macSalt),
      int(MAC_ITERATIONS),
    ]);

    const pfx = seq([int(3), seq([oid(OID.data), explicit0(octets(authSafeDer))]), macData]);
    return Buffer.from(der(pfx), 'binary');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', `could not build the PKCS#12 file: ${(cause as Error).message}`, { cause });
  }
}
