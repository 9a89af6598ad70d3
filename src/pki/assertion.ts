/**
 * Identity assertion keys: what the broker signs the `jwt` identity format with (src/proxy/assertion.ts).
 * They live in the store's `assertion/` folder:
 *
 *   assertion/<kid>.key   one private key per kid, PKCS#8 PEM, unencrypted (0600): `broker serve`
 *                         reads it without the CA passphrase, like servers/*.key
 *   assertion/keys.json   which keys exist (kid, alg, createdAt, retireAt for a replaced one) and
 *                         which one is current (0600)
 *   assertion/jwks.json   the public keys published at the last change (0644)
 *
 * kid is the key's RFC 7638 JWK thumbprint (SHA-256, base64url). A change goes through the store's
 * one path (lock, staged files, pending record, audit line; pki/journal.ts). No CA passphrase is
 * needed: no CA key is read or used, as for `broker keys`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { BrokerError, isBrokerError } from '../errors.ts';
import type { AuditFields } from './audit.ts';
import { commitChange } from './journal.ts';
import { fsyncDir, PRIVATE_MODE, PUBLIC_MODE, type WriteTransaction, WriteTransaction as Tx } from './files.ts';
import { storeLayout, type StoreLayout } from './layout.ts';
import { recordFailure, withStoreLock } from './store.ts';

export const ASSERTION_KEYS_FORMAT = 'broker-assertion-keys/1';
export const ASSERTION_ALGS = ['ES256', 'EdDSA'] as const;
export type AssertionAlg = (typeof ASSERTION_ALGS)[number];
/** How long a replaced key stays published by default (`--overlap`), counted from the new key's activation. */
export const DEFAULT_ASSERTION_OVERLAP_MS = 3_600_000;
/**
 * How long a new key is published before anything is signed with it by default (`--publish-ahead`):
 * longer than the JWKS endpoint's max-age (300 s) and jose's refetch cooldown (30 s), so an upstream
 * that caches the JWKS has the new key before it sees a token signed with it.
 */
export const DEFAULT_ASSERTION_AHEAD_MS = 600_000;

export interface AssertionKeyRecord {
  kid: string;
  alg: AssertionAlg;
  createdAt: string;
  /** Set when the key was created ahead of use: published from createdAt, signs from activateAt. */
  activateAt?: string;
  /** Set when the key was replaced: it stays published (never used to sign once its successor is active) until then. */
  retireAt?: string;
}

export interface AssertionKeysFile {
  format: typeof ASSERTION_KEYS_FORMAT;
  /** The newest key: new assertions are signed with it from its activateAt (at once without one). */
  current: string;
  keys: AssertionKeyRecord[];
}

/** A public JWK as published: kty/crv/x(/y), kid, alg, use "sig". */
export type PublishedJwk = JWK & { kid: string; alg: AssertionAlg; use: 'sig' };

export interface AssertionKeys {
  /** The key assertions are signed with now. */
  current: { kid: string; alg: AssertionAlg; key: KeyObject };
  /** A key published ahead of use: it takes over from `current` at activateAt (ms since the epoch). */
  next?: { kid: string; alg: AssertionAlg; key: KeyObject; activateAt: number };
  /** The keys published now: the current one and every replaced one not yet past retireAt. */
  jwks: { keys: PublishedJwk[] };
  /** The earliest retireAt still ahead (ms since the epoch): the published set changes then. */
  nextRetireAt?: number;
}

const KID_RE = /^[A-Za-z0-9_-]{43}$/;

export function assertAssertionAlg(alg: string): AssertionAlg {
  if ((ASSERTION_ALGS as readonly string[]).includes(alg)) return alg as AssertionAlg;
  throw new BrokerError('BRK_ERR_USAGE', `--alg ${alg}: use ES256 or EdDSA`);
}

