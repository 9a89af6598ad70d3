/**
 * The jwt identity format's signer: claims, the RFC 8705 certificate binding, the per-identity
 * cache, and ES256 / EdDSA tokens that jose verifies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, errors } from 'jose';
import { assertionSigner } from '../../src/proxy/assertion.ts';
import type { IdentityHeaders } from '../../src/proxy/headers.ts';

function keyFor(alg: 'ES256' | 'EdDSA'): { kid: string; alg: 'ES256' | 'EdDSA'; key: KeyObject; pub: KeyObject } {
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { kid: `kid-${alg}`, alg, key: privateKey, pub: publicKey };
}

/** A fake certificate DER: the signer sees only its SHA-256 (the fingerprint the identity carries). */
const der = Buffer.from('3082 not really a certificate, only bytes to hash');
const fingerprint = createHash('sha256').update(der).digest('hex');

for (const alg of ['ES256', 'EdDSA'] as const) {
  test(`${alg}: jose verifies the token; header, claims and cnf are as specified`, async () => {
    const k = keyFor(alg);
    const signer = assertionSigner(k, { issuer: 'https://broker.test', ttlMs: 60_000 });
    assert.equal(signer.kid, k.kid);
    const id: IdentityHeaders = { name: 'alice', roles: ['reader', 'writer'], fingerprint, serial: 'ab' };
    const token = signer.token(id, 'orders');
    assert.deepEqual(decodeProtectedHeader(token), { alg, kid: k.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, k.pub, { issuer: 'https://broker.test', audience: 'orders', algorithms: [alg], typ: 'JWT' });
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.roles, ['reader', 'writer']);
    assert.equal((payload.exp as number) - (payload.iat as number), 60);
    assert.ok(Math.abs((payload.iat as number) - Date.now() / 1000) < 5);
    assert.match(String(payload.jti), /^[A-Za-z0-9_-]{22}$/, '128 random bits, base64url');
    // RFC 8705 §3.1: base64url of the SHA-256 of the DER, no padding
    assert.deepEqual(payload.cnf, { 'x5t#S256': createHash('sha256').update(der).digest('base64url') });
    await assert.rejects(jwtVerify(token, k.pub, { audience: 'other' }), errors.JWTClaimValidationFailed);
    await assert.rejects(jwtVerify(token, k.pub, { currentDate: new Date(((payload.exp as number) + 1) * 1000) }), errors.JWTExpired);
    await assert.rejects(jwtVerify(token, keyFor(alg).pub), errors.JWSSignatureVerificationFailed);
  });
}

test('no certificate, no cnf: an API-key caller gets sub and roles only', async () => {
  const k = keyFor('ES256');
  const token = assertionSigner(k, { issuer: 'broker', ttlMs: 60_000 }).token({ name: 'batch', roles: ['reader'], keyId: '0123456789ab', methods: ['apiKey'] }, 'r1');
  const { payload } = await jwtVerify(token, k.pub);
  assert.equal(payload.cnf, undefined);
  assert.equal(payload.sub, 'batch');
});

test('a token is reused per identity and audience until half its lifetime is gone, then a new one is signed', (t) => {
  const k = keyFor('EdDSA');
  const signer = assertionSigner(k, { issuer: 'broker', ttlMs: 60_000 });
  const alice: IdentityHeaders = { name: 'alice', roles: ['r'], fingerprint };
  const bob: IdentityHeaders = { name: 'bob', roles: ['r'], fingerprint };
  let now = Date.parse('2026-01-01T00:00:00.000Z');
  t.mock.method(Date, 'now', () => now);
  const first = signer.token(alice, 'a');
  assert.equal(signer.token(alice, 'a'), first, 'same identity object and audience: same token');
  const otherAud = signer.token(alice, 'b');
  assert.notEqual(otherAud, first, 'another audience: another token');
  assert.equal(signer.token(alice, 'b'), otherAud);
  assert.equal(signer.token(alice, 'a'), first, 'the first audience is still cached');
  assert.notEqual(signer.token(bob, 'a'), first, 'another identity: another token');
  now += 29_000;
  assert.equal(signer.token(alice, 'a'), first, 'more than half of the lifetime left: reused');
  assert.equal(signer.token(alice, 'b'), otherAud);
  now += 1_000;
  const second = signer.token(alice, 'a');
  assert.notEqual(second, first, 'half of the lifetime gone: signed again');
  assert.notEqual(signer.token(alice, 'b'), otherAud);
  const p1 = JSON.parse(Buffer.from(first.split('.')[1] as string, 'base64url').toString());
  const p2 = JSON.parse(Buffer.from(second.split('.')[1] as string, 'base64url').toString());
  assert.equal(p2.iat - p1.iat, 30);
  assert.notEqual(p2.jti, p1.jti);
});

test('a key published ahead: tokens before its activateAt use the current key, and are renewed with the next one at activation', async (t) => {
  const cur = keyFor('ES256');
  const nxt = { ...keyFor('EdDSA'), kid: 'kid-next' };
  let now = Date.parse('2026-01-01T00:00:00.000Z');
  t.mock.method(Date, 'now', () => now);
  const signer = assertionSigner(cur, { issuer: 'broker', ttlMs: 60_000 }, { ...nxt, activateAt: now + 10_000 });
  const alice: IdentityHeaders = { name: 'alice', roles: ['r'], fingerprint };
  const early = signer.token(alice, 'a');
  assert.equal(decodeProtectedHeader(early).kid, cur.kid);
  assert.equal(signer.kid, cur.kid);
  now += 9_999;
  assert.equal(signer.token(alice, 'a'), early, 'reused before activation');
  now += 1;
  const late = signer.token(alice, 'a');
  assert.equal(decodeProtectedHeader(late).kid, 'kid-next', 'renewed at activation, not half a lifetime later');
  assert.equal(signer.kid, 'kid-next');
  await jwtVerify(late, nxt.pub, { currentDate: new Date(now) });
});
