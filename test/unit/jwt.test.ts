import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, SignJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { createJwtVerifier, JWT_ALGORITHMS, type JwtResult, type JwtSettings, type JwtVerifier } from '../../src/auth/jwt.ts';
import { isBrokerError } from '../../src/errors.ts';

const ISS = 'https://idp.example';
const AUD = 'broker';
const now = () => Math.floor(Date.now() / 1000);

interface Key { kid: string; alg: string; privateKey: CryptoKey; publicKey: CryptoKey; jwk: JWK }

async function makeKey(kid: string, alg: 'RS256' | 'ES256' | 'EdDSA'): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, use: 'sig' } };
}

function sign(key: Key, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ iss: ISS, aud: AUD, sub: 'alice', exp: now() + 300, iat: now(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey);
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-jwt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeJwks(t: TestContext, keys: readonly JWK[]): string {
  const file = join(tempDir(t), 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys }));
  return file;
}

function settings(over: Partial<JwtSettings>): JwtSettings {
  return {
    issuer: ISS, audience: [AUD, 'other'], algorithms: ['RS256', 'ES256', 'EdDSA'], clockSkewSec: 60,
    nameClaim: 'sub', rolesClaim: 'roles', cacheMaxAgeMs: 600_000, cooldownMs: 30_000, timeoutMs: 5000, ...over,
  };
}

function refused(r: JwtResult, reason: string, token?: string): void {
  assert.equal(r.ok, false, `expected a refusal (${reason})`);
  if (r.ok) return;
  assert.equal(r.reason, reason, r.detail);
  assert.ok(r.detail.length > 0 && r.detail.length < 300, r.detail);
  if (token) assert.ok(!r.detail.includes(token.split('.')[1] ?? token), 'detail must not carry the token');
}

let rsa: Key;
let ec: Key;
let ed: Key;
let other: Key;
async function keys(): Promise<void> {
  rsa ??= await makeKey('rsa-1', 'RS256');
  ec ??= await makeKey('ec-1', 'ES256');
  ed ??= await makeKey('ed-1', 'EdDSA');
  other ??= await makeKey('other', 'RS256');
}

async function fileVerifier(t: TestContext, over: Partial<JwtSettings> = {}): Promise<JwtVerifier> {
  await keys();
  return createJwtVerifier(settings({ jwksFile: writeJwks(t, [rsa.jwk, ec.jwk, ed.jwk]), ...over }));
}

test('admits a good RS256, ES256 and EdDSA token and maps name, roles, issuer, jti, exp', async (t) => {
  const v = await fileVerifier(t);
  const exp = now() + 120;
  const r = await v.verify(await sign(rsa, { roles: ['orders:read', 'admin'], jti: 'tok-1', exp }));
  assert.ok(r.ok);
  assert.deepEqual({ ...r.identity }, { name: 'alice', roles: ['orders:read', 'admin'], issuer: ISS, tokenId: 'tok-1', expiresAt: new Date(exp * 1000) });
  assert.ok(Object.isFrozen(r.identity) && Object.isFrozen(r.identity.roles));

  const e = await v.verify(await sign(ec, { sub: 'svc@partner.example', aud: ['x', 'other'], roles: 'a b  c' }));
  assert.ok(e.ok);
  assert.equal(e.identity.name, 'svc@partner.example');
  assert.deepEqual(e.identity.roles, ['a', 'b', 'c']);

  const d = await v.verify(await sign(ed, {}));
  assert.ok(d.ok);
  assert.deepEqual(d.identity.roles, []);
});

