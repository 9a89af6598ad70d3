/**
 * Credentials per route, end to end through real TLS: API keys and Basic credentials from the
 * store's keys.json, bearer tokens against a local JWKS server, certificate + key together, the
 * certificate-optional listener, credential stripping, bans, logs and metrics.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createPublicKey } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { makePki, startBroker, startUpstream, request, LENIENT, type RunningBroker } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';
import { eventually } from '../helpers/within.ts';
import { createKey, revokeKey } from '../../src/pki/credentials.ts';
import { validateConfig } from '../../src/config/index.ts';

const OPTIONAL = { listenCertOptional: { host: '127.0.0.1', port: 0 } };

function optionalPort(b: RunningBroker): number {
  return (b.broker.optionalServer?.address() as AddressInfo).port;
}

async function setup(t: TestContext, routes: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...OPTIONAL, routes: routes.map((r) => ({ upstream: up.url, ...r })), ...extra });
  return { pki, up, b, opt: optionalPort(b) };
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('API key route: the right key is admitted as its identity; wrong, tampered, unknown, revoked, expired and missing keys are refused', async (t) => {
  const { pki, up, b, opt } = await setup(t, [{ name: 'keys', path: '/k', roles: ['billing'], auth: ['apiKey'] }]);
  const good = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  const other = await createKey(pki.store, { name: 'beta', roles: ['billing'], kind: 'apiKey' });
  const old = await createKey(pki.store, { name: 'gamma', roles: ['billing'], kind: 'apiKey', expiresMs: 60_000, now: Date.now() - 120_000 });
  await b.broker.reload();

  const ok = await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': good.secret } });
  assert.equal(ok.status, 200, ok.text);
  const seen = up.seen.at(-1)!;
  assert.equal(seen.headers['x-client-name'], 'acme');
  assert.equal(seen.headers['x-client-roles'], 'billing');
  assert.equal(seen.headers['x-client-auth'], 'apiKey');
  assert.equal(seen.headers['x-client-key-id'], good.record.id);
  assert.equal(seen.headers['x-api-key'], undefined, 'the key never reaches the upstream');
  assert.equal(seen.headers['x-client-serial'], undefined);
  assert.equal(seen.headers['x-forwarded-client-cert'], undefined);

  const last = good.secret.at(-1) === 'A' ? 'B' : 'A';
  // brk_<12 hex id>_<secret>; the secret is base64url and may itself hold "_".
  const secretPart = good.secret.slice('brk_'.length + 12 + 1);
  const refused: Array<[string, Record<string, string>, string]> = [
    ['missing', {}, 'BRK_ERR_AUTH_REQUIRED'],
    ['tampered', { 'x-api-key': good.secret.slice(0, -1) + last }, 'BRK_ERR_AUTH_INVALID'],
    ['another key\'s id with this secret', { 'x-api-key': `brk_${other.record.id}_${secretPart}` }, 'BRK_ERR_AUTH_INVALID'],
    ['unknown id', { 'x-api-key': `brk_000000000000_${secretPart}` }, 'BRK_ERR_AUTH_INVALID'],
    ['malformed', { 'x-api-key': 'hunter2' }, 'BRK_ERR_AUTH_INVALID'],
    ['expired', { 'x-api-key': old.secret }, 'BRK_ERR_AUTH_INVALID'],
  ];
  const before = up.seen.length;
  for (const [what, headers, code] of refused) {
    const r = await request(opt, { ca: pki.ca, path: '/k/x', headers });
    assert.equal(r.status, 401, what);
    assert.equal(r.json().code, code, what);
  }
  // Two copies of the header: refused, not guessed at.
  const twice = await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': [good.secret, good.secret] } });
  assert.equal(twice.status, 401);

  await revokeKey(pki.store, good.record.id);
  assert.equal((await b.broker.reload()).ok, true);
  const revoked = await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': good.secret } });
  assert.equal(revoked.status, 401, 'revoked after a reload, although it was cached');
  assert.equal(up.seen.length, before, 'nothing refused reached the upstream');

  const reasons = b.logs.of('auth').filter((l) => l.event === 'credential').map((l) => l.reason);
  for (const r of ['missing', 'wrong', 'unknown', 'malformed', 'expired', 'revoked']) assert.ok(reasons.includes(r), `auth log says ${r}: ${reasons.join(',')}`);
  const access = b.logs.of('access').find((l) => l.status === 200);
  assert.deepEqual(access?.auth, ['apiKey']);
  assert.equal(access?.principal, 'acme');
  for (const line of (['auth', 'access', 'error', 'audit'] as const).flatMap((s) => b.logs.of(s))) assert.ok(!JSON.stringify(line).includes(secretPart), 'the secret is never logged');
});

test('certificate + API key: both required, of the same identity; roles are those both vouch for', async (t) => {
  const { pki, up, b, opt } = await setup(t, [
    { name: 'both', path: '/both', roles: ['billing', 'admin'], auth: ['mtls', 'apiKey'] },
    { name: 'admin', path: '/admin', roles: ['admin'], auth: ['mtls', 'apiKey'] },
  ]);
  const alice = await pki.issue('alice', ['billing', 'admin']);
  const bob = await pki.issue('bob', ['billing']);
  const aliceKey = await createKey(pki.store, { name: 'alice', roles: ['billing'], kind: 'apiKey' });
  await b.broker.reload();

  const both = await request(b.port, { id: alice, ca: pki.ca, path: '/both/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(both.status, 200, both.text);
  const seen = up.seen.at(-1)!;
  assert.equal(seen.headers['x-client-auth'], 'mtls,apiKey');
  assert.equal(seen.headers['x-client-roles'], 'billing', 'the key vouches for billing only');
  assert.equal(seen.headers['x-client-serial'], alice.serial);
  assert.ok(seen.headers['x-forwarded-client-cert']);

  const certOnly = await request(b.port, { id: alice, ca: pki.ca, path: '/both/x' });
  assert.equal(certOnly.status, 401);
  assert.equal(certOnly.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const keyOnly = await request(opt, { ca: pki.ca, path: '/both/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(keyOnly.status, 401);
  assert.equal(keyOnly.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const mixed = await request(b.port, { id: bob, ca: pki.ca, path: '/both/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(mixed.status, 401);
  assert.equal(mixed.json().code, 'BRK_ERR_AUTH_MISMATCH');
  // The certificate alone holds admin, the key does not: the pair does not.
  const admin = await request(b.port, { id: alice, ca: pki.ca, path: '/admin/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(admin.status, 403);
  // A certificate on the optional listener counts too, and must match the key's identity.
  const optBoth = await request(opt, { id: alice, ca: pki.ca, path: '/both/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(optBoth.status, 200);
  const optMixed = await request(opt, { id: bob, ca: pki.ca, path: '/both/x', headers: { 'x-api-key': aliceKey.secret } });
  assert.equal(optMixed.status, 401);
});

test('a key-only route reached with a certificate of another identity is refused', async (t) => {
  const { pki, b } = await setup(t, [{ name: 'keys', path: '/k', roles: ['billing'], auth: ['apiKey'] }]);
  const bob = await pki.issue('bob', ['billing']);
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  await b.broker.reload();
  const r = await request(b.port, { id: bob, ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } });
  assert.equal(r.status, 401);
  assert.equal(r.json().code, 'BRK_ERR_AUTH_MISMATCH');
});

test('the main listener still requires a certificate; the optional one admits none but refuses a bad one, and hides the routes', async (t) => {
  const { pki, b, opt } = await setup(t, [
    { name: 'certs', path: '/c', roles: ['billing'] },
    { name: 'keys', path: '/k', roles: ['billing'], auth: ['apiKey'] },
  ]);
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  await b.broker.reload();
  await assert.rejects(request(b.port, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } }), 'no certificate, no handshake on the main listener');

  const certRoute = await request(opt, { ca: pki.ca, path: '/c/x' });
  assert.equal(certRoute.status, 401);
  assert.equal(certRoute.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const unknown = await request(opt, { ca: pki.ca, path: '/nothing-here' });
  assert.equal(unknown.status, 401, 'no 404 to tell which paths exist');

  const alice = await pki.issue('alice', ['billing']);
  assert.equal((await request(opt, { id: alice, ca: pki.ca, path: '/c/x' })).status, 200, 'a good certificate works on the optional listener too');
  await pki.revoke('alice');
  await b.broker.reload();
  const revokedRes = await request(opt, { id: alice, ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } });
  assert.equal(revokedRes.status, 495, 'a revoked certificate is refused on the optional listener as well (told why, the API key never looked at)');
  assert.equal(revokedRes.json().reason, 'certificate revoked');
  await eventually(() => b.logs.of('auth').some((l) => l.event === 'handshake' && l.outcome === 'refused' && l.reason === 'revoked'), 'the refusal is logged with its reason');
});

test('Basic: the right password is admitted; a wrong one gets 401 with a challenge; failures count towards the ban', async (t) => {
  const { pki, up, b, opt } = await setup(t, [{ name: 'legacy', path: '/legacy', roles: ['billing'], auth: ['basic'] }], {
    bans: { enabled: true, failedHandshakes: 3, deniedRequests: 1000, window: '1m', duration: '1m' },
  });
  const cred = await createKey(pki.store, { name: 'oldco', roles: ['billing'], kind: 'basic' });
  await b.broker.reload();
  const ok = await request(opt, { ca: pki.ca, path: '/legacy/x', headers: { authorization: basic('oldco', cred.secret) } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(up.seen.at(-1)!.headers['x-client-name'], 'oldco');
  assert.equal(up.seen.at(-1)!.headers.authorization, undefined, 'Basic credentials are stripped');

  const none = await request(opt, { ca: pki.ca, path: '/legacy/x' });
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Basic realm="broker"/);
  for (let i = 0; i < 3; i++) {
    const wrong = await request(opt, { ca: pki.ca, path: '/legacy/x', headers: { authorization: basic('oldco', cred.secret.replace(/.$/, (c) => (c === 'x' ? 'y' : 'x'))) } });
    assert.equal(wrong.status, 401);
  }
  // Banned now: the next connection is refused at accept, even with the right password.
  await eventually(() => b.logs.of('auth').some((l) => l.event === 'ban'), 'the ban');
  await assert.rejects(request(opt, { ca: pki.ca, path: '/legacy/x', headers: { authorization: basic('oldco', cred.secret) } }));
});

test('Basic: expired, revoked, unknown users and empty passwords are refused', async (t) => {
  const { pki, up, b, opt } = await setup(t, [{ name: 'legacy', path: '/legacy', roles: ['billing'], auth: ['basic'] }]);
  const cred = await createKey(pki.store, { name: 'oldco', roles: ['billing'], kind: 'basic' });
  const old = await createKey(pki.store, { name: 'pastco', roles: ['billing'], kind: 'basic', expiresMs: 60_000, now: Date.now() - 120_000 });
  const gone = await createKey(pki.store, { name: 'goneco', roles: ['billing'], kind: 'basic' });
  await revokeKey(pki.store, 'goneco');
  await b.broker.reload();
  for (const [user, pass, what] of [['pastco', old.secret, 'expired'], ['goneco', gone.secret, 'revoked'], ['nobody', cred.secret, 'unknown user'], ['oldco', '', 'empty password']] as const) {
    const r = await request(opt, { ca: pki.ca, path: '/legacy/x', headers: { authorization: basic(user, pass) } });
    assert.equal(r.status, 401, what);
  }
  assert.equal(up.seen.length, 0);
  const reasons = b.logs.of('auth').filter((l) => l.event === 'credential').map((l) => l.reason);
  for (const r of ['expired', 'revoked']) assert.ok(reasons.includes(r), `auth log says ${r}: ${reasons.join(',')}`);
});

test('credentials pass to the upstream only when the route says so', async (t) => {
  const { pki, up, b, opt } = await setup(t, [{ name: 'pass', path: '/p', roles: ['billing'], auth: ['basic'], passCredentials: true }]);
  const cred = await createKey(pki.store, { name: 'oldco', roles: ['billing'], kind: 'basic' });
  await b.broker.reload();
  const header = basic('oldco', cred.secret);
  assert.equal((await request(opt, { ca: pki.ca, path: '/p/x', headers: { authorization: header } })).status, 200);
  assert.equal(up.seen.at(-1)!.headers.authorization, header);
});

test('an mtls-only route forwards the client\'s own Authorization but never the broker\'s API key header', async (t) => {
  const { pki, up, b } = await setup(t, [{ name: 'certs', path: '/c', roles: ['billing'] }]);
  const alice = await pki.issue('alice', ['billing']);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/c/x', headers: { authorization: 'Bearer upstream-own', 'x-api-key': 'brk_x_y' } })).status, 200);
  assert.equal(up.seen.at(-1)!.headers.authorization, 'Bearer upstream-own');
  assert.equal(up.seen.at(-1)!.headers['x-api-key'], undefined);
  assert.equal(up.seen.at(-1)!.headers['x-client-auth'], 'mtls');
});

// ---------------------------------------------------------------- bearer tokens

interface Jwks {
  url: string;
  keys: JWK[];
  hits: number;
  stop(): Promise<void>;
}

async function jwksServer(t: TestContext): Promise<Jwks> {
  const state: Jwks = { url: '', keys: [], hits: 0, stop: async () => {} };
  const server = createServer((_req, res) => {
    state.hits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  state.stop = () => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(() => state.stop());
  return state;
}

async function signer(alg: 'ES256' | 'RS256', kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { privateKey, publicKey, jwk, kid, alg };
}

const ISS = 'https://idp.test.example';
const AUD = 'broker-api';

function token(k: { privateKey: CryptoKey; kid: string; alg: string }, claims: Record<string, unknown> = {}, o: { exp?: number | string; aud?: string; iss?: string } = {}) {
  return new SignJWT({ roles: ['billing'], ...claims })
    .setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' })
    .setSubject('acme')
    .setIssuer(o.iss ?? ISS)
    .setAudience(o.aud ?? AUD)
    .setIssuedAt()
    .setExpirationTime(o.exp ?? '5m')
    .sign(k.privateKey);
}

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function jwtSetup(t: TestContext, jwt: Record<string, unknown> = {}) {
  const jwks = await jwksServer(t);
  const a = await signer('ES256', 'key-a');
  jwks.keys = [a.jwk];
  const s = await setup(t, [{ name: 'api', path: '/api', roles: ['billing'], auth: ['jwt'] }], {
    auth: { jwt: { jwksUrl: jwks.url, issuer: ISS, audience: [AUD], cooldown: '50ms', ...jwt } },
  });
  return { ...s, jwks, a };
}

test('bearer token: a good token is admitted as its subject with its roles; forged, none, HS256-with-public-key, wrong audience and expired tokens are refused', async (t) => {
  const { pki, up, opt, a, b } = await jwtSetup(t);
  const call = (tok: string) => request(opt, { ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${tok}` } });

  const good = await call(await token(a));
  assert.equal(good.status, 200, good.text);
  const seen = up.seen.at(-1)!;
  assert.equal(seen.headers['x-client-name'], 'acme');
  assert.equal(seen.headers['x-client-roles'], 'billing');
  assert.equal(seen.headers['x-client-auth'], 'jwt');
  assert.equal(seen.headers.authorization, undefined, 'the token is stripped');

  const intruder = await signer('ES256', 'key-a'); // same kid, another key
  const publicPem = createPublicKey(await exportJWK(a.publicKey).then((j) => ({ key: j as never, format: 'jwk' as const }))).export({ type: 'spki', format: 'pem' }) as string;
  const hs = await new SignJWT({ roles: ['billing'] }).setProtectedHeader({ alg: 'HS256', kid: 'key-a' }).setSubject('acme').setIssuer(ISS).setAudience(AUD).setExpirationTime('5m').sign(new TextEncoder().encode(publicPem));
  const goodToken = await token(a);
  const [h, p] = goodToken.split('.');
  const tampered = `${h}.${b64url({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), roles: ['admin', 'billing'] })}.${goodToken.split('.')[2]}`;
  const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'acme', iss: ISS, aud: AUD, exp: Math.floor(Date.now() / 1000) + 300, roles: ['billing'] })}.`;
  const bad: Array<[string, string]> = [
    ['signed with another key', await token(intruder)],
    ['alg none', none],
    ['HS256 made with the public key', hs],
    ['wrong audience', await token(a, {}, { aud: 'someone-else' })],
    ['wrong issuer', await token(a, {}, { iss: 'https://evil.example' })],
    ['expired', await token(a, {}, { exp: Math.floor(Date.now() / 1000) - 600 })],
    ['tampered claims', tampered],
    ['not a JWT', 'abc.def'],
  ];
  const before = up.seen.length;
  for (const [what, tok] of bad) {
    const r = await call(tok);
    assert.equal(r.status, 401, what);
    assert.equal(r.json().code, 'BRK_ERR_AUTH_INVALID', what);
    assert.match(String(r.headers['www-authenticate']), /^Bearer realm="broker", error="invalid_token"/, what);
  }
  assert.equal(up.seen.length, before);
  const missing = await request(opt, { ca: pki.ca, path: '/api/x' });
  assert.equal(missing.status, 401);
  assert.equal(missing.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const basicInstead = await request(opt, { ca: pki.ca, path: '/api/x', headers: { authorization: basic('acme', 'x') } });
  assert.equal(basicInstead.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const text = await b.broker.metrics.registry.getSingleMetricAsString('broker_credentials_total');
  assert.match(text, /method="jwt",outcome="refused"/);
  assert.match(text, /method="jwt",outcome="ok"/);
});

test('bearer token: a JWKS key rotation is picked up without a restart; an unreachable JWKS answers 503', async (t) => {
  const { pki, opt, a, jwks } = await jwtSetup(t);
  const call = async (tok: string) => (await request(opt, { ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${tok}` } })).status;
  assert.equal(await call(await token(a)), 200);

  const next = await signer('RS256', 'key-b');
  jwks.keys = [next.jwk]; // the identity provider rotates: key A is gone
  await eventually(async () => (await call(await token(next))) === 200, 'a token of the new key is admitted (the JWKS is fetched again for the unknown kid)');
  assert.equal(await call(await token(a)), 401, 'the old key is no longer trusted once the JWKS was fetched again');

  await jwks.stop();
  const third = await signer('ES256', 'key-c');
  const tok = await token(third);
  // Within the cooldown an unknown key id is simply unknown (401); after it the JWKS is fetched
  // again, and a JWKS that cannot be fetched is the broker's problem, not the caller's (503).
  let last: Awaited<ReturnType<typeof request>> | undefined;
  await eventually(async () => {
    last = await request(opt, { ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${tok}` } });
    return last.status === 503;
  }, 'a 503 once the JWKS cannot be fetched');
  assert.equal(last?.json().code, 'BRK_ERR_AUTH_UNAVAILABLE');
});

test('bearer token with a certificate: the token must name the certificate\'s identity', async (t) => {
  const jwks = await jwksServer(t);
  const a = await signer('ES256', 'key-a');
  jwks.keys = [a.jwk];
  const { pki, b } = await setup(t, [{ name: 'api', path: '/api', roles: ['billing'], auth: ['mtls', 'jwt'] }], {
    auth: { jwt: { jwksUrl: jwks.url, issuer: ISS, audience: [AUD] } },
  });
  const acme = await pki.issue('acme', ['billing']);
  const other = await pki.issue('other', ['billing']);
  const tok = await token(a);
  assert.equal((await request(b.port, { id: acme, ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${tok}` } })).status, 200);
  assert.equal((await request(b.port, { id: other, ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${tok}` } })).json().code, 'BRK_ERR_AUTH_MISMATCH');
  assert.equal((await request(b.port, { id: acme, ca: pki.ca, path: '/api/x' })).json().code, 'BRK_ERR_AUTH_REQUIRED');
});

test('bearer token without the certificate a [mtls, jwt] route requires is refused', async (t) => {
  const jwks = await jwksServer(t);
  const a = await signer('ES256', 'key-a');
  jwks.keys = [a.jwk];
  const { pki, opt } = await setup(t, [{ name: 'api', path: '/api', roles: ['billing'], auth: ['mtls', 'jwt'] }], {
    auth: { jwt: { jwksUrl: jwks.url, issuer: ISS, audience: [AUD] } },
  });
  const r = await request(opt, { ca: pki.ca, path: '/api/x', headers: { authorization: `Bearer ${await token(a)}` } });
  assert.equal(r.status, 401);
  assert.equal(r.json().code, 'BRK_ERR_AUTH_REQUIRED');
});

test('rate limits count a caller the same way whichever credential it used', async (t) => {
  const { pki, b, opt } = await setup(t, [
    { name: 'keys', path: '/k', roles: ['billing'], auth: ['apiKey'] },
    { name: 'certs', path: '/c', roles: ['billing'] },
  ], { rateLimit: { rate: 1, per: '1h', burst: 2 } });
  const acme = await pki.issue('acme', ['billing']);
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  await b.broker.reload();
  assert.equal((await request(b.port, { id: acme, ca: pki.ca, path: '/c/x' })).status, 200);
  assert.equal((await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } })).status, 200);
  const third = await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } });
  assert.equal(third.status, 429, 'one bucket for acme, certificate or key');
});

test('config: a route without mtls needs the certificate-optional listener; jwt needs its settings; http JWKS only on loopback', () => {
  const base = { tls: { server: 'localhost' }, pki: { dir: '/tmp/none' } };
  const route = (auth: string[]) => ({ routes: [{ name: 'r', path: '/r', upstream: 'http://127.0.0.1:1', roles: ['x'], auth }] });
  const problems = (raw: Record<string, unknown>) => validateConfig({ ...base, ...raw }, '/tmp').problems.join('\n');
  assert.match(problems(route(['apiKey'])), /listenCertOptional/);
  assert.doesNotMatch(problems({ ...route(['apiKey']), ...OPTIONAL }), /listenCertOptional/);
  assert.match(problems({ ...route(['mtls', 'jwt']) }), /auth\.jwt/);
  assert.match(problems({ ...route(['mtls', 'jwt']), auth: { jwt: { jwksUrl: 'http://idp.example/jwks', issuer: 'i', audience: ['a'] } } }), /https/);
  assert.match(problems({ ...route(['mtls', 'jwt']), auth: { jwt: { jwksUrl: 'https://idp.example/jwks', issuer: 'i', audience: ['a'], algorithms: ['HS256'] } } }), /algorithms/);
  assert.match(problems({ ...route(['mtls', 'mtls']) }), /auth/);
  assert.match(problems({ ...route([]) }), /auth/);
});

test('a connection on the optional listener speaks TLS without a certificate, and the handshake is logged as such', async (t) => {
  const { pki, b, opt } = await setup(t, [{ name: 'keys', path: '/k', roles: ['billing'], auth: ['apiKey'] }]);
  await new Promise<void>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: opt, servername: 'localhost', ca: pki.ca }, () => {
      s.end();
      resolve();
    });
    s.on('error', reject);
  });
  await eventually(() => b.logs.of('auth').some((l) => l.event === 'handshake' && l.certificate === false), 'the handshake line');
});

test('two replicas on one Redis: a key revoked and reloaded on A is refused on B, whose keys.json still has it valid, and on a replica started later', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  const other = await createKey(pki.store, { name: 'beta', roles: ['billing'], kind: 'apiKey' });
  // B and C run on a copy of the store taken before the revocation: their keys.json never learns it.
  const oldDir = join(tempDir(t), 'pki');
  cpSync(pki.dir, oldDir, { recursive: true });
  const shared = { ...OPTIONAL, routes: [{ name: 'keys', path: '/k', upstream: up.url, roles: ['billing'], auth: ['apiKey'] }], rateLimit: { ...LENIENT.rateLimit, store: redis.url } };
  const a = await startBroker(t, pki, shared);
  const b = await startBroker(t, { ...pki, dir: oldDir }, shared);
  const call = (rb: RunningBroker, k: string) => request(optionalPort(rb), { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': k } });
  assert.equal((await call(b, key.secret)).status, 200, 'B admits the key (and remembers it)');

  await revokeKey(pki.store, key.record.id);
  assert.equal((await a.broker.reload()).ok, true);
  const heard = await b.logs.waitFor((l) => l.log === 'audit' && l.event === 'revocation' && l.source === 'replica');
  assert.deepEqual(heard.keys, [key.record.id]);
  const refused = await call(b, key.secret);
  assert.equal(refused.status, 401, 'B refuses it without a reload, although its cache and its file say valid');
  assert.equal((await call(b, other.secret)).status, 200, 'other keys are untouched');
  assert.ok(b.logs.of('auth').some((l) => l.event === 'credential' && l.reason === 'revoked' && l.keyId === key.record.id));

  const c = await startBroker(t, { ...pki, dir: oldDir }, shared);
  assert.equal((await call(c, key.secret)).status, 401, 'a replica started later reads the revocation from Redis');
});
