/**
 * Enrolment invitations (`broker pki invite`): one-time tokens that let a partner enrol its own
 * key. invitations.json in the store keeps, per invitation, the identity, roles, expiry and the
 * SHA-256 of the token's 256-bit secret, never the secret. Every change (invite, revoke, and the
 * enrolment that uses one up) goes the store's one path: under the lock, read → change → commit
 * with its audit line (pki/store.ts mutate, pki/journal.ts). No CA passphrase is needed to invite
 * or revoke (nothing is signed), as with `broker keys`; enrolling signs, so it needs the issuing key.
 *
 * The token: `brk1.` + base64url(JSON {"v":1,"id","secret","ca","name"}), where `secret` is 32
 * random bytes in base64url, `ca` the SHA-256 (hex) of the root CA certificate's DER, the one the
 * partner must find at the broker before sending anything, and `name` the identity (informational).
 */
import { existsSync, readFileSync } from 'node:fs';
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { BrokerError } from '../errors.ts';
import { checkName, checkRoles, spiffeId } from './names.ts';
import { PRIVATE_MODE } from './files.ts';
import { statusOf, type CertRecord, type Inventory } from './inventory.ts';
import { createLeaf, leafWindow, type Issuer } from './certs.ts';
import { certRecord, freshSerial } from './issue.ts';
import type { CaStore, MutationContext } from './store.ts';
import type { x509 } from './x509.ts';

export const INVITATIONS_FORMAT = 'broker-invitations/1';
export const TOKEN_PREFIX = 'brk1.';
export type InvitationStatus = 'open' | 'used' | 'expired' | 'revoked';

export interface InvitationRecord {
  /** 12 lowercase hex characters. */
  id: string;
  name: string;
  roles: string[];
  created: string;
  expires: string;
  /** Lifetime of the certificate the enrolment issues. */
  certTtlMs: number;
  contact?: string;
  /** SHA-256 (hex) of the token's secret bytes. */
  hash: string;
  used?: string;
  /** Serial of the certificate the enrolment issued. */
  serial?: string;
  revoked?: string;
}

interface InvitationsFile {
  format: typeof INVITATIONS_FORMAT;
  invitations: InvitationRecord[];
}

export type InvitationInfo = Omit<InvitationRecord, 'hash'> & { status: InvitationStatus };

export interface TokenParts {
  id: string;
  /** base64url of 32 bytes. */
  secret: string;
  /** SHA-256 hex of the root CA certificate (DER). */
  ca: string;
  /** The identity invited (informational: the partner names its files before asking; the broker uses its own record). */
  name?: string;
}

export function invitationsFile(dir: string): string {
  return join(dir, 'invitations.json');
}

export function invitationStatus(r: InvitationRecord, now = Date.now()): InvitationStatus {
  if (r.revoked) return 'revoked';
  if (r.used) return 'used';
  return Date.parse(r.expires) <= now ? 'expired' : 'open';
}

function info(r: InvitationRecord, now = Date.now()): InvitationInfo {
  const { hash: _hash, ...rest } = r;
  return { ...rest, status: invitationStatus(r, now) };
}

export function formatToken(p: TokenParts): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify({ v: 1, id: p.id, secret: p.secret, ca: p.ca, ...(p.name === undefined ? {} : { name: p.name }) })).toString('base64url');
}

/** The token's parts; anything malformed is BRK_ERR_ENROLL_TOKEN_INVALID (never says which part). */
export function parseToken(token: string): TokenParts {
  const bad = (why: string): never => {
    throw new BrokerError('BRK_ERR_ENROLL_TOKEN_INVALID', `the enrolment token is malformed (${why})`);
  };
  const t = token.trim();
  if (!t.startsWith(TOKEN_PREFIX)) bad(`it does not start with ${TOKEN_PREFIX}`);
  let v: Record<string, unknown> = {};
  try {
    v = JSON.parse(Buffer.from(t.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    bad('not base64url JSON');
  }
  if (!v || typeof v !== 'object' || v.v !== 1) bad('unknown version');
  const { id, secret, ca, name } = v;
  if (typeof id !== 'string' || !/^[0-9a-f]{12}$/.test(id)) bad('id');
  if (typeof secret !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(secret)) bad('secret');
  if (typeof ca !== 'string' || !/^[0-9a-f]{64}$/.test(ca)) bad('CA fingerprint');
  if (name !== undefined && (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name))) bad('name');
  return { id: id as string, secret: secret as string, ca: ca as string, ...(typeof name === 'string' ? { name } : {}) };
}

function secretHash(secret: string): Buffer {
  return hash('sha256', Buffer.from(secret, 'base64url'), 'buffer') as unknown as Buffer;
}

function readInvitations(dir: string): InvitationsFile {
  const file = invitationsFile(dir);
  if (!existsSync(file)) return { format: INVITATIONS_FORMAT, invitations: [] };
  let data: InvitationsFile;
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as InvitationsFile;
  } catch (cause) {
    throw new BrokerError('BRK_ERR_ENROLL_INVITATIONS_CORRUPT', `${file} is not readable JSON`, { cause });
  }
  const ok =
    data && data.format === INVITATIONS_FORMAT && Array.isArray(data.invitations) &&
    data.invitations.every((r) => r && /^[0-9a-f]{12}$/.test(r.id) && typeof r.name === 'string' && Array.isArray(r.roles) && /^[0-9a-f]{64}$/.test(r.hash) && !Number.isNaN(Date.parse(r.expires)) && Number.isSafeInteger(r.certTtlMs));
  if (!ok) throw new BrokerError('BRK_ERR_ENROLL_INVITATIONS_CORRUPT', `${file} is not a valid invitations file`);
  return data;
}