test('name and roles from dotted paths, URL-named claims and space-separated scopes', async (t) => {
  const v = await fileVerifier(t, { nameClaim: 'ext.partner', rolesClaim: 'realm_access.roles' });
  const r = await v.verify(await sign(rsa, { ext: { partner: 'acme-corp' }, realm_access: { roles: ['billing', 'ops'] } }));
  assert.ok(r.ok);
  assert.equal(r.identity.name, 'acme-corp');
  assert.deepEqual(r.identity.roles, ['billing', 'ops']);

  const u = await fileVerifier(t, { nameClaim: 'client_id', rolesClaim: 'https://example.com/roles' });
  const ur = await u.verify(await sign(rsa, { client_id: 'cli-7', 'https://example.com/roles': 'read write' }));
  assert.ok(ur.ok);
  assert.equal(ur.identity.name, 'cli-7');
  assert.deepEqual(ur.identity.roles, ['read', 'write']);

  const s = await fileVerifier(t, { rolesClaim: 'scope' });
  const sr = await s.verify(await sign(rsa, { scope: 'openid orders:read' }));
  assert.ok(sr.ok);
  assert.deepEqual(sr.identity.roles, ['openid', 'orders:read']);
});

test('roles: invalid entries dropped, duplicates removed, at most 64; other shapes give no roles', async (t) => {
  const v = await fileVerifier(t);
  const many = Array.from({ length: 100 }, (_, i) => `r${i}`);
  const cases: Array<[unknown, string[]]> = [
    [['ok', 'ok', 'with space', 'a,b', '-lead', '', 7, null, { x: 1 }, 'x'.repeat(65), 'fine.role_1:x-y'], ['ok', 'fine.role_1:x-y']],
    [many, many.slice(0, 64)],
    [42, []],
    [{ admin: true }, []],
    [undefined, []],
  ];
  for (const [roles, want] of cases) {
    const r = await v.verify(await sign(rsa, roles === undefined ? {} : { roles }));
    assert.ok(r.ok);
    assert.deepEqual(r.identity.roles, want);
  }
});

test('refuses a bad signature for a known kid, and an unknown kid', async (t) => {
  const v = await fileVerifier(t);
  const forged = await sign({ ...other, kid: rsa.kid }, {});
  refused(await v.verify(forged), 'signature', forged);
  refused(await v.verify(await sign(other, {})), 'no-key');
});

test('a token without kid verifies against the one key that fits, and fails with another', async (t) => {
  await keys();
  const second = await makeKey('rsa-2', 'RS256');
  const file = writeJwks(t, [rsa.jwk, second.jwk].map(({ kid: _, ...jwk }) => jwk));
  const v = createJwtVerifier(settings({ jwksFile: file }));
  for (const k of [rsa, second]) {
    const r = await v.verify(await sign({ ...k, kid: '' }, {}, { kid: undefined }));
    assert.ok(r.ok, r.ok ? '' : r.detail);
  }
  refused(await v.verify(await sign({ ...other, kid: '' }, {}, { kid: undefined })), 'signature');
});

test('refuses alg none, HS256 keyed with the public key, and algorithms not configured', async (t) => {
  const v = await fileVerifier(t, { algorithms: ['RS256', 'ES256'] });
  const claims = { iss: ISS, aud: AUD, sub: 'alice', exp: now() + 300 };
  for (const token of [`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`, `${b64({ alg: 'none', kid: rsa.kid })}.${b64(claims)}.${b64('x')}`]) {
    refused(await v.verify(token), 'algorithm', token);
  }
  const secrets = [await exportSPKI(rsa.publicKey), JSON.stringify(rsa.jwk), JSON.stringify(ec.jwk)];
  for (const secret of secrets) {
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(new TextEncoder().encode(secret));
    const r = await v.verify(token);
    refused(r, 'algorithm', token);
    assert.match(r.ok ? '' : r.detail, /"HS256"/);
  }
  refused(await v.verify(await sign(ed, {})), 'algorithm');
});

