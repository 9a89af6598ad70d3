/**
 * Just enough DER to read a CRL: its issuer (raw Name bytes), nextUpdate and the revoked serials.
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
  nextUpdate: Date | undefined;
  serials: string[];
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
  at = tlv(der, at).end; // thisUpdate
  let nextUpdate: Date | undefined;
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
    }
  }
  return { issuer, nextUpdate, serials };
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