function stageInvitations(ctx: MutationContext, f: InvitationsFile): void {
  ctx.tx.write(invitationsFile(ctx.layout.dir), `${JSON.stringify(f, null, 2)}\n`, PRIVATE_MODE);
}

function freshId(f: InvitationsFile): string {
  const taken = new Set(f.invitations.map((r) => r.id));
  for (;;) {
    const id = randomBytes(6).toString('hex');
    if (!taken.has(id)) return id;
  }
}

export interface Invited {
  record: InvitationInfo;
  /** Shown once; the store keeps only the hash of its secret. */
  token: string;
}

/** A new invitation for identity `name` with `roles`; the token pins the store's current root. */
export async function createInvitation(store: CaStore, o: { name: string; roles: string[]; expiresMs: number; certTtlMs: number; contact?: string; now?: Date }): Promise<Invited> {
  const name = checkName(o.name);
  const roles = checkRoles(o.roles);
  const now = o.now ?? new Date();
  return store.mutate('invite', undefined, async (ctx) => {
    const f = readInvitations(ctx.layout.dir);
    const id = freshId(f);
    const secret = randomBytes(32).toString('base64url');
    const record: InvitationRecord = {
      id,
      name,
      roles,
      created: now.toISOString(),
      expires: new Date(now.getTime() + o.expiresMs).toISOString(),
      certTtlMs: o.certTtlMs,
      ...(o.contact ? { contact: o.contact } : {}),
      hash: secretHash(secret).toString('hex'),
    };
    f.invitations.push(record);
    stageInvitations(ctx, f);
    const token = formatToken({ id, secret, ca: ctx.inventory.ca.root.fingerprint, name });
    return { result: { record: info(record), token }, audit: { name, roles, detail: `invitation=${id} expires=${record.expires}` } };
  });
}

export function listInvitations(store: CaStore, now = Date.now()): InvitationInfo[] {
  return readInvitations(store.layout.dir).invitations.map((r) => info(r, now));
}

/** Withdraws an open invitation: its token is refused from now on. */
export async function revokeInvitation(store: CaStore, id: string): Promise<InvitationInfo> {
  return store.mutate('invite-revoke', undefined, async (ctx) => {
    const f = readInvitations(ctx.layout.dir);
    const r = f.invitations.find((x) => x.id === id);
    if (!r) throw new BrokerError('BRK_ERR_ENROLL_INVITATION_NOT_FOUND', `no invitation ${id}`);
    const status = invitationStatus(r);
    if (status !== 'open') throw new BrokerError('BRK_ERR_ENROLL_INVITATION_CLOSED', `invitation ${id} is ${status}`);
    r.revoked = new Date().toISOString();
    stageInvitations(ctx, f);
    return { result: info(r), audit: { name: r.name, roles: r.roles, detail: `invitation=${id}` } };
  });
}

/** Signs with the issuing CA the inventory names (the serving process holds it decrypted). */
export type IssuerFor = (inv: Inventory) => Promise<Issuer>;

export interface Minted {
  record: CertRecord;
  cert: x509.X509Certificate;
  issuer: Issuer;
}

async function mintClient(ctx: MutationContext, issuerFor: IssuerFor, m: { name: string; roles: string[]; ttlMs: number; publicKey: CryptoKey; source: CertRecord['source']; contact?: string | undefined }): Promise<Minted> {
  const inv = ctx.inventory;
  const issuer = await issuerFor(inv);
  const serial = freshSerial(inv);
  const cert = await createLeaf({ kind: 'client', name: m.name, roles: m.roles, uri: spiffeId(inv.ca.trustDomain, 'client', m.name), publicKey: m.publicKey, serial, ...leafWindow(m.ttlMs, issuer.cert) }, issuer);
  const record = certRecord(cert, inv, { ...m, type: 'client', serial });
  inv.certs.push(record);
  return { record, cert, issuer };
}