test('refuses wrong audience or issuer, a missing exp, a future nbf, and a tampered payload', async (t) => {
  const v = await fileVerifier(t);
  refused(await v.verify(await sign(rsa, { aud: 'someone-else' })), 'claims');
  refused(await v.verify(await sign(rsa, { aud: ['x', 'y'] })), 'claims');
  refused(await v.verify(await sign(rsa, { iss: 'https://evil.example' })), 'claims');
  refused(await v.verify(await sign(rsa, { iss: `${ISS}/` })), 'claims');
  refused(await v.verify(await sign(rsa, { exp: undefined })), 'claims');
  refused(await v.verify(await sign(rsa, { exp: 'soon' as unknown as number })), 'claims');
  refused(await v.verify(await sign(rsa, { nbf: now() + 600 })), 'claims');

  const good = await sign(rsa, { roles: ['user'] });
  const [h, , s] = good.split('.');
  const tampered = `${h}.${b64({ iss: ISS, aud: AUD, sub: 'alice', exp: now() + 300, roles: ['admin'] })}.${s}`;
  refused(await v.verify(tampered), 'signature', tampered);
});

test('exp is checked with the clock skew', async (t) => {
  const v = await fileVerifier(t, { clockSkewSec: 60 });
  assert.ok((await v.verify(await sign(rsa, { exp: now() - 20 }))).ok);
  assert.ok((await v.verify(await sign(rsa, { nbf: now() + 20 }))).ok);
  const r = await v.verify(await sign(rsa, { exp: now() - 600 }));
  refused(r, 'expired');
  assert.match(r.ok ? '' : r.detail, /expired at \d{4}-/);
  const strict = await fileVerifier(t, { clockSkewSec: 0 });
  refused(await strict.verify(await sign(rsa, { exp: now() - 20 })), 'expired');
});

test('malformed tokens are refused before any key lookup', async (t) => {
  const v = await fileVerifier(t);
  const good = await sign(rsa, {});
  const [h, p] = good.split('.');
  const cases = [
    '', 'abc', 'a.b', 'a.b.c.d', `${good} `, `Bearer ${good}`, `${h}.${p}.sig+/=`, `${h}..${p}`,
    `${b64('not json')}.${p}.AAAA`, `${b64([1, 2])}.${p}.AAAA`, `${b64({ kid: rsa.kid })}.${p}.AAAA`,
    `${h}.${p}.${'A'.repeat(16 * 1024)}`,
  ];
  for (const token of cases) refused(await v.verify(token), 'malformed');
  refused(await v.verify(undefined as unknown as string), 'malformed');
  // Signed, but the claims set is not a JSON object.
  const signedArray = await new CompactSign(new TextEncoder().encode('[]')).setProtectedHeader({ alg: 'RS256', kid: rsa.kid }).sign(rsa.privateKey);
  refused(await v.verify(signedArray), 'malformed');
});

test('refuses a name claim that is missing, not a string, or not header-safe', async (t) => {
  const v = await fileVerifier(t);
  const bad: unknown[] = [undefined, 42, ['alice'], '', 'alice bob', 'a,b', 'alice\r\nx-admin: 1', '-alice', 'a'.repeat(129), 'ålice'];
  for (const sub of bad) {
    const r = await v.verify(await sign(rsa, { sub: sub as string }));
    refused(r, 'claims');
    assert.ok(!/[\r\n]/.test(r.ok ? '' : r.detail));
  }
  assert.ok((await v.verify(await sign(rsa, { sub: 'a'.repeat(128) }))).ok);
});

