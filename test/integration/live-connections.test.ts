/**
 * Connections that outlive the decision that admitted them: revoking the credential (certificate,
 * API key, also when heard from another replica) or reaching its expiry (certificate notAfter,
 * bearer token exp + clock skew) closes its keep-alive connections and WebSockets at once, with an
 * auth log line, and WebSockets with close code 1008 and a reason.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { LENIENT, makePki, startBroker, startUpstream, type Identity, type RunningBroker } from '../helpers/broker.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';
import { within } from '../helpers/within.ts';
import { createKey, revokeKey } from '../../src/pki/credentials.ts';

const OPTIONAL = { listenCertOptional: { host: '127.0.0.1', port: 0 } };
const LONG_KEEPALIVE = { timeouts: { keepAlive: '60s' } };

function optionalPort(b: RunningBroker): number {
  return (b.broker.optionalServer?.address() as AddressInfo).port;
}

/** A WebSocket through the broker; resolves once the upstream's hello arrived. */
async function openWs(t: TestContext, port: number, path: string, o: { ca: string; id?: Identity; headers?: Record<string, string> }): Promise<WebSocket> {
  const opts: WebSocket.ClientOptions & { servername: string } = { ca: o.ca, servername: 'localhost', headers: o.headers ?? {}, handshakeTimeout: 10_000, ...(o.id ? { cert: o.id.cert, key: o.id.key } : {}) };
  const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, opts);
  t.after(() => ws.terminate());
  ws.on('error', () => {});
  await within(once(ws, 'message'), 10_000, 'the upstream hello');
  ws.send('still there?');
  const [echo] = (await within(once(ws, 'message'), 10_000, 'an echo')) as [Buffer];
  assert.equal(String(echo), 'echo:still there?');
  return ws;
}

/** Resolves with the close code and reason the client received. */
function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: String(reason) })));
}

/** A keep-alive TLS connection that has had one answered request; `closed` settles when the broker closes it. */
async function keepAlive(t: TestContext, port: number, o: { ca: string; id?: Identity; path: string; headers?: Record<string, string> }): Promise<{ socket: TLSSocket; closed: Promise<unknown> }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: o.ca, ...(o.id ? { cert: o.id.cert, key: o.id.key } : {}) });
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  await within(once(socket, 'secureConnect'), 10_000, 'TLS handshake');
  const extra = Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  let got = '';
  socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
  socket.write(`GET ${o.path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`);
  const deadline = Date.now() + 10_000;
  while (!/\r\n\r\n/.test(got)) {
    assert.ok(Date.now() < deadline, 'an answer on the keep-alive connection');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.match(got, /^HTTP\/1\.1 200 /);
  return { socket, closed: once(socket, 'close') };
}

test('revoking an API key closes its WebSocket at once with 1008 "credential revoked", with an auth log line', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...OPTIONAL, ...LONG_KEEPALIVE, routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'], auth: ['apiKey'] }] });
  const key = await createKey(pki.store, { name: 'acme', roles: ['chat'], kind: 'apiKey' });
  const other = await createKey(pki.store, { name: 'beta', roles: ['chat'], kind: 'apiKey' });
  assert.equal((await b.broker.reload()).ok, true);
  const port = optionalPort(b);

  const ws = await openWs(t, port, '/ws/room', { ca: pki.ca, headers: { 'x-api-key': key.secret } });
  const bystander = await openWs(t, port, '/ws/room', { ca: pki.ca, headers: { 'x-api-key': other.secret } });
  const wsClosed = closed(ws);

  await revokeKey(pki.store, key.record.id);
  assert.equal((await b.broker.reload()).ok, true);
  const c = await within(wsClosed, 5_000, 'the WebSocket closing');
  assert.equal(c.code, 1008);
  assert.equal(c.reason, 'credential revoked');
  const line = await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'revoked');
  assert.equal(line.principal, 'acme');
  assert.equal(line.code, 1008);

  assert.equal(bystander.readyState, WebSocket.OPEN, "another key's WebSocket stays open");
  bystander.send('after');
  assert.equal(String(((await within(once(bystander, 'message'), 5_000, 'echo')) as [Buffer])[0]), 'echo:after');
});

test('revoking an API key or a Basic credential closes the keep-alive connections whose requests used it', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    ...OPTIONAL,
    ...LONG_KEEPALIVE,
    routes: [
      { name: 'keys', path: '/k', upstream: up.url, roles: ['chat'], auth: ['apiKey'] },
      { name: 'basic', path: '/b', upstream: up.url, roles: ['chat'], auth: ['basic'] },
    ],
  });
  const key = await createKey(pki.store, { name: 'acme', roles: ['chat'], kind: 'apiKey' });
  const other = await createKey(pki.store, { name: 'beta', roles: ['chat'], kind: 'apiKey' });
  const basic = await createKey(pki.store, { name: 'oldco', roles: ['chat'], kind: 'basic' });
  assert.equal((await b.broker.reload()).ok, true);
  const port = optionalPort(b);
  const withKey = await keepAlive(t, port, { ca: pki.ca, path: '/k/1', headers: { 'x-api-key': key.secret } });
  const withOther = await keepAlive(t, port, { ca: pki.ca, path: '/k/1', headers: { 'x-api-key': other.secret } });
  const withBasic = await keepAlive(t, port, { ca: pki.ca, path: '/b/1', headers: { authorization: `Basic ${Buffer.from(`oldco:${basic.secret}`).toString('base64')}` } });
  let otherClosed = false;
  void withOther.closed.then(() => (otherClosed = true));

  await revokeKey(pki.store, key.record.id);
  await revokeKey(pki.store, basic.record.id);
  assert.equal((await b.broker.reload()).ok, true);
  await within(withKey.closed, 5_000, 'the API key connection closing');
  await within(withBasic.closed, 5_000, 'the Basic connection closing');
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'connection' && l.reason === 'revoked' && l.credential === `key:${key.record.id}`);
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'connection' && l.reason === 'revoked' && l.credential === `key:${basic.record.id}`);
  assert.equal(otherClosed, false, "another key's connection stays open");
});

