/**
 * The forward listener's SSRF guard: where may a partner's request go?
 *
 * Pure apart from the one DNS lookup (injectable). A destination host is either an IP literal, parsed here in every
 * spelling the resolvers and URL parsers accept (decimal, octal, hex and short IPv4 forms; IPv6 in brackets or not,
 * compressed, with embedded IPv4), or a DNS name, resolved once. Every address is checked against the deny set; the
 * caller connects to the address returned and never resolves again, so DNS rebinding cannot switch it.
 */
import { lookup as dnsLookup } from 'node:dns/promises';

export type SpecialRange =
  | 'loopback' | 'private' | 'link-local' | 'metadata' | 'cgnat' | 'ula' | 'site-local' | 'multicast' | 'unspecified'
  | 'broadcast' | 'reserved' | 'documentation' | 'benchmarking' | 'ipv4-compatible' | 'nat64' | '6to4' | 'teredo';

export type LookupFn = (name: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;

export type Destination =
  | { ok: true; host: string; address: string; family: 4 | 6; literal: boolean }
  | { ok: false; code: 'BRK_ERR_FORWARD_BAD_HOST' | 'BRK_ERR_FORWARD_PRIVATE' | 'BRK_ERR_FORWARD_RESOLVE'; reason: string };

export const DEFAULT_RESOLVE_TIMEOUT_MS = 5000;

const MAX_V4 = 0xffffffff;

/** One IPv4 part as inet_aton / WHATWG read it: 0x hex, 0-led octal, else decimal; undefined when not a number. */
function v4Part(p: string): number | undefined {
  if (/^0x[0-9a-f]*$/i.test(p)) return p.length === 2 ? 0 : parseInt(p.slice(2), 16);
  if (/^0[0-7]+$/.test(p)) return parseInt(p.slice(1), 8);
  if (/^(0|[1-9][0-9]*)$/.test(p)) return Number(p);
  return undefined;
}

/** IPv4 in any inet_aton spelling (1-4 parts, the last filling the remaining bytes; one trailing dot) → 32-bit value. */
function parseV4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (parts.length > 4) return undefined;
  let value = 0;
  for (let i = 0; i < parts.length; i++) {
    const n = v4Part(parts[i] as string);
    if (n === undefined) return undefined;
    const last = i === parts.length - 1;
    const max = last ? 2 ** (8 * (5 - parts.length)) - 1 : 255;
    if (n > max) return undefined;
    value += last ? n : n * 2 ** (8 * (3 - i));
  }
  return value;
}

/** Strict dotted quad (the IPv4 tail of an IPv6 literal): four decimal parts, no leading zeros. */
function parseDottedQuad(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const p = m[i] as string;
    if ((p.length > 1 && p[0] === '0') || Number(p) > 255) return undefined;
    value = value * 256 + Number(p);
  }
  return value;
}