test('bad settings throw BRK_ERR_CONFIG_INVALID naming each problem', async (t) => {
  await keys();
  const file = writeJwks(t, [rsa.jwk]);
  const dir = tempDir(t);
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const cases: Array<[Partial<JwtSettings>, RegExp]> = [
    [{ jwksUrl: 'http://idp.example/jwks' }, /jwksUrl: .*must be https/],
    [{ jwksUrl: 'http://10.0.0.1/jwks' }, /must be https/],
    [{ jwksUrl: 'http://127.evil.example/jwks' }, /must be https/],
    [{ jwksUrl: 'ftp://idp.example/jwks' }, /must be https/],
    [{ jwksUrl: 'not a url' }, /not a URL/],
    [{ jwksUrl: 'https://u:p@idp.example/jwks' }, /credentials/],
    [{ jwksUrl: 'https://idp.example/jwks', jwksFile: file }, /exactly one of jwksUrl and jwksFile/],
    [{}, /exactly one of jwksUrl and jwksFile/],
    [{ jwksFile: file, algorithms: ['RS256', 'HS256'] }, /HS256 is symmetric/],
    [{ jwksFile: file, algorithms: ['none'] }, /"none"/],
    [{ jwksFile: file, algorithms: ['RS1'] }, /unknown algorithm/],
    [{ jwksFile: file, algorithms: [] }, /algorithms/],
    [{ jwksFile: file, audience: [] }, /audience/],
    [{ jwksFile: file, issuer: '' }, /issuer/],
    [{ jwksFile: file, timeoutMs: 0 }, /timeout/],
    [{ jwksFile: file, cooldownMs: Number.NaN }, /cooldown/],
    [{ jwksFile: file, jwksCa: write('ca.pem', 'x') }, /jwksCa: only used with an https jwksUrl/],
    [{ jwksUrl: 'https://idp.example/jwks', jwksCa: write('empty.pem', 'nothing') }, /no PEM certificate/],
    [{ jwksUrl: 'https://idp.example/jwks', jwksCa: join(dir, 'missing.pem') }, /error reading file/],
    [{ jwksFile: join(dir, 'missing.json') }, /error reading JWKS file/],
    [{ jwksFile: write('bad.json', '{"keys": [') }, /error reading JWKS file/],
    [{ jwksFile: write('empty.json', '{"keys": []}') }, /not a JWKS/],
    [{ jwksFile: write('oct.json', JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] })) }, /RSA, EC or OKP/],
    [{ jwksFile: write('priv.json', JSON.stringify({ keys: [await exportJWK(rsa.privateKey)] })) }, /private key/],
  ];
  for (const [over, message] of cases) {
    assert.throws(() => createJwtVerifier(settings(over)), (err) => {
      assert.ok(isBrokerError(err, 'BRK_ERR_CONFIG_INVALID'), String(err));
      assert.match(err.message, message);
      return true;
    }, JSON.stringify(over));
  }
  // Several problems are reported together.
  assert.throws(() => createJwtVerifier(settings({ jwksUrl: 'http://idp.example/j', algorithms: ['HS512'], issuer: '' })), /3 problems/);
});

test('loopback http JWKS URLs are accepted (nothing is fetched until a token comes)', () => {
  for (const jwksUrl of ['http://127.0.0.1:9/jwks', 'http://127.1.2.3/jwks', 'http://[::1]:9/jwks', 'http://localhost:9/jwks', 'https://idp.example/.well-known/jwks.json']) {
    assert.doesNotThrow(() => createJwtVerifier(settings({ jwksUrl })), jwksUrl);
  }
});

test('JWT_ALGORITHMS is asymmetric only', () => {
  assert.ok(JWT_ALGORITHMS.includes('RS256') && JWT_ALGORITHMS.includes('ES256') && JWT_ALGORITHMS.includes('EdDSA'));
  assert.ok(JWT_ALGORITHMS.every((a) => !/^(HS|none)/i.test(a)));
  assert.ok(Object.isFrozen(JWT_ALGORITHMS));
});

test('typ: when configured, only tokens with that "typ" header pass (an ID token is not an access token)', async (t) => {
  const v = await fileVerifier(t, { typ: 'at+jwt' });
  assert.equal((await v.verify(await sign(ec, {}, { typ: 'at+jwt' }))).ok, true);
  refused(await v.verify(await sign(ec, {}, { typ: 'JWT' })), 'claims');
  refused(await v.verify(await sign(ec, {})), 'claims');
  const any = await fileVerifier(t);
  assert.equal((await any.verify(await sign(ec, {}, { typ: 'JWT' }))).ok, true, 'without typ configured, any typ passes');
});