test('revoking a certificate closes its WebSocket with 1008 "credential revoked" (not a reset)', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'] }] });
  const carol = await pki.issue('carol', ['chat']);
  const ws = await openWs(t, b.port, '/ws/room', { ca: pki.ca, id: carol });
  const wsClosed = closed(ws);
  await pki.revoke('carol');
  assert.equal((await b.broker.reload()).ok, true);
  const c = await within(wsClosed, 5_000, 'the WebSocket closing');
  assert.deepEqual(c, { code: 1008, reason: 'credential revoked' });
});

test('an API key revoked on another replica closes its WebSocket here too (heard through Redis)', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const key = await createKey(pki.store, { name: 'acme', roles: ['chat'], kind: 'apiKey' });
  const shared = { ...OPTIONAL, routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'], auth: ['apiKey'] }], rateLimit: { ...LENIENT.rateLimit, store: redis.url } };
  const a = await startBroker(t, pki, shared);
  const b = await startBroker(t, pki, shared);
  const ws = await openWs(t, optionalPort(b), '/ws/room', { ca: pki.ca, headers: { 'x-api-key': key.secret } });
  const wsClosed = closed(ws);
  await revokeKey(pki.store, key.record.id);
  assert.equal((await a.broker.reload()).ok, true); // A only: B hears it
  const c = await within(wsClosed, 5_000, 'the WebSocket on B closing');
  assert.deepEqual(c, { code: 1008, reason: 'credential revoked' });
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'revoked');
});

test('a certificate reaching its notAfter: its WebSocket closes with 1008 "credential expired"', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...LONG_KEEPALIVE, routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'] }] });
  const now = Date.now();
  const brief = await pki.custom({ name: 'brief', roles: ['chat'], notBefore: new Date(now - 60_000), notAfter: new Date(now + 4_000) });
  const ws = await openWs(t, b.port, '/ws/room', { ca: pki.ca, id: brief });
  const wsClosed = closed(ws);
  const c = await within(wsClosed, 20_000, 'the WebSocket closing at notAfter');
  assert.deepEqual(c, { code: 1008, reason: 'credential expired' });
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'expired' && l.principal === 'brief');
});

test('a certificate reaching its notAfter: its keep-alive connection is closed, with an auth log line', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...LONG_KEEPALIVE, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['chat'] }] });
  const now = Date.now();
  const brief = await pki.custom({ name: 'brief', roles: ['chat'], notBefore: new Date(now - 60_000), notAfter: new Date(now + 4_000) });
  const conn = await keepAlive(t, b.port, { ca: pki.ca, id: brief, path: '/api/1' });
  await within(conn.closed, 20_000, 'the keep-alive connection closing at notAfter');
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'connection' && l.reason === 'expired' && l.serial === brief.serial);
});

test('a bearer token reaching exp + clock skew: its WebSocket closes with 1008 "credential expired"', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const jwks = createServer((_req, res) => res.end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  t.after(() => (jwks.closeAllConnections(), jwks.close()));
  const iss = 'https://idp.test.example';
  const b = await startBroker(t, pki, {
    ...OPTIONAL,
    auth: { jwt: { jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`, issuer: iss, audience: ['broker-api'], clockSkew: '1s' } },
    routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'], auth: ['jwt'] }],
  });
  const exp = Math.floor(Date.now() / 1000) + 4;
  const token = await new SignJWT({ roles: ['chat'] }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('acme').setIssuer(iss).setAudience('broker-api').setIssuedAt().setExpirationTime(exp).sign(privateKey);
  const ws = await openWs(t, optionalPort(b), '/ws/room', { ca: pki.ca, headers: { authorization: `Bearer ${token}` } });
  const c = await within(closed(ws), 20_000, 'the WebSocket closing at exp + skew');
  assert.deepEqual(c, { code: 1008, reason: 'credential expired' });
  const line = await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'expired');
  assert.equal(line.principal, 'acme');
});

test('a reload does not cut open WebSockets: they keep relaying after the replaced generation is closed', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  // drain time = longest upstream deadline / request deadline + 5 s
  const b = await startBroker(t, pki, { timeouts: { headers: '1s', request: '1s' }, routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'], timeout: '1s' }] });
  const carol = await pki.issue('carol', ['chat']);
  const ws = await openWs(t, b.port, '/ws/room', { ca: pki.ca, id: carol });
  let wsClosed = false;
  ws.once('close', () => (wsClosed = true));
  const first = b.broker.generation;
  const close = first.close.bind(first);
  const retired = new Promise<void>((resolve) => {
    (first as { close: () => Promise<void> }).close = () => (resolve(), close());
  });
  assert.equal((await b.broker.reload()).ok, true);
  await within(retired, 20_000, 'the replaced generation being closed');
  await new Promise((r) => setImmediate(r));
  assert.equal(wsClosed, false);
  ws.send('after the reload');
  assert.equal(String(((await within(once(ws, 'message'), 5_000, 'echo')) as [Buffer])[0]), 'echo:after the reload');
});
