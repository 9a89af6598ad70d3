/**
 * A CRL written straight as DER, in time linear in the number of entries. @peculiar/x509's
 * generator checks every new entry against all the ones before it (quadratic: 10 s at 20,000
 * entries), so the CA builds the TBSCertList itself: each entry is encoded once into a list of
 * buffers, concatenated once, and signed once with Node's crypto. The bytes are the ones the
 * library would produce for the same input (test/unit/crl-builder.test.ts holds the two together).
 */
import { KeyObject, sign } from 'node:crypto';
import { BrokerError } from '../errors.ts';
import type { KeyType } from './keys.ts';

/** Reason codes (RFC 5280 5.3.1) as the numbers the DER carries. */
export type ReasonCode = number;

export interface CrlEntryInput {
  /** Hex, as the inventory holds it. */
  serial: string;
  revokedAt: Date;
  /** Omitted (or 0, "unspecified") writes no reason extension, as RFC 5280 asks. */
  reason?: ReasonCode;
}

export interface CrlInput {
  /** DER of the issuing CA certificate: its subject is copied byte for byte into the CRL. */
  issuerCertDer: Uint8Array;
  issuerKey: CryptoKey;
  keyType: KeyType;
  thisUpdate: Date;
  nextUpdate: Date;
  /** DER of each CRL extension (Extension SEQUENCEs), in order. */
  extensions: readonly Uint8Array[];
  entries: readonly CrlEntryInput[];
}

export interface BuiltCrl {
  der: Buffer;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Number of revoked entries listed. */
  count: number;
}

/** Tag + DER length + content, for content given as parts (concatenated once). */
function tlv(tag: number, parts: readonly Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  let head: number[];
  if (len < 0x80) head = [tag, len];
  else if (len < 0x100) head = [tag, 0x81, len];
  else if (len < 0x10000) head = [tag, 0x82, len >> 8, len & 0xff];
  else if (len < 0x1000000) head = [tag, 0x83, len >> 16, (len >> 8) & 0xff, len & 0xff];
  else head = [tag, 0x84, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff];
  return Buffer.concat([Buffer.from(head), ...parts], head.length + len);
}

const SEQUENCE = 0x30;

/** DER INTEGER from a hex serial: minimal, positive. */
function integerFromHex(hex: string): Buffer {
  let h = hex.replace(/^(00)+(?=..)/, '');
  if (h.length % 2) h = `0${h}`;
  if (!/^[0-9a-fA-F]+$/.test(h)) throw new BrokerError('BRK_ERR_PKI_INVENTORY_CORRUPT', `serial "${hex}" is not hexadecimal`);
  let body = Buffer.from(h, 'hex');
  while (body.length > 1 && body[0] === 0 && ((body[1] as number) & 0x80) === 0) body = body.subarray(1);
  if ((body[0] as number) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(0x02, [body]);
}

const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), whole seconds. */
function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  return y >= 1950 && y <= 2049 ? tlv(0x17, [Buffer.from(`${two(y % 100)}${rest}`, 'latin1')]) : tlv(0x18, [Buffer.from(`${y}${rest}`, 'latin1')]);
}

/** id-ce-cRLReasons (2.5.29.21) extensions for each reason code, made once. */
const REASON_EXTENSIONS = new Map<number, Buffer>();
function reasonExtensions(code: number): Buffer {
  let ext = REASON_EXTENSIONS.get(code);
  if (!ext) {
    const extension = tlv(SEQUENCE, [Buffer.from('0603551d15', 'hex'), tlv(0x04, [tlv(0x0a, [Buffer.from([code])])])]);
    ext = tlv(SEQUENCE, [extension]);
    REASON_EXTENSIONS.set(code, ext);
  }
  return ext;
}

const ALGORITHMS: Record<KeyType, { id: Buffer; hash: string }> = {
  'ec-p256': { id: Buffer.from('300a06082a8648ce3d040302', 'hex'), hash: 'sha256' },
  'ec-p384': { id: Buffer.from('300a06082a8648ce3d040303', 'hex'), hash: 'sha384' },
  'rsa-3072': { id: Buffer.from('300d06092a864886f70d01010b0500', 'hex'), hash: 'sha256' },
};

/** Start and end of the content of the TLV at `at`. */
function span(buf: Uint8Array, at: number): { start: number; end: number } {
  let len = buf[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  return { start, end: start + len };
}

/** The subject Name of a certificate, as the DER bytes it holds. */
export function subjectDer(cert: Uint8Array): Buffer {
  const tbs = span(cert, span(cert, 0).start);
  let at = tbs.start;
  if (cert[at] === 0xa0) at = span(cert, at).end; // [0] version
  for (let field = 0; field < 4; field++) at = span(cert, at).end; // serial, signature, issuer, validity
  return Buffer.from(cert.subarray(at, span(cert, at).end));
}

/** Builds and signs a v2 CRL. Throws if a serial is listed twice (the inventory would be corrupt). */
export function buildCrl(o: CrlInput): BuiltCrl {
  const alg = ALGORITHMS[o.keyType];
  const thisUpdate = new Date(Math.floor(o.thisUpdate.getTime() / 1000) * 1000);
  const nextUpdate = new Date(Math.floor(o.nextUpdate.getTime() / 1000) * 1000);
  const seen = new Set<string>();
  const entries: Buffer[] = new Array(o.entries.length);
  for (let i = 0; i < o.entries.length; i++) {
    const e = o.entries[i] as CrlEntryInput;
    const serial = integerFromHex(e.serial);
    const key = serial.toString('hex');
    if (seen.has(key)) throw new BrokerError('BRK_ERR_PKI_INVENTORY_CORRUPT', `serial ${e.serial} is revoked twice in the inventory`);
    seen.add(key);
    entries[i] = tlv(SEQUENCE, e.reason ? [serial, time(e.revokedAt), reasonExtensions(e.reason)] : [serial, time(e.revokedAt)]);
  }
  const tbsParts: Uint8Array[] = [Buffer.from('020101', 'hex'), alg.id, subjectDer(o.issuerCertDer), time(thisUpdate), time(nextUpdate)];
  if (entries.length) tbsParts.push(tlv(SEQUENCE, entries));
  if (o.extensions.length) tbsParts.push(tlv(0xa0, [tlv(SEQUENCE, o.extensions)]));
  const tbs = tlv(SEQUENCE, tbsParts);
  let signature: Buffer;
  try {
    signature = sign(alg.hash, tbs, { key: KeyObject.from(o.issuerKey), dsaEncoding: 'der' });
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_CRYPTO', `cannot sign the CRL: ${(cause as Error).message}`, { cause });
  }
  const der = tlv(SEQUENCE, [tbs, alg.id, tlv(0x03, [Buffer.from([0]), signature])]);
  return { der, thisUpdate, nextUpdate, count: entries.length };
}