/**
 * Uses up an invitation: checks the token's secret (constant time), then that the invitation is
 * open, and certifies `publicKey` (from a CSR whose signature verified) for the invitation's
 * identity and roles, recorded in the inventory with no key. One store change: the invitation
 * is marked used in the same commit that records the certificate, so a token works exactly once.
 */
export async function redeemInvitation(store: CaStore, o: { token: TokenParts; publicKey: CryptoKey; issuerFor: IssuerFor; remoteIp?: string }): Promise<Minted> {
  return store.mutate('enroll', undefined, async (ctx) => {
    const f = readInvitations(ctx.layout.dir);
    const r = f.invitations.find((x) => x.id === o.token.id);
    const given = secretHash(o.token.secret);
    // an unknown id is checked against a hash too, so both refusals take the same time
    const want = r ? Buffer.from(r.hash, 'hex') : Buffer.alloc(32);
    if (!timingSafeEqual(given, want) || !r) throw new BrokerError('BRK_ERR_ENROLL_TOKEN_INVALID', `no invitation matches token id ${o.token.id}`);
    const status = invitationStatus(r);
    if (status === 'revoked') throw new BrokerError('BRK_ERR_ENROLL_TOKEN_REVOKED', `invitation ${r.id} for ${r.name} was revoked at ${r.revoked}`);
    if (status === 'used') throw new BrokerError('BRK_ERR_ENROLL_TOKEN_USED', `invitation ${r.id} for ${r.name} was used at ${r.used} (certificate ${r.serial})`);
    if (status === 'expired') throw new BrokerError('BRK_ERR_ENROLL_TOKEN_EXPIRED', `invitation ${r.id} for ${r.name} expired at ${r.expires}`);
    const minted = await mintClient(ctx, o.issuerFor, { name: r.name, roles: r.roles, ttlMs: r.certTtlMs, publicKey: o.publicKey, source: 'enroll', contact: r.contact });
    r.used = new Date().toISOString();
    r.serial = minted.record.serial;
    stageInvitations(ctx, f);
    return { result: minted, audit: { name: r.name, serial: minted.record.serial, roles: r.roles, detail: `invitation=${r.id}${o.remoteIp ? ` from=${o.remoteIp}` : ''}` } };
  });
}

/** When a certificate may renew: once `renewAfter` of its lifetime has passed (ms since the epoch). */
export function renewalOpensAt(rec: Pick<CertRecord, 'notBefore' | 'notAfter'>, renewAfter: number): number {
  const from = Date.parse(rec.notBefore);
  return from + renewAfter * (Date.parse(rec.notAfter) - from);
}

/** The client certificate with this SHA-256 fingerprint, from an inventory (read-only). */
export function clientCertByFingerprint(inv: Inventory, fp: string): CertRecord | undefined {
  return inv.certs.find((c) => c.fingerprint === fp && c.type === 'client');
}

/**
 * Renewal over mTLS: a new certificate for the identity and roles the inventory holds for
 * the certificate with SHA-256 `fingerprint` (whatever the CSR asked), if that certificate is valid (not revoked, not expired) and
 * `renewAfter` of its lifetime has passed.
 */
export async function renewByFingerprint(store: CaStore, o: { fingerprint: string; publicKey: CryptoKey; ttlMs: number; renewAfter: number; issuerFor: IssuerFor; remoteIp?: string; now?: number }): Promise<Minted> {
  return store.mutate('renew-mtls', undefined, async (ctx) => {
    const now = o.now ?? Date.now();
    const prev = clientCertByFingerprint(ctx.inventory, o.fingerprint);
    if (!prev) throw new BrokerError('BRK_ERR_ENROLL_CERT_UNKNOWN', `certificate ${o.fingerprint} is not a client certificate of this store's inventory`);
    const status = statusOf(prev, now);
    if (status !== 'valid') throw new BrokerError('BRK_ERR_ENROLL_CERT_UNKNOWN', `certificate ${prev.serial} of ${prev.name} is ${status}`);
    const opens = renewalOpensAt(prev, o.renewAfter);
    if (now < opens) throw new BrokerError('BRK_ERR_ENROLL_TOO_EARLY', `certificate ${prev.serial} of ${prev.name} can renew from ${new Date(Math.ceil(opens)).toISOString()} (enrollment.renewAfter ${o.renewAfter})`);
    const minted = await mintClient(ctx, o.issuerFor, { name: prev.name, roles: prev.roles, ttlMs: o.ttlMs, publicKey: o.publicKey, source: 'renew', contact: prev.contact });
    return { result: minted, audit: { name: prev.name, serial: minted.record.serial, roles: prev.roles, detail: `renews=${prev.serial} over=mtls${o.remoteIp ? ` from=${o.remoteIp}` : ''}` } };
  });
}
