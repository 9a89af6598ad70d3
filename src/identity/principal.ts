/**
 * Peer certificate → Principal. Pure: it reads the fields Node already parsed and decides.
 * Identity comes from structured fields (never from a DN string): exactly one CN is the name,
 * every OU is a role, then the first matching `identities` rule adds its roles.
 */
import type { IdentityRule } from '../config/index.ts';
import { globToRegExp } from './glob.ts';

export interface Principal {
  readonly name: string;
  readonly roles: readonly string[];
  /** Lower-case hex, no colons, no leading zero bytes. */
  readonly serial: string;
  /** SHA-256 of the DER, 64 lower-case hex digits. */
  readonly fingerprint: string;
  /** RFC 4514-style subject, most specific first (for XFCC). */
  readonly subject: string;
  readonly uri?: string;
  readonly sans: readonly string[];
  readonly notAfter: Date;
}

/** The subset of Node's `PeerCertificate` that identity needs (so tests can build one by hand). */
export interface PeerCertLike {
  subject?: Record<string, string | string[] | undefined> | null;
  subjectaltname?: string;
  serialNumber?: string;
  fingerprint256?: string;
  ext_key_usage?: string[];
  valid_to?: string;
}

export const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

export type IdentityResult = { ok: true; principal: Principal } | { ok: false; reason: string; detail: string };

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Splits Node's subjectaltname ("DNS:a, URI:b", values JSON-quoted when unsafe) into "TYPE:value". */
export function parseSans(text: string | undefined): string[] {
  if (!text) return [];
  const out: string[] = [];
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null && m[0] !== '') {
    const raw = m[2] as string;
    out.push(`${m[1]}:${raw.startsWith('"') ? (JSON.parse(raw) as string) : raw}`);
  }
  return out;
}

const sansOf = (sans: readonly string[], type: string) => sans.filter((s) => s.startsWith(`${type}:`)).map((s) => s.slice(type.length + 1));

interface CompiledRule {
  test(cert: { subject: Record<string, string[]>; sans: readonly string[]; serial: string; fingerprint: string }): boolean;
  roles: readonly string[];
}

const normHex = (s: string) => s.toLowerCase().replace(/:/g, '').replace(/^(00)+(?=.)/, '');

export function compileIdentityRules(rules: readonly IdentityRule[]): readonly CompiledRule[] {
  return rules.map((rule) => {
    const m = rule.match;
    const checks: Array<(c: Parameters<CompiledRule['test']>[0]) => boolean> = [];
    const anyOf = (values: (c: Parameters<CompiledRule['test']>[0]) => string[], glob: string, ci: boolean) => {
      const re = globToRegExp(glob, ci);
      checks.push((c) => values(c).some((v) => re.test(v)));
    };
    if (m.cn !== undefined) anyOf((c) => c.subject.CN ?? [], m.cn, false);
    if (m.ou !== undefined) anyOf((c) => c.subject.OU ?? [], m.ou, false);
    if (m.o !== undefined) anyOf((c) => c.subject.O ?? [], m.o, false);
    if (m.uri !== undefined) anyOf((c) => sansOf(c.sans, 'URI'), m.uri, false);
    if (m.dns !== undefined) anyOf((c) => sansOf(c.sans, 'DNS'), m.dns, true);
    if (m.email !== undefined) anyOf((c) => [...sansOf(c.sans, 'email'), ...(c.subject.emailAddress ?? [])], m.email, true);
    if (m.fingerprint !== undefined) {
      const fp = normHex(m.fingerprint);
      checks.push((c) => c.fingerprint === fp);
    }
    if (m.serial !== undefined) {
      const serial = normHex(m.serial);
      checks.push((c) => c.serial === serial);
    }
    return { test: (c) => checks.every((check) => check(c)), roles: Object.freeze([...rule.roles]) };
  });
}

const SUBJECT_ORDER = ['CN', 'OU', 'O', 'L', 'ST', 'C'];

function subjectString(subject: Record<string, string[]>): string {
  const keys = [...SUBJECT_ORDER.filter((k) => k in subject), ...Object.keys(subject).filter((k) => !SUBJECT_ORDER.includes(k))];
  return keys.flatMap((k) => (subject[k] ?? []).map((v) => `${k}=${v.replace(/([,+"\\<>;=])/g, '\\$1')}`)).join(',');
}

/** Decides who the peer is. The chain itself was verified by OpenSSL before this runs. */
export function principalFromPeer(cert: PeerCertLike, rules: readonly CompiledRule[]): IdentityResult {
  if (!cert.subject || !cert.fingerprint256 || !cert.serialNumber) return { ok: false, reason: 'no certificate', detail: 'no client certificate' };
  if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH_OID)) return { ok: false, reason: 'wrong key usage', detail: 'the certificate has no extended key usage clientAuth' };
  const subject: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(cert.subject)) subject[k] = asList(v);
  const cns = subject.CN ?? [];
  if (cns.length !== 1 || !cns[0]) return { ok: false, reason: 'no identity', detail: `the certificate subject must have exactly one CN (it has ${cns.length})` };
  const sans = parseSans(cert.subjectaltname);
  const serial = normHex(cert.serialNumber);
  const fingerprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
  const roles = new Set(subject.OU ?? []);
  const rule = rules.find((r) => r.test({ subject, sans, serial, fingerprint }));
  for (const role of rule?.roles ?? []) roles.add(role);
  const uri = sansOf(sans, 'URI')[0];
  return {
    ok: true,
    principal: Object.freeze({
      name: cns[0],
      roles: Object.freeze([...roles]),
      serial,
      fingerprint,
      subject: subjectString(subject),
      ...(uri ? { uri } : {}),
      sans: Object.freeze(sans),
      notAfter: new Date(cert.valid_to ?? 0),
    }),
  };
}
