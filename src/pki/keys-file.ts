/**
 * keys.json: the API keys and Basic credentials of `broker keys`, and the one way their secrets are
 * hashed (salted scrypt). Only the hash is stored; the secret is shown once, when it is made.
 * Shared by the store (`credentials.ts`) and the serving process (`auth/keyring.ts`).
 */
import { readFileSync } from 'node:fs';
import { scrypt } from 'node:crypto';
import { BrokerError } from '../errors.ts';
import { checkName, checkRoles } from './names.ts';

export const KEYS_FORMAT = 'broker-keys/1';
export const KEY_KINDS = ['apiKey', 'basic'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];
export type KeyStatus = 'valid' | 'revoked' | 'expired';

export interface Kdf {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  len: number;
}

/** scrypt at N=2^14, r=8, p=1: ~50 ms and 16 MiB per check. */
export const DEFAULT_KDF: Readonly<Kdf> = Object.freeze({ alg: 'scrypt', N: 16384, r: 8, p: 1, len: 32 });
export const SALT_BYTES = 16;

export interface KeyRecord {
  /** 12 lowercase hex characters, unique in the file; the `<id>` of an API key. */
  id: string;
  kind: KeyKind;
  /** The identity; for Basic, also the user name. */
  name: string;
  roles: string[];
  created: string;
  expires?: string;
  revoked?: string;
  /** base64 */
  salt: string;
  /** base64 scrypt of the secret part */
  hash: string;
  kdf: Kdf;
}

export interface KeysFile {
  format: typeof KEYS_FORMAT;
  keys: KeyRecord[];
}

export function keyStatus(r: Pick<KeyRecord, 'expires' | 'revoked'>, now = Date.now()): KeyStatus {
  if (r.revoked) return 'revoked';
  if (r.expires && Date.parse(r.expires) <= now) return 'expired';
  return 'valid';
}

const ID_RE = /^[0-9a-f]{12}$/;
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
/** `brk_<id>_<secret>`: the secret is 32 bytes in base64url (43 characters). */
const API_KEY_RE = /^brk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export function isKeyId(s: string): boolean {
  return ID_RE.test(s);
}

export function formatApiKey(id: string, secret: string): string {
  return `brk_${id}_${secret}`;
}

/** The id and secret of an API key, or undefined when the string is not one. */
export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const m = API_KEY_RE.exec(key);
  return m ? { id: m[1] as string, secret: m[2] as string } : undefined;
}

function checkKdf(k: unknown): k is Kdf {
  if (typeof k !== 'object' || k === null) return false;
  const { alg, N, r, p, len } = k as Record<string, unknown>;
  const int = (v: unknown, lo: number, hi: number) => Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
  if (alg !== 'scrypt' || !int(N, 1024, 1 << 20) || !int(r, 1, 32) || !int(p, 1, 16) || !int(len, 16, 64)) return false;
  return ((N as number) & ((N as number) - 1)) === 0 && 128 * (N as number) * (r as number) <= 1 << 30;
}

function checkRecord(raw: unknown, where: string): KeyRecord {
  const bad = (what: string): never => {
    throw new BrokerError('BRK_ERR_KEYS_CORRUPT', `${where}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('not an object');
  const r = raw as Record<string, unknown>;
  if (typeof r.id !== 'string' || !ID_RE.test(r.id)) bad('id is not 12 lowercase hex characters');
  if (!(KEY_KINDS as readonly unknown[]).includes(r.kind)) bad(`kind is not one of ${KEY_KINDS.join(', ')}`);
  if (typeof r.name !== 'string') bad('name is missing');
  if (!Array.isArray(r.roles) || !r.roles.every((x) => typeof x === 'string')) bad('roles is not a list of strings');
  try {
    checkName(r.name as string);
    checkRoles(r.roles as string[]);
  } catch (err) {
    bad((err as Error).message);
  }
  for (const f of ['created', 'expires', 'revoked'] as const) {
    if (f !== 'created' && r[f] === undefined) continue;
    if (typeof r[f] !== 'string' || Number.isNaN(Date.parse(r[f] as string))) bad(`${f} is not a date`);
  }
  if (!checkKdf(r.kdf)) bad('kdf is not scrypt with sane parameters');
  const kdf = r.kdf as Kdf;
  if (typeof r.salt !== 'string' || !BASE64_RE.test(r.salt) || Buffer.from(r.salt, 'base64').length < SALT_BYTES) bad('salt is not base64 of 16+ bytes');
  if (typeof r.hash !== 'string' || !BASE64_RE.test(r.hash) || Buffer.from(r.hash, 'base64').length !== kdf.len) bad(`hash is not base64 of ${kdf.len} bytes`);
  return {
    id: r.id as string,
    kind: r.kind as KeyKind,
    name: r.name as string,
    roles: [...(r.roles as string[])],
    created: r.created as string,
    ...(r.expires === undefined ? {} : { expires: r.expires as string }),
    ...(r.revoked === undefined ? {} : { revoked: r.revoked as string }),
    salt: r.salt as string,
    hash: r.hash as string,
    kdf: { alg: 'scrypt', N: kdf.N, r: kdf.r, p: kdf.p, len: kdf.len },
  };
}

/** Parses and checks every record; anything off is BRK_ERR_KEYS_CORRUPT naming the file and field. */
export function parseKeys(text: string, file: string): KeysFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_KEYS_CORRUPT', `${file} is not JSON`, { cause });
  }
  const d = doc as { format?: unknown; keys?: unknown } | null;
  if (typeof d !== 'object' || d === null || d.format !== KEYS_FORMAT || !Array.isArray(d.keys)) {
    throw new BrokerError('BRK_ERR_KEYS_CORRUPT', `${file} is not a ${KEYS_FORMAT} file`);
  }
  const keys = d.keys.map((k, i) => checkRecord(k, `${file} keys[${i}]`));
  const ids = new Set(keys.map((k) => k.id));
  if (ids.size !== keys.length) throw new BrokerError('BRK_ERR_KEYS_CORRUPT', `${file} holds the same key id twice`);
  return { format: KEYS_FORMAT, keys };
}

export function serializeKeys(f: KeysFile): string {
  return `${JSON.stringify(f, null, 2)}\n`;
}

/** The file's credentials; a missing file holds none. */
export function readKeys(file: string): KeysFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { format: KEYS_FORMAT, keys: [] };
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read keys ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  return parseKeys(text, file);
}

/** scrypt of `secret` (async: it runs on the libuv pool, not the event loop). */
export function deriveHash(secret: string, salt: Buffer, kdf: Readonly<Kdf>): Promise<Buffer> {
  const maxmem = 128 * kdf.r * (kdf.N + kdf.p + 2) + (1 << 20);
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, kdf.len, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem }, (err, key) => {
      if (err) reject(new BrokerError('BRK_ERR_PKI_CRYPTO', `scrypt failed: ${err.message}`, { cause: err }));
      else resolve(key);
    });
  });
}
