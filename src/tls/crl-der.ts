/**
 * Just enough DER to read a CRL: its issuer (raw Name bytes), thisUpdate, nextUpdate, the revoked
 * serials and the CRL number (RFC 5280 5.2.3, the rollback check's order).
 * Iterative and allocation-light, so a CRL with 100,000 entries parses in milliseconds (the
 * general ASN.1 library recurses per element and overflows the stack on such a list).
 */

interface Tlv {
  tag: number;
  /** Start of the content. */
  start: number;
  /** End of the content (exclusive). */
  end: number;
}

function tlv(buf: Uint8Array, at: number): Tlv {
  const tag = buf[at] as number;
  let len = buf[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  const end = start + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { tag, start, end };
}

function time(buf: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(buf.subarray(t.start, t.end)).toString('latin1');
  // UTCTime YYMMDDHHMMSSZ (years 1950-2049), GeneralizedTime YYYYMMDDHHMMSSZ
  const full = t.tag === 0x17 ? `${Number(s.slice(0, 2)) >= 50 ? '19' : '20'}${s}` : s;
  return new Date(Date.UTC(+full.slice(0, 4), +full.slice(4, 6) - 1, +full.slice(6, 8), +full.slice(8, 10), +full.slice(10, 12), +full.slice(12, 14)));
}

export interface CrlFacts {
  issuer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  serials: string[];
  /** The cRLNumber extension, when the CRL has one. */
  number: bigint | undefined;
}

/** DER of the cRLNumber extension's OID, 2.5.29.20. */
const CRL_NUMBER_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x14]);

/** The cRLNumber in a crlExtensions SEQUENCE (the content of the [0] wrapper). */
function crlNumber(der: Uint8Array, list: Tlv): bigint | undefined {
  for (let e = list.start; e < list.end; ) {
    const ext = tlv(der, e);
    const oid = tlv(der, ext.start);
    if (Buffer.from(der.subarray(ext.start, oid.end)).equals(CRL_NUMBER_OID)) {
      let v = tlv(der, oid.end);
      if (v.tag === 0x01) v = tlv(der, v.end); // critical flag
      const int = tlv(der, v.start); // the OCTET STRING holds an INTEGER
      if (v.tag !== 0x04 || int.tag !== 0x02 || int.end === int.start) throw new Error('malformed cRLNumber extension');
      return BigInt(`0x${Buffer.from(der.subarray(int.start, int.end)).toString('hex')}`);
    }
    e = ext.end;
  }
  return undefined;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').replace(/^(00)+(?=.)/, '');

export function readCrl(der: Uint8Array): CrlFacts {
  const outer = tlv(der, 0);
  const tbs = tlv(der, outer.start);
  let at = tbs.start;
  let t = tlv(der, at);
  if (t.tag === 0x02) {
    at = t.end; // version
    t = tlv(der, at);
  }
  at = t.end; // signature algorithm
  const issuerTlv = tlv(der, at);
  const issuer = Buffer.from(der.subarray(at, issuerTlv.end));
  at = issuerTlv.end;
  const thisTlv = tlv(der, at);
  const thisUpdate = time(der, thisTlv);
  at = thisTlv.end;
  let nextUpdate: Date | undefined;
  let number: bigint | undefined;
  const serials: string[] = [];
  if (at < tbs.end) {
    t = tlv(der, at);
    if (t.tag === 0x17 || t.tag === 0x18) {
      nextUpdate = time(der, t);
      at = t.end;
    }
  }
  if (at < tbs.end) {
    t = tlv(der, at);
    if (t.tag === 0x30) {
      for (let e = t.start; e < t.end; ) {
        const entry = tlv(der, e);
        const serial = tlv(der, entry.start);
        serials.push(hex(der.subarray(serial.start, serial.end)));
        e = entry.end;
      }
      at = t.end;
    }
  }
  if (at < tbs.end) {
    t = tlv(der, at);
    if (t.tag === 0xa0) number = crlNumber(der, tlv(der, t.start));
  }
  return { issuer, thisUpdate, nextUpdate, serials, number };
}

/** The raw subject Name of a certificate (DER), to match a CRL's issuer exactly. */
export function certSubject(der: Uint8Array): Buffer {
  const outer = tlv(der, 0);
  const tbs = tlv(der, outer.start);
  let at = tbs.start;
  let t = tlv(der, at);
  if (t.tag === 0xa0) at = t.end; // [0] version
  at = tlv(der, at).end; // serial
  at = tlv(der, at).end; // signature algorithm
  at = tlv(der, at).end; // issuer
  at = tlv(der, at).end; // validity
  const subject = tlv(der, at);
  return Buffer.from(der.subarray(at, subject.end));
}

export function pemBlocks(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64'));
}
