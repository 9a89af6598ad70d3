/** Bearer tokens against a JWKS served over http(s) on 127.0.0.1: rotation, outages, a private CA. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createJwtVerifier, type JwtResult, type JwtSettings } from '../../src/auth/jwt.ts';
import { openssl, tempDir } from '../helpers/cli.ts';
import { eventually, within } from '../helpers/within.ts';

const ISS = 'https://idp.example';

interface Key { kid: string; privateKey: CryptoKey; jwk: JWK }

async function makeKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

function sign(key: Key, sub = 'alice'): Promise<string> {
  return new SignJWT({ iss: ISS, aud: 'broker', sub, roles: ['user'] })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setExpirationTime('5m')
    .sign(key.privateKey);
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function listen(t: TestContext, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function serve(t: TestContext, handler: Handler): Promise<string> {
  return `http://127.0.0.1:${await listen(t, createHttpServer(handler))}/jwks`;
}

function json(body: unknown): Handler {
  return (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
}

function settings(jwksUrl: string, over: Partial<JwtSettings> = {}): JwtSettings {
  return {
    jwksUrl, issuer: ISS, audience: ['broker'], algorithms: ['ES256', 'RS256'], clockSkewSec: 30,
    nameClaim: 'sub', rolesClaim: 'roles', cacheMaxAgeMs: 600_000, cooldownMs: 600_000, timeoutMs: 5000, ...over,
  };
}

function refused(r: JwtResult, reason: string): void {
  assert.equal(r.ok, false, `expected ${reason}`);
  if (!r.ok) assert.equal(r.reason, reason, r.detail);
}

test('key rotation is picked up without restart; the retired key is then refused', async (t) => {
  const a = await makeKey('key-a');
  const b = await makeKey('key-b');
  let served: JWK[] = [a.jwk];
  let fetches = 0;
  const url = await serve(t, (req, res) => {
    fetches++;
    json({ keys: served })(req, res);
  });
  const v = createJwtVerifier(settings(url, { cooldownMs: 50 }));

  const first = await v.verify(await sign(a));
  assert.ok(first.ok);
  assert.deepEqual(first.identity.roles, ['user']);

  served = [b.jwk];
  const tokenB = await sign(b, 'bob');
  // Within the cooldown an unknown kid is refused without a fetch; after it, the JWKS is fetched again.
  await eventually(async () => (await v.verify(tokenB)).ok, 'token signed with the new key admitted', 10_000, 20);
  assert.ok(fetches >= 2);
  const r = await v.verify(tokenB);
  assert.ok(r.ok && r.identity.name === 'bob');

  refused(await v.verify(await sign(a)), 'no-key');
});

test('unknown kids do not refetch the JWKS during the cooldown', async (t) => {
  const a = await makeKey('key-a');
  const stranger = await makeKey('stranger');
  let fetches = 0;
  const url = await serve(t, (req, res) => {
    fetches++;
    json({ keys: [a.jwk] })(req, res);
  });
  const v = createJwtVerifier(settings(url));
  assert.ok((await v.verify(await sign(a))).ok);
  for (let i = 0; i < 5; i++) refused(await v.verify(await sign(stranger)), 'no-key');
  assert.equal(fetches, 1);
});

test('a JWKS that cannot be fetched or read is "unavailable"', async (t) => {
  const a = await makeKey('key-a');
  const token = await sign(a);
  const closed = createHttpServer();
  const closedPort = await new Promise<number>((resolve) => closed.listen(0, '127.0.0.1', () => resolve((closed.address() as AddressInfo).port)));
  await new Promise((resolve) => closed.close(resolve));
  const good = await serve(t, json({ keys: [a.jwk] }));
  const big = JSON.stringify({ keys: [a.jwk], pad: 'x'.repeat(1024 * 1024 + 10) });

  const cases: Array<[string, string | Handler, Partial<JwtSettings>?]> = [
    ['connection refused', `http://127.0.0.1:${closedPort}/jwks`],
    ['404', (_req, res) => res.writeHead(404).end('not found')],
    ['503', (_req, res) => res.writeHead(503).end()],
    ['redirect (not followed)', (_req, res) => res.writeHead(302, { location: good }).end()],
    ['not JSON', json('<html>login</html>')],
    ['JSON but not a JWKS', json({ hello: 'world' })],
    ['over 1 MiB with content-length', json(big)],
    ['over 1 MiB chunked', (_req, res) => {
      res.setHeader('content-type', 'application/json');
      for (let i = 0; i < big.length; i += 64 * 1024) res.write(big.slice(i, i + 64 * 1024));
      res.end();
    }],
    ['no answer within timeoutMs', () => {}, { timeoutMs: 200 }],
  ];
  for (const [what, target, over] of cases) {
    const url = typeof target === 'string' ? target : await serve(t, target);
    const r = await within(createJwtVerifier(settings(url, over)).verify(token), 10_000, what);
    refused(r, 'unavailable');
    t.diagnostic(`${what}: ${r.ok ? '' : r.detail}`);
    assert.ok(!r.ok && /^JWKS http:\/\/127\.0\.0\.1:\d+\/jwks unavailable: /.test(r.detail), `${what}: ${r.ok ? '' : r.detail}`);
  }
});

test('after an outage the JWKS is fetched again and tokens pass', async (t) => {
  const a = await makeKey('key-a');
  let up = false;
  const url = await serve(t, (req, res) => (up ? json({ keys: [a.jwk] })(req, res) : res.writeHead(503).end()));
  const v = createJwtVerifier(settings(url));
  const token = await sign(a);
  refused(await v.verify(token), 'unavailable');
  up = true;
  assert.ok((await v.verify(token)).ok);
});

test('https JWKS verified with jwksCa; without it the server is not trusted', async (t) => {
  const dir = tempDir(t);
  const made = openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=jwks test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'key.pem', '-out', 'cert.pem',
  ], { cwd: dir });
  assert.equal(made.code, 0, made.stderr);
  const a = await makeKey('key-a');
  const port = await listen(t, createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, json({ keys: [a.jwk] })));
  const url = `https://127.0.0.1:${port}/jwks`;
  const token = await sign(a);

  assert.ok((await createJwtVerifier(settings(url, { jwksCa: join(dir, 'cert.pem') })).verify(token)).ok);
  assert.ok((await createJwtVerifier(settings(url, { jwksCa: readFileSync(join(dir, 'cert.pem'), 'utf8') })).verify(token)).ok);
  const untrusted = await createJwtVerifier(settings(url)).verify(token);
  refused(untrusted, 'unavailable');
  t.diagnostic(untrusted.ok ? '' : untrusted.detail);
});
