/**
 * `broker keys create/list/revoke` through the built CLI: the printed key verifies against the
 * store's keys.json, the secret is written nowhere in the store, the audit chain stays intact,
 * and bad input fails with its code leaving keys.json byte-identical.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { broker, errorCode } from '../helpers/cli.ts';
import { auditEntries, json, makeCa, sharedCa, snapshot, type TestCa } from '../helpers/pki.ts';
import { KeyRing } from '../../src/auth/keyring.ts';
import type { KeyInfo } from '../../src/pki/credentials.ts';

const shared = sharedCa({ noPassphrase: true });

/** Every file under `dir`, concatenated (binary-safe as latin1). */
function everything(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

function auditIntact(ca: TestCa): void {
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: auditEntries(ca).length });
}

function keysBytes(ca: TestCa): string {
  return readFileSync(ca.file('keys.json'), 'latin1');
}

test('create prints the API key once on its own line; it verifies and is stored only as a hash', async () => {
  const ca = shared();
  const r = ca.run(['keys', 'create', 'acme-billing', '--role', 'billing', '--role', 'ops', '--expires', '90d']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const key = lines.find((l) => l.startsWith('brk_')) as string;
  assert.match(key, /^brk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  assert.ok(lines.some((l) => /shown only once/.test(l)), r.stdout);

  const ok = await KeyRing.load(ca.file('keys.json')).verifyApiKey(key);
  assert.ok(ok.ok);
  assert.deepEqual(ok.identity.roles, ['billing', 'ops']);
  assert.equal(ok.identity.name, 'acme-billing');

  const secret = key.split('_').slice(2).join('_');
  const store = everything(ca.dir);
  assert.ok(!store.includes(secret), 'the secret appears nowhere in the store');
  const stored = JSON.parse(keysBytes(ca)).keys.find((k: { id: string }) => k.id === ok.identity.keyId);
  assert.equal(Buffer.from(stored.hash, 'base64').length, 32);
  assert.deepEqual(stored.kdf, { alg: 'scrypt', N: 16384, r: 8, p: 1, len: 32 });
  assert.equal(statSync(ca.file('keys.json')).mode & 0o777, 0o600);

  const row = json<KeyInfo[]>(ca.run(['keys', 'list', '--json'])).find((k) => k.id === ok.identity.keyId) as KeyInfo;
  assert.deepEqual(Object.keys(row).sort(), ['created', 'expires', 'id', 'kind', 'name', 'roles', 'status']);
  assert.equal(row.status, 'valid');
  assert.equal(Math.round((Date.parse(row.expires as string) - Date.parse(row.created)) / 86_400_000), 90);

  const created = auditEntries(ca).at(-1);
  assert.equal(created?.op, 'keys-create');
  assert.equal(created?.name, 'acme-billing');
  assert.match(created?.detail ?? '', new RegExp(`keyId=${ok.identity.keyId} kind=apiKey`));
  auditIntact(ca);
});

test('create --basic --json: the user is the name, the generated password verifies and is not stored', async () => {
  const ca = shared();
  const c = json<KeyInfo & { username: string; password: string }>(ca.run(['keys', 'create', 'legacy-erp', '--role', 'orders', '--basic', '--json']));
  assert.equal(c.kind, 'basic');
  assert.equal(c.username, 'legacy-erp');
  assert.match(c.password, /^[A-Za-z0-9_-]{32}$/);
  const ok = await KeyRing.load(ca.file('keys.json')).verifyBasic('legacy-erp', c.password);
  assert.ok(ok.ok && ok.identity.keyId === c.id);
  assert.ok(!everything(ca.dir).includes(c.password));

  const plain = ca.run(['keys', 'create', 'legacy-erp', '--role', 'orders', '--basic']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^username: legacy-erp$/m);
  assert.match(plain.stdout, /^password: [A-Za-z0-9_-]{32}$/m);
  auditIntact(ca);
});

test('revoke by id, then by name; the ring refuses revoked keys; revoking again is refused', async () => {
  const ca = shared();
  const a = json<KeyInfo & { key: string }>(ca.run(['keys', 'create', 'rev-me', '--role', 'ops', '--json']));
  const b = json<KeyInfo & { key: string }>(ca.run(['keys', 'create', 'rev-me', '--role', 'ops', '--json']));

  const one = json<KeyInfo[]>(ca.run(['keys', 'revoke', a.id, '--json']));
  assert.deepEqual(one.map((k) => [k.id, k.status]), [[a.id, 'revoked']]);
  let ring = KeyRing.load(ca.file('keys.json'));
  assert.equal((await ring.verifyApiKey(a.key)).ok ? 'ok' : 'refused', 'refused');
  assert.ok((await ring.verifyApiKey(b.key)).ok);

  const plain = ca.run(['keys', 'revoke', 'rev-me']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, new RegExp(`revoked API key ${b.id} of rev-me`));
  assert.doesNotMatch(plain.stdout, new RegExp(a.id));
  ring = KeyRing.load(ca.file('keys.json'));
  const r = await ring.verifyApiKey(b.key);
  assert.ok(!r.ok && r.reason === 'revoked');

  const statuses = json<KeyInfo[]>(ca.run(['keys', 'list', '--json'])).filter((k) => k.name === 'rev-me').map((k) => k.status);
  assert.deepEqual(statuses, ['revoked', 'revoked']);

  const before = keysBytes(ca);
  for (const [target, code] of [['rev-me', 'BRK_ERR_KEYS_ALREADY_REVOKED'], [a.id, 'BRK_ERR_KEYS_ALREADY_REVOKED'], ['no-such-key', 'BRK_ERR_KEYS_NOT_FOUND'], ['0123456789ab', 'BRK_ERR_KEYS_NOT_FOUND']]) {
    const f = ca.run(['keys', 'revoke', target as string]);
    assert.equal(f.code, 1, f.stderr);
    assert.equal(errorCode(f.stderr), code);
    assert.equal(keysBytes(ca), before);
  }
  assert.equal(auditEntries(ca).at(-1)?.outcome, 'error');
  auditIntact(ca);
});

const BAD: Array<[string, string[], number, string]> = [
  ['no --role', ['keys', 'create', 'x'], 2, 'BRK_ERR_USAGE'],
  ['a bad name', ['keys', 'create', '../etc/passwd', '--role', 'ops'], 2, 'BRK_ERR_USAGE_NAME'],
  ['a bad role', ['keys', 'create', 'x', '--role', 'has space'], 2, 'BRK_ERR_USAGE_ROLE'],
  ['a bad --expires', ['keys', 'create', 'x', '--role', 'ops', '--expires', '1h30m'], 2, 'BRK_ERR_USAGE_TTL'],
  ['an --expires under a minute', ['keys', 'create', 'x', '--role', 'ops', '--expires', '30s'], 2, 'BRK_ERR_USAGE_TTL'],
];

test('bad input fails with its code and leaves the store as it was', () => {
  const ca = shared();
  json(ca.run(['keys', 'create', 'bystander', '--role', 'ops', '--json']));
  for (const [what, args, exit, code] of BAD) {
    const before = snapshot(ca.dir, { withAudit: true });
    const r = ca.run(args);
    assert.equal(r.code, exit, `${what}: ${r.stderr}`);
    assert.equal(errorCode(r.stderr), code, what);
    assert.equal(r.stdout, '', what);
    assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before, what);
  }
});

test('a corrupt keys.json is BRK_ERR_KEYS_CORRUPT for every command and is not touched', (t) => {
  const ca = makeCa(t, { noPassphrase: true });
  json(ca.run(['keys', 'create', 'acme', '--role', 'ops', '--json']));
  const good = JSON.parse(keysBytes(ca));
  const corrupt = JSON.stringify({ ...good, keys: [{ ...good.keys[0], hash: 'AAAA' }] });
  writeFileSync(ca.file('keys.json'), corrupt, { mode: 0o600 });
  const before = snapshot(ca.dir);
  for (const args of [['keys', 'list'], ['keys', 'create', 'other', '--role', 'ops'], ['keys', 'revoke', 'acme']]) {
    const r = ca.run(args);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_KEYS_CORRUPT', `${args.join(' ')}: ${r.stderr}`);
    assert.equal(keysBytes(ca), corrupt);
    assert.deepEqual(snapshot(ca.dir), before);
  }
  assert.deepEqual(auditEntries(ca).slice(-2).map((e) => [e.op, e.outcome, e.code]), [
    ['keys-create', 'error', 'BRK_ERR_KEYS_CORRUPT'],
    ['keys-revoke', 'error', 'BRK_ERR_KEYS_CORRUPT'],
  ]);
  auditIntact(ca);
});

test('BROKER_PKI_DIR names the store; an empty store lists nothing', (t) => {
  const ca = makeCa(t, { noPassphrase: true });
  const r = broker(['keys', 'list'], { cwd: ca.root, env: { BROKER_PKI_DIR: ca.dir } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^no credentials in /);
  assert.deepEqual(json(broker(['keys', 'list', '--json'], { env: { BROKER_PKI_DIR: ca.dir } })), []);
});

test('a key expires after 90 days unless told otherwise; --expires never is explicit', () => {
  const ca = shared();
  const days = (info: KeyInfo) => Math.round((Date.parse(info.expires as string) - Date.parse(info.created)) / 86_400_000);
  const byDefault = json<KeyInfo & { key: string }>(ca.run(['keys', 'create', 'default-life', '--role', 'ops', '--json']));
  assert.equal(days(byDefault), 90);
  const short = json<KeyInfo & { key: string }>(ca.run(['keys', 'create', 'short-life', '--role', 'ops', '--expires', '30d', '--json']));
  assert.equal(days(short), 30);
  const forever = json<KeyInfo & { key: string }>(ca.run(['keys', 'create', 'long-life', '--role', 'ops', '--expires', 'never', '--json']));
  assert.equal(forever.expires, undefined);
});