/** The public JWK of a (private or public) key, as the JWKS publishes it. */
export function publicJwk(key: KeyObject, kid: string, alg: AssertionAlg): PublishedJwk {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const { kty, crv, x, y } = pub.export({ format: 'jwk' });
  return { kty, crv, x, ...(y === undefined ? {} : { y }), kid, alg, use: 'sig' } as PublishedJwk;
}

/** A new key pair and its kid (the RFC 7638 thumbprint of its public JWK). */
export async function newAssertionKey(alg: AssertionAlg): Promise<{ kid: string; alg: AssertionAlg; privateKey: KeyObject; pem: string }> {
  const { privateKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const { kty, crv, x, y } = createPublicKey(privateKey).export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint({ kty, crv, x, ...(y === undefined ? {} : { y }) } as JWK, 'sha256');
  return { kid, alg, privateKey, pem: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string };
}

function corrupt(file: string, why: string, cause?: unknown): BrokerError {
  return new BrokerError('BRK_ERR_ASSERTION_KEYS_CORRUPT', `${file}: ${why}`, cause === undefined ? {} : { cause });
}

/** keys.json, checked; undefined when the store has no assertion keys yet. */
export function readAssertionKeys(l: StoreLayout): AssertionKeysFile | undefined {
  let text: string;
  try {
    text = readFileSync(l.assertionKeys, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw corrupt(l.assertionKeys, `cannot read it (${(cause as NodeJS.ErrnoException).code ?? cause})`, cause);
  }
  let f: AssertionKeysFile;
  try {
    f = JSON.parse(text) as AssertionKeysFile;
  } catch (cause) {
    throw corrupt(l.assertionKeys, 'not valid JSON', cause);
  }
  if (f?.format !== ASSERTION_KEYS_FORMAT || !Array.isArray(f.keys)) throw corrupt(l.assertionKeys, `not a ${ASSERTION_KEYS_FORMAT} file`);
  for (const k of f.keys) {
    if (!KID_RE.test(String(k?.kid)) || !(ASSERTION_ALGS as readonly string[]).includes(k.alg) || Number.isNaN(Date.parse(k.createdAt)) || (k.retireAt !== undefined && Number.isNaN(Date.parse(k.retireAt))) || (k.activateAt !== undefined && Number.isNaN(Date.parse(k.activateAt)))) {
      throw corrupt(l.assertionKeys, `bad key entry ${JSON.stringify(k)}`);
    }
  }
  const cur = f.keys.find((k) => k.kid === f.current);
  if (!cur || cur.retireAt !== undefined) throw corrupt(l.assertionKeys, `current key ${JSON.stringify(f.current)} is not a listed, unretired key`);
  return f;
}

function loadKey(l: StoreLayout, r: AssertionKeyRecord): KeyObject {
  const file = l.assertionKey(r.kid);
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw corrupt(file, `cannot load it (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`, cause);
  }
  const want = r.alg === 'ES256' ? 'ec' : 'ed25519';
  if (key.asymmetricKeyType !== want || (want === 'ec' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')) throw corrupt(file, `not an ${r.alg} key`);
  return key;
}

const published = (r: AssertionKeyRecord, now: number) => r.retireAt === undefined || Date.parse(r.retireAt) > now;

/**
 * What `broker serve` signs with and publishes, read from the store now. Throws
 * BRK_ERR_ASSERTION_KEY_MISSING when the store has no key, BRK_ERR_ASSERTION_KEYS_CORRUPT when it
 * cannot be read.
 */
export function loadAssertionKeys(storeDir: string, now = Date.now()): AssertionKeys {
  const l = storeLayout(storeDir);
  const f = readAssertionKeys(l);
  if (!f) throw new BrokerError('BRK_ERR_ASSERTION_KEY_MISSING', `no identity assertion key in ${storeDir} (${l.assertionKeys} is missing)`);
  const cur = f.keys.find((k) => k.kid === f.current) as AssertionKeyRecord;
  const key = loadKey(l, cur);
  const keys: PublishedJwk[] = [publicJwk(key, cur.kid, cur.alg)];
  let nextRetireAt: number | undefined;
  // Until the newest key's activateAt, the key it replaced (the newest of the others still published) signs.
  let signing: { kid: string; alg: AssertionAlg; key: KeyObject; createdAt: number } | undefined;
  for (const r of f.keys) {
    if (r === cur || !published(r, now)) continue;
    const k = loadKey(l, r);
    keys.push(publicJwk(k, r.kid, r.alg));
    const at = Date.parse(r.retireAt as string);
    if (nextRetireAt === undefined || at < nextRetireAt) nextRetireAt = at;
    const created = Date.parse(r.createdAt);
    if (signing === undefined || created > signing.createdAt) signing = { kid: r.kid, alg: r.alg, key: k, createdAt: created };
  }
  const activateAt = cur.activateAt === undefined ? undefined : Date.parse(cur.activateAt);
  const jwks = { jwks: { keys }, ...(nextRetireAt === undefined ? {} : { nextRetireAt }) };
  if (activateAt === undefined || activateAt <= now || signing === undefined) return { current: { kid: cur.kid, alg: cur.alg, key }, ...jwks };
  return { current: { kid: signing.kid, alg: signing.alg, key: signing.key }, next: { kid: cur.kid, alg: cur.alg, key, activateAt }, ...jwks };
}

/** The JWKS document of a set of published keys (what jwks.json and the admin endpoint hold). */
export function jwksText(jwks: { keys: readonly PublishedJwk[] }): string {
  return `${JSON.stringify({ keys: jwks.keys }, null, 2)}\n`;
}

/** Stages a first key into `tx` (pki init): the key file, keys.json and jwks.json. */
export async function stageFirstAssertionKey(l: StoreLayout, tx: WriteTransaction, now: Date, alg: AssertionAlg = 'ES256'): Promise<string> {
  const k = await newAssertionKey(alg);
  const file: AssertionKeysFile = { format: ASSERTION_KEYS_FORMAT, current: k.kid, keys: [{ kid: k.kid, alg, createdAt: now.toISOString() }] };
  tx.write(l.assertionKey(k.kid), k.pem, PRIVATE_MODE)
    .write(l.assertionKeys, `${JSON.stringify(file, null, 2)}\n`, PRIVATE_MODE)
    .write(l.assertionJwks, jwksText({ keys: [publicJwk(k.privateKey, k.kid, alg)] }), PUBLIC_MODE);
  return k.kid;
}

export interface AssertionRotation {
  kid: string;
  alg: AssertionAlg;
  /** When the new key starts signing (now, without --publish-ahead or on a store that had no key). */
  activateAt: string;
  /** The key it replaced, published until retireAt (absent on a store that had none). */
  previous?: { kid: string; retireAt: string };
  /** Keys dropped from the store by this rotation (their retireAt had passed). */
  removed: string[];
  /** The keys the JWKS publishes after this rotation. */
  published: string[];
}

/**
 * `broker pki rotate assertion-key`: a new key is published at once and signs from now + aheadMs
 * (default 0 here; the command's default is DEFAULT_ASSERTION_AHEAD_MS); the one it replaces keeps
 * signing until then and stays published until activation + overlapMs (0: retired at activation);
 * keys already past their retireAt are dropped, their files too. Works on a store made before
 * assertion keys existed (it creates the first one, active at once).
 */
export async function rotateAssertionKey(store: StoreLayout | { readonly layout: StoreLayout }, o: { alg?: AssertionAlg; overlapMs?: number; aheadMs?: number; now?: number } = {}): Promise<AssertionRotation> {
  const l = 'layout' in store ? store.layout : store;
  const alg = o.alg ?? 'ES256';
  const overlapMs = o.overlapMs ?? DEFAULT_ASSERTION_OVERLAP_MS;
  const aheadMs = o.aheadMs ?? 0;
  if (!Number.isFinite(overlapMs) || overlapMs < 0) throw new BrokerError('BRK_ERR_USAGE', '--overlap must be 0 or more');
  if (!Number.isFinite(aheadMs) || aheadMs < 0) throw new BrokerError('BRK_ERR_USAGE', '--publish-ahead must be 0 or more');
  const op = 'rotate-assertion-key';
  let fields: Omit<AuditFields, 'op' | 'outcome'> = {};
  return withStoreLock(
    l,
    async (held) => {
      try {
        const nowMs = o.now ?? Date.now();
        const now = new Date(nowMs);
        const before = readAssertionKeys(l);
        const k = await newAssertionKey(alg);
        const records: AssertionKeyRecord[] = [];
        let previous: AssertionRotation['previous'];
        // nothing to sign with meanwhile on a store without a key: the first one is active at once
        const activateMs = before === undefined ? nowMs : nowMs + aheadMs;
        for (const r of before?.keys ?? []) {
          if (r.kid === before?.current) {
            previous = { kid: r.kid, retireAt: new Date(activateMs + overlapMs).toISOString() };
            records.push({ ...r, retireAt: previous.retireAt });
          } else records.push(r);
        }
        const kept = records.filter((r) => published(r, nowMs));
        const removed = records.filter((r) => !published(r, nowMs)).map((r) => r.kid);
        kept.unshift({ kid: k.kid, alg, createdAt: now.toISOString(), ...(activateMs > nowMs ? { activateAt: new Date(activateMs).toISOString() } : {}) });
        const jwks = [publicJwk(k.privateKey, k.kid, alg), ...kept.slice(1).map((r) => publicJwk(loadKey(l, r), r.kid, r.alg))];
        const file: AssertionKeysFile = { format: ASSERTION_KEYS_FORMAT, current: k.kid, keys: kept };
        const tx = new Tx()
          .write(l.assertionKey(k.kid), k.pem, PRIVATE_MODE)
          .write(l.assertionKeys, `${JSON.stringify(file, null, 2)}\n`, PRIVATE_MODE)
          .write(l.assertionJwks, jwksText({ keys: jwks }), PUBLIC_MODE);
        fields = { detail: `kid=${k.kid} alg=${alg}${activateMs > nowMs ? ` activateAt=${new Date(activateMs).toISOString()}` : ''}${previous ? ` previous=${previous.kid} retireAt=${previous.retireAt}` : ''}${removed.length ? ` removed=${removed.join(',')}` : ''}` };
        commitChange(l, tx, { op, outcome: 'ok', ...fields }, () => held.check());
        removeUnlistedKeys(l, new Set(kept.map((r) => r.kid)));
        return { kid: k.kid, alg, activateAt: new Date(activateMs).toISOString(), ...(previous ? { previous } : {}), removed, published: jwks.map((j) => j.kid) };
      } catch (err) {
        if (!isBrokerError(err, 'BRK_ERR_PKI_LOCK_LOST')) recordFailure(l, op, fields, err, held);
        throw err;
      }
    },
    { onLost: (err) => recordFailure(l, op, fields, err) },
  );
}

/**
 * Removes key files keys.json no longer lists (retired keys, and any left by an interrupted
 * rotation). Runs under the lock after the change is committed: keys.json already no longer names
 * them, so a crash here only leaves a file the next rotation removes.
 */
function removeUnlistedKeys(l: StoreLayout, listed: ReadonlySet<string>): void {
  if (!existsSync(l.assertionDir)) return;
  let removed = false;
  for (const name of readdirSync(l.assertionDir)) {
    if (name.endsWith('.key') && KID_RE.test(name.slice(0, -4)) && !listed.has(name.slice(0, -4))) {
      rmSync(`${l.assertionDir}/${name}`, { force: true });
      removed = true;
    }
  }
  if (removed) fsyncDir(l.assertionDir);
}

/** Whether a config sends the jwt identity format on any route. */
export function usesAssertions(c: { routes: ReadonlyArray<{ identity?: readonly string[] }> }): boolean {
  return c.routes.some((r) => r.identity?.includes('jwt') === true);
}
