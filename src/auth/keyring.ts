/**
 * The API keys and Basic credentials a serving broker accepts, loaded from the store's keys.json
 * (`broker keys`). Pure of Fastify. A check hashes the presented secret with the record's salted
 * scrypt and compares in constant time; an unknown id or user spends one scrypt too, so timing
 * does not tell whether it exists. Revocation and expiry are checked only after the secret
 * matched (a wrong secret is 'wrong' whatever the key's state); expiry at every call.
 * Successes are cached by SHA-256 of the presented credential, never past the key's expiry;
 * failures never are. The ring is immutable: revocations take effect when a new one is loaded, or
 * through the serving broker's revoked-id set (checked after every success, cached ones included).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { DEFAULT_KDF, SALT_BYTES, deriveHash, parseApiKey, readKeys, type KeyRecord } from '../pki/keys-file.ts';

export interface CredentialIdentity {
  readonly name: string;
  readonly roles: readonly string[];
  readonly keyId: string;
  readonly kind: 'apiKey' | 'basic';
}

export type CredentialResult =
  | { ok: true; identity: CredentialIdentity }
  | { ok: false; reason: 'malformed' | 'unknown' | 'wrong' | 'revoked' | 'expired'; detail: string; keyId?: string; name?: string };

type Failure = Extract<CredentialResult, { ok: false }>;

export const DEFAULT_CACHE_TTL_MS = 60_000;
export const CACHE_MAX_ENTRIES = 10_000;

/** A generated Basic password: 24 random bytes in base64url. */
const PASSWORD_RE = /^[A-Za-z0-9_-]{32}$/;
const SAFE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

interface Entry {
  readonly record: KeyRecord;
  readonly salt: Buffer;
  readonly hash: Buffer;
  /** The one object every success for this credential returns. */
  readonly identity: CredentialIdentity;
  /** ms since the epoch; Infinity when it never expires. */
  readonly expiresAt: number;
}

interface Cached {
  readonly identity: CredentialIdentity;
  readonly until: number;
}

const DUMMY_SALT = randomBytes(SALT_BYTES);
const DUMMY_HASH = Buffer.alloc(DEFAULT_KDF.len);

/** The same work as a real check, for an id or user that does not exist. */
async function dummyCheck(secret: string): Promise<void> {
  timingSafeEqual(await deriveHash(secret, DUMMY_SALT, DEFAULT_KDF), DUMMY_HASH);
}

function fail(reason: Failure['reason'], detail: string, who: { keyId?: string; name?: string } = {}): Failure {
  return { ok: false, reason, detail, ...who };
}

function cacheKey(...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('base64');
}

export class KeyRing {
  readonly size: number;
  readonly #byId = new Map<string, Entry>();
  readonly #basicByName = new Map<string, Entry[]>();
  readonly #cache = new Map<string, Cached>();
  readonly #cacheTtlMs: number;
  readonly #now: () => number;

  private constructor(records: readonly KeyRecord[], o: { cacheTtlMs?: number; now?: () => number }) {
    this.#cacheTtlMs = o.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    this.#now = o.now ?? Date.now;
    for (const record of records) {
      const entry: Entry = {
        record,
        salt: Buffer.from(record.salt, 'base64'),
        hash: Buffer.from(record.hash, 'base64'),
        identity: Object.freeze({ name: record.name, roles: Object.freeze([...record.roles]), keyId: record.id, kind: record.kind }),
        expiresAt: record.expires ? Date.parse(record.expires) : Infinity,
      };
      this.#byId.set(record.id, entry);
      if (record.kind === 'basic') this.#basicByName.set(record.name, [...(this.#basicByName.get(record.name) ?? []), entry]);
    }
    this.size = records.length;
  }

  /** Reads keys.json (missing file = empty ring); throws BrokerError BRK_ERR_KEYS_CORRUPT on a bad file. */
  static load(file: string, o: { cacheTtlMs?: number; now?: () => number } = {}): KeyRing {
    return new KeyRing(readKeys(file).keys, o);
  }