/** IPv6 (no brackets, no zone) → eight 16-bit groups. */
function parseV6(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const pieces = h.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i] as string;
      if (/^[0-9a-f]{1,4}$/i.test(p)) out.push(parseInt(p, 16));
      else if (i === pieces.length - 1 && p.includes('.')) {
        const v4 = parseDottedQuad(p);
        if (v4 === undefined) return undefined;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else return undefined;
    }
    return out;
  };
  const head = groups(halves[0] as string);
  if (halves.length === 1) return head?.length === 8 ? head : undefined;
  const tail = groups(halves[1] as string);
  // an embedded IPv4 may only end the address
  if (!head || !tail || (halves[0] as string).includes('.') || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function formatV4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** RFC 5952: lower case, no leading zeros, the longest run (2+) of zero groups as "::" (the first on a tie). */
function formatV6(g: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

interface Literal { address: string; family: 4 | 6; v4?: number; v6?: number[]; zone?: string }

/** Parses an IP literal (IPv6 optionally in brackets and with a "%zone" or URL-style "%25zone"). */
function parseLiteral(host: string): Literal | undefined {
  let h = host;
  const bracketed = h.startsWith('[') && h.endsWith(']');
  if (bracketed) h = h.slice(1, -1);
  if (h.includes(':')) {
    const pct = h.indexOf('%');
    let zone: string | undefined;
    if (pct >= 0) {
      zone = h.slice(pct + 1).replace(/^25(?=.)/, '');
      h = h.slice(0, pct);
      if (!/^[A-Za-z0-9_.~-]{1,64}$/.test(zone)) return undefined;
    }
    const g = parseV6(h);
    if (!g) return undefined;
    return { address: formatV6(g), family: 6, v6: g, ...(zone === undefined ? {} : { zone }) };
  }
  if (bracketed) return undefined;
  const v = parseV4(h);
  return v === undefined ? undefined : { address: formatV4(v), family: 4, v4: v };
}

/** An IP literal in any spelling → its canonical form, or undefined when `host` is not an IP literal (a name). */
export function normaliseIpLiteral(host: string): { address: string; family: 4 | 6 } | undefined {
  const l = parseLiteral(host);
  return l && { address: l.address, family: l.family };
}

/** [base, prefix length, range]; the first match wins, so narrower blocks come before the blocks holding them. */
const V4_RANGES: Array<[number, number, SpecialRange]> = ([
  ['169.254.169.254', 32, 'metadata'], // cloud instance metadata (AWS, GCP, Azure, ...)
  ['100.100.100.200', 32, 'metadata'], // Alibaba Cloud metadata
  ['255.255.255.255', 32, 'broadcast'],
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'cgnat'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'], // IETF protocol assignments
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'], // deprecated 6to4 relay anycast
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
] as const).map(([a, bits, r]) => [parseV4(a) as number, bits, r]);

function v4Range(v: number): SpecialRange | undefined {
  for (const [base, bits, range] of V4_RANGES) {
    const mask = bits === 0 ? 0 : (MAX_V4 << (32 - bits)) >>> 0;
    if (((v & mask) >>> 0) === base) return range;
  }
  return undefined;
}

/** [groups of the prefix, prefix length, range]; checked in order after the embedded-IPv4 forms. */
const V6_RANGES: Array<[number[], number, SpecialRange]> = ([
  ['fd00:ec2::254', 128, 'metadata'], // AWS instance metadata over IPv6
  ['64:ff9b:1::', 48, 'nat64'], // local-use NAT64 (RFC 8215): the operator maps it anywhere
  ['100::', 64, 'reserved'], // discard-only
  ['2001::', 32, 'teredo'],
  ['2001:2::', 48, 'benchmarking'],
  ['2001::', 23, 'reserved'], // IETF protocol assignments
  ['2001:db8::', 32, 'documentation'],
  ['3fff::', 20, 'documentation'],
  ['5f00::', 16, 'reserved'], // SRv6 SIDs
  ['fc00::', 7, 'ula'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
] as const).map(([a, bits, r]) => [parseV6(a) as number[], bits, r]);

function v6InPrefix(g: number[], base: number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((g[i] as number) & mask) !== (base[i] as number)) return false;
  }
  return true;
}

/**
 * The IPv4 address an IPv6 address stands for, where it carries one a host would end up reaching: IPv4-mapped
 * (::ffff:0:0/96), IPv4-compatible (::/96), NAT64 well-known prefix (64:ff9b::/96) and 6to4 (2002::/16).
 */
function embeddedV4(g: number[]): { v4: number; form: 'mapped' | 'compatible' | 'nat64' | '6to4' } | undefined {
  const low = ((g[6] as number) * 0x10000 + (g[7] as number)) >>> 0;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0) {
    if (g[5] === 0xffff) return { v4: low, form: 'mapped' };
    if (g[5] === 0 && low > 1) return { v4: low, form: 'compatible' };
  }
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0) return { v4: low, form: 'nat64' };
  if (g[0] === 0x2002) return { v4: ((g[1] as number) * 0x10000 + (g[2] as number)) >>> 0, form: '6to4' };
  return undefined;
}

function v6Range(g: number[]): SpecialRange | undefined {
  if (g.every((x) => x === 0)) return 'unspecified';
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return 'loopback';
  const e = embeddedV4(g);
  if (e) {
    const inner = v4Range(e.v4);
    if (inner) return inner;
    if (e.form === 'compatible') return 'ipv4-compatible'; // deprecated (RFC 4291): no legitimate destination uses it
    if (e.form === '6to4') return '6to4'; // deprecated (RFC 7526): relays would carry it anywhere
    return undefined; // mapped (the caller connects over IPv4) or NAT64 to a public IPv4 address
  }
  for (const [base, bits, range] of V6_RANGES) if (v6InPrefix(g, base, bits)) return range;
  // only 2000::/3 is allocated for global unicast; everything else is reserved by the IETF
  return ((g[0] as number) & 0xe000) === 0x2000 ? undefined : 'reserved';
}

