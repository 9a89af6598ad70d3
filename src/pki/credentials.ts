/**
 * `broker keys`: API keys and Basic credentials kept in the store's keys.json. A change follows
 * the store's one path: under the lock, read → change → commit (pki/journal.ts: stage keys.json,
 * pending record, audit line, rename, head). No CA passphrase is needed (nothing is signed), and no CA
 * has to exist yet. Only a salted scrypt hash of each secret is written; the audit line carries
 * id, name, roles, kind and expiry, never the secret.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BrokerError, isBrokerError } from '../errors.ts';
import type { AuditFields } from './audit.ts';
import { commitChange } from './journal.ts';
import { ensureDir, PRIVATE_MODE, WriteTransaction } from './files.ts';
import type { StoreLayout } from './layout.ts';
import { checkName, checkRoles } from './names.ts';
import { recordFailure, withStoreLock } from './store.ts';
import { DEFAULT_KDF, SALT_BYTES, deriveHash, formatApiKey, keyStatus, parseApiKey, readKeys, serializeKeys, type KeyKind, type KeyRecord, type KeysFile, type KeyStatus } from './keys-file.ts';

/** A credential as shown to people and scripts: never its salt or hash. */
export type KeyInfo = Omit<KeyRecord, 'salt' | 'hash' | 'kdf'> & { status: KeyStatus };

export interface CreatedKey {
  record: KeyInfo;
  /** What the partner sends: the whole `brk_<id>_<secret>` API key, or the Basic password. Shown once. */
  secret: string;
}

/** A store layout, or anything that has one (a CaStore). */
export type KeyStore = StoreLayout | { readonly layout: StoreLayout };

function layoutOf(s: KeyStore): StoreLayout {
  return 'layout' in s ? s.layout : s;
}

export function keyInfo(r: KeyRecord, now = Date.now()): KeyInfo {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    roles: [...r.roles],
    created: r.created,
    ...(r.expires ? { expires: r.expires } : {}),
    ...(r.revoked ? { revoked: r.revoked } : {}),
    status: keyStatus(r, now),
  };
}

type Audit = Omit<AuditFields, 'op' | 'outcome'>;

/** Runs one change of keys.json under the store lock, audited; a failure is audited too and changes nothing. */
async function mutateKeys<T>(l: StoreLayout, op: string, fn: (file: KeysFile) => Promise<{ result: T; audit: Audit }>): Promise<T> {
  return withStoreLock(
    l,
    async (held) => {
      try {
        const file = readKeys(l.keys);
        const { result, audit } = await fn(file);
        commitChange(l, new WriteTransaction().write(l.keys, serializeKeys(file), PRIVATE_MODE), { op, outcome: 'ok', ...audit }, () => held.check());
        return result;
      } catch (err) {
        if (!isBrokerError(err, 'BRK_ERR_PKI_LOCK_LOST')) recordFailure(l, op, {}, err, held);
        throw err;
      }
    },
    { onLost: (err) => recordFailure(l, op, {}, err) },
  );
}

function freshId(file: KeysFile): string {
  const taken = new Set(file.keys.map((k) => k.id));
  for (;;) {
    const id = randomBytes(6).toString('hex');
    if (!taken.has(id)) return id;
  }
}

/**
 * A new credential for identity `name`. An API key is `brk_<id>_<32 random bytes, base64url>`; a
 * Basic credential has the name as user and a generated password (24 random bytes, base64url).
 */
export async function createKey(store: KeyStore, o: { name: string; roles: readonly string[]; kind: KeyKind; expiresMs?: number; now?: number }): Promise<CreatedKey> {
  const l = layoutOf(store);
  const name = checkName(o.name);
  const roles = checkRoles(o.roles);
  if (o.kind !== 'apiKey' && o.kind !== 'basic') throw new BrokerError('BRK_ERR_USAGE', `unknown credential kind "${String(o.kind)}"`);
  if (o.expiresMs !== undefined && !(Number.isSafeInteger(o.expiresMs) && o.expiresMs > 0)) {
    throw new BrokerError('BRK_ERR_USAGE_TTL', 'the expiry must be a positive whole number of milliseconds');
  }
  const secret = randomBytes(o.kind === 'apiKey' ? 32 : 24).toString('base64url');
  const salt = randomBytes(SALT_BYTES);
  const kdf = { ...DEFAULT_KDF };
  const hash = await deriveHash(secret, salt, kdf);
  ensureDir(l.dir);
  return mutateKeys(l, 'keys-create', async (file) => {
    const now = o.now ?? Date.now();
    const record: KeyRecord = {
      id: freshId(file),
      kind: o.kind,
      name,
      roles,
      created: new Date(now).toISOString(),
      ...(o.expiresMs === undefined ? {} : { expires: new Date(now + o.expiresMs).toISOString() }),
      salt: salt.toString('base64'),
      hash: hash.toString('base64'),
      kdf,
    };
    file.keys.push(record);
    return {
      result: { record: keyInfo(record, now), secret: o.kind === 'apiKey' ? formatApiKey(record.id, secret) : secret },
      audit: { name, roles, detail: `keyId=${record.id} kind=${record.kind} expires=${record.expires ?? 'never'}` },
    };
  });
}

/** Every credential in keys.json with its status (a missing file holds none). */
export function listKeys(store: KeyStore, now = Date.now()): KeyInfo[] {
  return readKeys(layoutOf(store).keys).keys.map((r) => keyInfo(r, now));
}

/**
 * Revokes by id (that one credential; a whole API key is taken as its id) or by name (every
 * credential of that name not yet revoked). Takes effect in a running broker at its next reload.
 */
export async function revokeKey(store: KeyStore, target: string, o: { now?: number; via?: string } = {}): Promise<KeyInfo[]> {
  const l = layoutOf(store);
  const id = parseApiKey(target)?.id ?? target;
  const notFound = () => new BrokerError('BRK_ERR_KEYS_NOT_FOUND', `no credential with id or name "${id}"`);
  if (!existsSync(l.dir)) throw notFound();
  return mutateKeys(l, 'keys-revoke', async (file) => {
    const found = file.keys.filter((k) => k.id === id || k.name === id);
    if (!found.length) throw notFound();
    const open = found.filter((k) => !k.revoked);
    if (!open.length) throw new BrokerError('BRK_ERR_KEYS_ALREADY_REVOKED', `every credential with id or name "${id}" is already revoked`);
    const now = o.now ?? Date.now();
    const at = new Date(now).toISOString();
    for (const k of open) k.revoked = at;
    const first = open[0] as KeyRecord;
    return {
      result: open.map((k) => keyInfo(k, now)),
      audit: { name: first.name, roles: first.roles, detail: `keyIds=${open.map((k) => k.id).join(',')} kind=${[...new Set(open.map((k) => k.kind))].join(',')}${o.via ? ` via=${o.via}` : ''}` },
    };
  });
}