  /**
   * Ids of the credentials revoked in keys.json, without building a ring: what a reload applies
   * when the rest of it is refused (revocation never waits for a good config). Throws like load().
   */
  static revokedIn(file: string): string[] {
    return readKeys(file).keys.filter((r) => r.revoked).map((r) => r.id);
  }

  static empty(): KeyRing {
    return new KeyRing([], {});
  }

  /** Ids of the credentials revoked in this ring's file (announced to other replicas on reload). */
  revokedIds(): string[] {
    return [...this.#byId.values()].filter((e) => e.record.revoked).map((e) => e.record.id);
  }

  /** `key` is the full "brk_<id>_<secret>" string. */
  async verifyApiKey(key: string): Promise<CredentialResult> {
    const parsed = typeof key === 'string' ? parseApiKey(key) : undefined;
    if (!parsed) return fail('malformed', 'not an API key of the form brk_<id>_<secret>');
    const ck = cacheKey('apiKey', key);
    const hit = this.#hit(ck);
    if (hit) return { ok: true, identity: hit };
    const entry = this.#byId.get(parsed.id);
    if (!entry || entry.record.kind !== 'apiKey') {
      await dummyCheck(parsed.secret);
      return fail('unknown', 'no API key with this id', { keyId: parsed.id });
    }
    return this.#check(entry, parsed.secret, ck);
  }

  /** Basic: the user is the identity name; the non-revoked Basic credentials of that name are tried. */
  async verifyBasic(user: string, password: string): Promise<CredentialResult> {
    if (typeof user !== 'string' || typeof password !== 'string' || !user || !PASSWORD_RE.test(password)) {
      return fail('malformed', 'not a user name and a broker-generated password');
    }
    const ck = cacheKey('basic', user, password);
    const hit = this.#hit(ck);
    if (hit) return { ok: true, identity: hit };
    const all = this.#basicByName.get(user) ?? [];
    let candidates = all.filter((e) => !e.record.revoked);
    // only revoked ones: check the newest, so the right password of a revoked credential says 'revoked'
    if (!candidates.length && all.length) candidates = [all.at(-1) as Entry];
    if (!candidates.length) {
      await dummyCheck(password);
      return fail('unknown', 'no Basic credential for this user', SAFE_NAME_RE.test(user) ? { name: user } : {});
    }
    let result: CredentialResult | undefined;
    for (const entry of candidates) {
      result = await this.#check(entry, password, ck);
      if (result.ok || result.reason !== 'wrong') return result;
    }
    return result as CredentialResult;
  }

  async #check(entry: Entry, secret: string, ck: string): Promise<CredentialResult> {
    const { record } = entry;
    const who = { keyId: record.id, name: record.name };
    const derived = await deriveHash(secret, entry.salt, record.kdf);
    if (!timingSafeEqual(derived, entry.hash)) return fail('wrong', 'the secret does not match', who);
    if (record.revoked) return fail('revoked', `revoked at ${record.revoked}`, who);
    const now = this.#now();
    if (entry.expiresAt <= now) return fail('expired', `expired at ${record.expires}`, who);
    this.#remember(ck, entry, now);
    return { ok: true, identity: entry.identity };
  }

  #hit(ck: string): CredentialIdentity | undefined {
    const c = this.#cache.get(ck);
    if (!c) return undefined;
    if (c.until <= this.#now()) {
      this.#cache.delete(ck);
      return undefined;
    }
    return c.identity;
  }

  #remember(ck: string, entry: Entry, now: number): void {
    if (this.#cacheTtlMs <= 0) return;
    this.#cache.delete(ck);
    while (this.#cache.size >= CACHE_MAX_ENTRIES) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(ck, { identity: entry.identity, until: Math.min(now + this.#cacheTtlMs, entry.expiresAt) });
  }
}
