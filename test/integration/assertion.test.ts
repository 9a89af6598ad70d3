/**
 * The jwt identity format end to end: an upstream verifies the broker's assertion with jose against
 * the JWKS the admin listener publishes (without the admin token), checks its certificate binding
 * against the certificate the client presented (RFC 8705 cnf / x5t#S256, and the RFC 9440
 * Client-Cert it received), refuses it for another certificate or once expired, and keeps verifying
 * after `broker pki rotate assertion-key` (the built CLI) on the running broker's store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';
import { makePki, request, startBroker, startUpstream, type Identity } from '../helpers/broker.ts';
import { adminPort, httpGet } from '../helpers/admin.ts';
import { brokerAsync, tempDir } from '../helpers/cli.ts';
import { eventually, within } from '../helpers/within.ts';
import { watchFiles } from '../../src/tls/watch.ts';
import { storeLayout } from '../../src/pki/layout.ts';
import { isBrokerError } from '../../src/errors.ts';
import { validateConfig } from '../../src/config/index.ts';
import { buildBroker } from '../../src/server.ts';

const ISSUER = 'https://broker.test';
const derOf = (id: Identity) => Buffer.from(new X509Certificate(id.cert).raw);
const x5t = (der: Buffer) => createHash('sha256').update(der).digest('base64url');

/** What the upstream does with a request: verify the assertion, then bind it to a certificate's DER. */
type Verify = (token: string, der: Buffer, o?: { currentDate?: Date }) => Promise<JWTPayload>;

function upstreamVerifier(jwksUrl: () => URL): Verify {
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  return async (token, der, o = {}) => {
    // An unknown kid refetches the JWKS, at most every cooldownDuration (jose's default is 30 s).
    jwks ??= createRemoteJWKSet(jwksUrl(), { cooldownDuration: 500 });
    const { payload } = await jwtVerify(token, jwks, { issuer: ISSUER, audience: 'orders-api', ...o });
    const cnf = payload.cnf as { 'x5t#S256'?: string } | undefined;
    if (cnf?.['x5t#S256'] !== x5t(der)) throw new Error('cnf does not match the presented certificate');
    return payload;
  };
}

test('an upstream verifies the jwt assertion against the JWKS, bound to the presented certificate; it survives a key rotation', async (t) => {
  const pki = await makePki(t);
  const [alice, bob] = await Promise.all([pki.issue('alice', ['partner']), pki.issue('bob', ['partner', 'billing'])]);
  const dir = tempDir(t);
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, 'adm1n-t0ken-for-tests\n', { mode: 0o600 });
  const jwksFile = join(dir, 'jwks.json');

  let port = 0;
  const verify = upstreamVerifier(() => new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`));
  // The upstream: verifies x-client-jwt and binds it to the Client-Cert (RFC 9440) it received.
  const up = await startUpstream(t, (seen, res) => {
    const token = String(seen.headers['x-client-jwt'] ?? '');
    const clientCert = Buffer.from(String(seen.headers['client-cert'] ?? '').replace(/^:|:$/g, ''), 'base64');
    verify(token, clientCert).then(
      (p) => res.end(JSON.stringify({ ok: true, sub: p.sub, kid: decodeProtectedHeader(token).kid, token, clientCert: clientCert.toString('base64') })),
      (err: Error) => res.end(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}`, token })),
    );
  });
  const b = await startBroker(t, pki, {
    admin: { host: '127.0.0.1', port: 0, tokenFile },
    assertion: { issuer: ISSUER, jwksFile },
    routes: [{ name: 'orders', path: '/orders', upstream: up.url, roles: ['partner'], identity: ['headers', 'xfcc', 'rfc9440', 'jwt'], audience: 'orders-api' }],
  });
  port = adminPort(b);
  const call = async (id: Identity) => {
    const res = await request(b.port, { id, ca: pki.ca, path: '/orders/1', headers: { 'x-client-jwt': 'spoofed.by.client' } });
    assert.equal(res.status, 200);
    return res.json() as { ok: boolean; sub?: string; kid?: string; token: string; clientCert?: string; error?: string };
  };

  // 1. verified with jose against the published JWKS; cnf is the SHA-256 of the DER alice presented
  const a = await call(alice);
  assert.equal(a.ok, true, a.error);
  assert.equal(a.sub, 'alice');
  assert.equal(Buffer.from(a.clientCert as string, 'base64').equals(derOf(alice)), true, 'Client-Cert is the DER alice presented');
  const claims = decodeJwt(a.token);
  assert.deepEqual(claims.cnf, { 'x5t#S256': x5t(derOf(alice)) });
  assert.deepEqual(claims.roles, ['partner']);
  assert.equal((claims.exp as number) - (claims.iat as number), 60);
  const firstKid = a.kid as string;
  assert.equal(firstKid, JSON.parse(readFileSync(storeLayout(pki.dir).assertionKeys, 'utf8')).current);

  // 2. alice's token presented with bob's certificate: refused by the binding check
  await assert.rejects(verify(a.token, derOf(bob)), /cnf does not match/);
  const bb = await call(bob);
  assert.equal(bb.ok, true, bb.error);
  assert.equal(bb.sub, 'bob');
  assert.notEqual(bb.token, a.token);

  // 3. expired: refused
  await assert.rejects(verify(a.token, derOf(alice), { currentDate: new Date(((claims.exp as number) + 1) * 1000) }), errors.JWTExpired);

  // 4. the JWKS is readable without the admin token (which /metrics needs), and written to jwksFile
  assert.equal((await httpGet(port, '/metrics')).status, 401);
  const pub = await httpGet(port, '/.well-known/jwks.json');
  assert.equal(pub.status, 200);
  assert.match(String(pub.headers['content-type']), /^application\/jwk-set\+json/);
  assert.match(String(pub.headers['cache-control']), /max-age=\d+/);
  const keys = (pub.json().keys as Array<Record<string, unknown>>);
  assert.deepEqual(keys.map((k) => k.kid), [firstKid]);
  assert.equal(keys[0]?.d, undefined, 'public keys only');
  assert.equal(keys[0]?.use, 'sig');
  assert.deepEqual(JSON.parse(readFileSync(jwksFile, 'utf8')), pub.json());
  assert.equal(statSync(jwksFile).mode & 0o777, 0o644);

  // 5. rotate with the built CLI on the running broker's store; the store watcher (as serve runs it) reloads
  const watcher = watchFiles([storeLayout(pki.dir).assertionKeys], 100, (what) => void b.broker.reload(undefined, `file change: ${what}`));
  t.after(() => watcher.close());
  // published ahead of use: the JWKS lists the new key while tokens are still signed with the old one
  const rot = await brokerAsync(['pki', 'rotate', 'assertion-key', '--dir', pki.dir, '--alg', 'EdDSA', '--overlap', '1h', '--publish-ahead', '4s', '--json']);
  assert.equal(rot.code, 0, rot.stderr);
  const rotated = JSON.parse(rot.stdout) as { kid: string; alg: string; activateAt: string; previous: { kid: string; retireAt: string } };
  assert.equal(rotated.previous.kid, firstKid);
  assert.notEqual(rotated.kid, firstKid);
  assert.equal(Date.parse(rotated.previous.retireAt) - Date.parse(rotated.activateAt), 3_600_000, 'the overlap counts from activation');
  await eventually(async () => ((await httpGet(port, '/.well-known/jwks.json')).json().keys as Array<{ kid: string }>).some((k) => k.kid === rotated.kid), 'the new key published ahead', 10_000, 50);
  const early = await call(alice);
  if (Date.now() < Date.parse(rotated.activateAt) - 500) assert.equal(early.kid, firstKid, 'before activation the old key still signs');
  let after: Awaited<ReturnType<typeof call>> | undefined;
  await eventually(async () => (after = await call(alice)).kid === rotated.kid, 'a token signed with the new key', 20_000, 100);
  assert.equal(after?.ok, true, after?.error);
  assert.equal(decodeProtectedHeader(after?.token as string).alg, 'EdDSA');
  // during the overlap the old key is still published: tokens it signed still verify
  const during = (await httpGet(port, '/.well-known/jwks.json')).json().keys as Array<{ kid: string }>;
  assert.deepEqual(during.map((k) => k.kid), [rotated.kid, firstKid]);
  assert.equal((await verify(a.token, derOf(alice))).sub, 'alice');
  await eventually(() => JSON.parse(readFileSync(jwksFile, 'utf8')).keys.length === 2, 'jwksFile rewritten at the reload', 5_000);
});