/** Why an address is special (the deny set), or undefined for an ordinary public address. */
export function specialRange(address: string, family: 4 | 6): SpecialRange | undefined {
  const l = parseLiteral(address);
  if (!l || l.family !== family) return 'reserved'; // not an address of that family: never a destination
  return l.v4 !== undefined ? v4Range(l.v4) : v6Range(l.v6 as number[]);
}

/**
 * A DNS name the resolver may be asked for: 1-253 characters of dot-separated labels of 1-63 letters, digits, "-"
 * (not first or last) and "_"; one trailing dot allowed. A last label that reads as a number (decimal or 0x hex) is
 * refused: such hosts are IPv4 spellings (WHATWG URL "ends in a number"), never names, and resolvers read them
 * differently. Returns the name in lower case without the trailing dot.
 */
function hostName(host: string): string | undefined {
  const name = (host.endsWith('.') ? host.slice(0, -1) : host).toLowerCase();
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  for (const label of labels) if (!/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)) return undefined;
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/.test(labels[labels.length - 1] as string)) return undefined;
  return name;
}

async function defaultLookup(name: string): Promise<Array<{ address: string; family: 4 | 6 }>> {
  const all = await dnsLookup(name, { all: true, order: 'verbatim' });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`lookup timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

type Checked = { ok: true; address: string; family: 4 | 6 } | Extract<Destination, { ok: false }>;

/** One address against the deny set. IPv4-mapped addresses are checked, and returned, as the IPv4 they map. */
function check(what: string, l: Literal, allowPrivate: (address: string, family: 4 | 6) => boolean): Checked {
  let { address, family } = l;
  const e = l.v6 && embeddedV4(l.v6);
  if (e?.form === 'mapped') { address = formatV4(e.v4); family = 4; }
  const range = specialRange(address, family);
  if (range !== undefined && !allowPrivate(address, family)) {
    return { ok: false, code: 'BRK_ERR_FORWARD_PRIVATE', reason: `${what} is ${address}${e && e.form !== 'mapped' ? ` (embeds ${formatV4(e.v4)})` : ''} (${range}); no allowPrivate range of the rule covers it` };
  }
  if (l.zone !== undefined) {
    // a zone id only means something for link-local and scoped multicast, and the caller connects without one
    return { ok: false, code: range === undefined ? 'BRK_ERR_FORWARD_BAD_HOST' : 'BRK_ERR_FORWARD_PRIVATE', reason: `${what} has a zone id (%${l.zone}); zone ids are refused` };
  }
  return { ok: true, address, family };
}

/**
 * Resolves `host` once (an IP literal is not resolved) and checks EVERY resolved address against the deny set; an
 * address in a special range passes only when `allowPrivate(address, family)` says so (a rule's allowPrivate CIDRs).
 * Returns the address to connect to (the one checked: the caller connects to it, never resolves again).
 */
export async function resolveDestination(
  host: string,
  o: { allowPrivate(address: string, family: 4 | 6): boolean; lookup?: LookupFn; timeoutMs?: number },
): Promise<Destination> {
  const literal = parseLiteral(host);
  if (literal) {
    const c = check(`the destination ${JSON.stringify(host)}`, literal, o.allowPrivate);
    return c.ok ? { ok: true, host: c.address, address: c.address, family: c.family, literal: true } : c;
  }
  const name = hostName(host);
  if (name === undefined) {
    return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: `${JSON.stringify(host.slice(0, 300))} is not a host name or IP address` };
  }
  let answers: Array<{ address: string; family: 4 | 6 }>;
  try {
    answers = await withTimeout((o.lookup ?? defaultLookup)(name), o.timeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS);
  } catch (err) {
    const why = err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : String(err);
    return { ok: false, code: 'BRK_ERR_FORWARD_RESOLVE', reason: `resolving ${name} failed: ${why}` };
  }
  if (answers.length === 0) return { ok: false, code: 'BRK_ERR_FORWARD_RESOLVE', reason: `${name} resolved to no address` };
  let first: Checked | undefined;
  // every answer must pass: picking a "good" one would let a name that also points inside slip through
  for (const a of answers) {
    const l = parseLiteral(a.address);
    if (!l || l.family !== a.family) return { ok: false, code: 'BRK_ERR_FORWARD_RESOLVE', reason: `${name} resolved to ${JSON.stringify(a.address)}, not an IPv${a.family} address` };
    const c = check(`${name} → ${a.address}`, l, o.allowPrivate);
    if (!c.ok) return c;
    first ??= c;
  }
  const f = first as { ok: true; address: string; family: 4 | 6 };
  return { ok: true, host: name, address: f.address, family: f.family, literal: false };
}
