/**
 * The store's identity assertion keys (pki/assertion.ts): init makes one, rotation keeps the
 * replaced key published until its retireAt and removes it after, kid is the RFC 7638 thumbprint,
 * files have their modes, every change has its audit line.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { tempDir } from '../helpers/cli.ts';
import { initCa } from '../../src/pki/init.ts';
import { storeLayout } from '../../src/pki/layout.ts';
import { loadAssertionKeys, readAssertionKeys, rotateAssertionKey } from '../../src/pki/assertion.ts';
import { readHead, verifyAudit } from '../../src/pki/audit.ts';
import { isBrokerError } from '../../src/errors.ts';

async function store(t: TestContext) {
  const dir = join(tempDir(t, 'broker-assert-'), 'pki');
  const r = await initCa({ dir, name: 'Test CA', keyType: 'ec-p256', trustDomain: 'test.example', passphrase: 'correct horse' });
  return { dir, l: storeLayout(dir), init: r };
}

const mode = (f: string) => statSync(f).mode & 0o777;
const auditLines = (dir: string) => readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const keyFiles = (dir: string) => readdirSync(join(dir, 'assertion')).filter((n) => n.endsWith('.key')).sort();

test('init creates one ES256 key: file 0600, keys.json 0600, jwks.json 0644 with public keys only, kid = thumbprint', async (t) => {
  const { dir, l, init } = await store(t);
  const meta = readAssertionKeys(l);
  assert.ok(meta);
  assert.equal(meta.current, init.assertionKid);
  assert.equal(meta.keys.length, 1);
  assert.equal(meta.keys[0]?.alg, 'ES256');
  assert.equal(mode(l.assertionKey(meta.current)), 0o600);
  assert.equal(mode(l.assertionKeys), 0o600);
  assert.equal(mode(l.assertionJwks), 0o644);
  assert.match(readFileSync(l.assertionKey(meta.current), 'utf8'), /^-----BEGIN PRIVATE KEY-----/, 'PKCS#8, unencrypted although the CA keys are');
  const jwks = JSON.parse(readFileSync(l.assertionJwks, 'utf8'));
  assert.equal(jwks.keys.length, 1);
  const [jwk] = jwks.keys;
  assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  assert.equal(jwk.use, 'sig');
  assert.equal(jwk.d, undefined);
  assert.equal(jwk.kid, await calculateJwkThumbprint(jwk, 'sha256'));
  assert.equal(jwk.kid, meta.current);
  const loaded = loadAssertionKeys(dir);
  assert.equal(loaded.current.kid, meta.current);
  assert.equal(loaded.current.key.type, 'private');
  assert.deepEqual(loaded.jwks, jwks);
  assert.equal(loaded.nextRetireAt, undefined);
});

test('rotation: new key current, the previous published until retireAt, then removed (entry and file) at the next rotation', async (t) => {
  const { dir, l, init } = await store(t);
  const t0 = Date.now();
  const r1 = await rotateAssertionKey({ layout: l }, { alg: 'EdDSA', overlapMs: 3_600_000, now: t0 });
  assert.equal(r1.alg, 'EdDSA');
  assert.equal(r1.previous?.kid, init.assertionKid);
  assert.equal(r1.previous?.retireAt, new Date(t0 + 3_600_000).toISOString());
  assert.deepEqual(r1.published, [r1.kid, init.assertionKid]);
  const line = auditLines(dir).at(-1) as Record<string, unknown>;
  assert.equal(line.op, 'rotate-assertion-key');
  assert.equal(line.outcome, 'ok');
  assert.match(String(line.detail), new RegExp(`kid=${r1.kid} alg=EdDSA previous=${init.assertionKid}`));
  assert.equal(verifyAudit(readFileSync(l.auditLog, 'utf8'), readHead(l.auditHead)).ok, true);

  const during = loadAssertionKeys(dir, t0 + 1000);
  assert.equal(during.current.kid, r1.kid);
  assert.equal(during.current.alg, 'EdDSA');
  assert.deepEqual(during.jwks.keys.map((k) => k.kid), [r1.kid, init.assertionKid]);
  assert.equal(during.nextRetireAt, t0 + 3_600_000);
  const okp = during.jwks.keys[0] as Record<string, unknown>;
  assert.equal(okp.kty, 'OKP');
  assert.equal(okp.crv, 'Ed25519');
  assert.equal(okp.kid, await calculateJwkThumbprint(okp, 'sha256'));
  const after = loadAssertionKeys(dir, t0 + 3_600_001);
  assert.deepEqual(after.jwks.keys.map((k) => k.kid), [r1.kid], 'past retireAt: not published');
  assert.equal(after.nextRetireAt, undefined);
  assert.deepEqual(keyFiles(dir), [`${init.assertionKid}.key`, `${r1.kid}.key`].sort(), 'the file stays until the next rotation');

  const r2 = await rotateAssertionKey(l, { overlapMs: 60_000, now: t0 + 3_600_001 });
  assert.deepEqual(r2.removed, [init.assertionKid]);
  assert.deepEqual(r2.published, [r2.kid, r1.kid]);
  assert.deepEqual(keyFiles(dir), [`${r1.kid}.key`, `${r2.kid}.key`].sort());
  assert.deepEqual(readAssertionKeys(l)?.keys.map((k) => k.kid), [r2.kid, r1.kid]);
  assert.deepEqual(JSON.parse(readFileSync(l.assertionJwks, 'utf8')).keys.map((k: { kid: string }) => k.kid), [r2.kid, r1.kid]);
  assert.match(String(auditLines(dir).at(-1)?.detail), new RegExp(`removed=${init.assertionKid}`));
});

test('--overlap 0 retires the replaced key at once: not published, its file gone', async (t) => {
  const { dir, l, init } = await store(t);
  const r = await rotateAssertionKey(l, { overlapMs: 0 });
  assert.deepEqual(r.removed, [init.assertionKid]);
  assert.deepEqual(r.published, [r.kid]);
  assert.deepEqual(loadAssertionKeys(dir).jwks.keys.map((k) => k.kid), [r.kid]);
  assert.equal(existsSync(l.assertionKey(init.assertionKid)), false);
});

test('a store made before assertion keys: loading says BRK_ERR_ASSERTION_KEY_MISSING; rotation creates the first key', async (t) => {
  const { dir, l } = await store(t);
  rmSync(l.assertionDir, { recursive: true });
  assert.throws(() => loadAssertionKeys(dir), (e: unknown) => isBrokerError(e, 'BRK_ERR_ASSERTION_KEY_MISSING') && /pki rotate assertion-key/.test(e.hint));
  const r = await rotateAssertionKey(l);
  assert.equal(r.previous, undefined);
  assert.equal(r.alg, 'ES256');
  assert.equal(loadAssertionKeys(dir).current.kid, r.kid);
});

test('a damaged keys.json is BRK_ERR_ASSERTION_KEYS_CORRUPT, and rotation refuses it (audited) without changing anything', async (t) => {
  const { dir, l } = await store(t);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(l.assertionKeys, '{"format":"broker-assertion-keys/1","current":"x","keys":[]}');
  assert.throws(() => loadAssertionKeys(dir), (e: unknown) => isBrokerError(e, 'BRK_ERR_ASSERTION_KEYS_CORRUPT'));
  const before = keyFiles(dir);
  await assert.rejects(rotateAssertionKey(l), (e: unknown) => isBrokerError(e, 'BRK_ERR_ASSERTION_KEYS_CORRUPT'));
  assert.deepEqual(keyFiles(dir), before);
  const last = auditLines(dir).at(-1) as Record<string, unknown>;
  assert.equal(last.op, 'rotate-assertion-key');
  assert.equal(last.outcome, 'error');
  assert.equal(last.code, 'BRK_ERR_ASSERTION_KEYS_CORRUPT');
});

test('--publish-ahead: the new key is published at once and signs from activateAt; the old one signs until then and retires overlap after it', async (t) => {
  const { dir, l, init } = await store(t);
  const t0 = Date.now();
  const r = await rotateAssertionKey(l, { overlapMs: 60_000, aheadMs: 600_000, now: t0 });
  assert.equal(r.activateAt, new Date(t0 + 600_000).toISOString());
  assert.equal(r.previous?.retireAt, new Date(t0 + 660_000).toISOString());
  assert.deepEqual(r.published, [r.kid, init.assertionKid]);
  assert.equal(readAssertionKeys(l)?.keys[0]?.activateAt, r.activateAt);
  const before = loadAssertionKeys(dir, t0 + 1000);
  assert.equal(before.current.kid, init.assertionKid, 'before activation the old key signs');
  assert.equal(before.next?.kid, r.kid);
  assert.equal(before.next?.activateAt, t0 + 600_000);
  assert.deepEqual(before.jwks.keys.map((k) => k.kid), [r.kid, init.assertionKid], 'both published');
  const after = loadAssertionKeys(dir, t0 + 600_001);
  assert.equal(after.current.kid, r.kid);
  assert.equal(after.next, undefined);
  assert.deepEqual(loadAssertionKeys(dir, t0 + 660_001).jwks.keys.map((k) => k.kid), [r.kid]);
  // a store without a key has nothing to sign with meanwhile: its first key is active at once
  const fresh = await store(t);
  rmSync(fresh.l.assertionDir, { recursive: true });
  const first = await rotateAssertionKey(fresh.l, { aheadMs: 600_000, now: t0 });
  assert.equal(first.activateAt, new Date(t0).toISOString());
  assert.equal(loadAssertionKeys(fresh.dir, t0 + 1).current.kid, first.kid);
});