test('a store without an assertion key: a jwt route refuses to start (BRK_ERR_ASSERTION_KEY_MISSING), other routes serve', async (t) => {
  const pki = await makePki(t);
  const { rmSync } = await import('node:fs');
  rmSync(storeLayout(pki.dir).assertionDir, { recursive: true });
  const up = await startUpstream(t);
  const base = { listen: { host: '127.0.0.1', port: 0 }, admin: { enabled: false }, pki: { dir: pki.dir }, tls: { server: 'localhost' } };
  const route = { name: 'orders', path: '/orders', upstream: up.url, roles: ['partner'] };
  const withJwt = validateConfig({ ...base, routes: [{ ...route, identity: ['headers', 'jwt'] }] }, pki.dir).config;
  assert.ok(withJwt);
  await within(
    assert.rejects(buildBroker(withJwt), (e: unknown) => isBrokerError(e, 'BRK_ERR_ASSERTION_KEY_MISSING') && /orders/.test(e.message) && /pki rotate assertion-key/.test(e.hint)),
    30_000,
    'the refusal',
  );
  const b = await startBroker(t, pki, { routes: [route] });
  const alice = await pki.issue('alice', ['partner']);
  const res = await request(b.port, { id: alice, ca: pki.ca, path: '/orders' });
  assert.equal(res.status, 200);
  assert.equal(up.seen[0]?.headers['x-client-jwt'], undefined);
});

test('a replaced key leaves the JWKS (endpoint and jwksFile) by itself when its overlap ends, without a reload', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const jwksFile = join(tempDir(t), 'jwks.json');
  const b = await startBroker(t, pki, {
    assertion: { jwksFile },
    routes: [{ name: 'orders', path: '/orders', upstream: up.url, roles: ['partner'], identity: ['jwt'] }],
  });
  const { rotateAssertionKey } = await import('../../src/pki/assertion.ts');
  const r = await rotateAssertionKey(pki.store, { overlapMs: 1_500 });
  const reloaded = await b.broker.reload(undefined, 'test');
  assert.equal(reloaded.ok, true, reloaded.problems.join('\n'));
  const kids = async () => ((await httpGet(adminPort(b), '/.well-known/jwks.json')).json().keys as Array<{ kid: string }>).map((k) => k.kid);
  assert.deepEqual(await kids(), [r.kid, r.previous?.kid]);
  await eventually(async () => (await kids()).length === 1, 'the replaced key retired from the JWKS', 15_000, 100);
  assert.deepEqual(await kids(), [r.kid]);
  assert.deepEqual(JSON.parse(readFileSync(jwksFile, 'utf8')).keys.map((k: { kid: string }) => k.kid), [r.kid]);
  const alice = await pki.issue('alice', ['partner']);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/orders' })).status, 200);
  assert.equal(decodeProtectedHeader(String(up.seen[0]?.headers['x-client-jwt'])).kid, r.kid);
});
