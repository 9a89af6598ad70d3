/**
 * Revocation is immediate: once an identity is revoked and the broker reloads, its open keep-alive
 * connection and its WebSocket are closed, its next handshake is refused ("revoked"), and other
 * identities carry on. With replicas sharing Redis, the replica that reloads announces the serial:
 * the others close the identity's connections and refuse it although their own CRL is old, and a
 * replica started later learns it from Redis.
 *
 * Keep-alive connections are kept open for a minute (timeouts.keepAlive), so a connection that
 * closes within the 5 s deadline was closed by the revocation, not by idleness.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { LENIENT, makePki, openConnection, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';
import { within } from '../helpers/within.ts';

const LONG_KEEPALIVE = { timeouts: { keepAlive: '60s' } };


function openWebSocket(t: TestContext, port: number, ca: string, id: Identity, path: string): Promise<WebSocket> {
  // ws hands its options to tls.connect, which takes `servername`; its types do not list it.
  const o: WebSocket.ClientOptions & { servername: string } = { ca, cert: id.cert, key: id.key, servername: 'localhost', handshakeTimeout: 10_000 };
  const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, o);
  t.after(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/**
 * A new connection with `id` fails, and the broker logs a refused handshake with reason "revoked".
 * Returns that auth line, which carries the presented certificate (by the CRL or by a serial heard
 * from another replica alike). With tls.refusal http (the default) the client gets a 495 naming the reason.
 */
async function assertRefused(b: RunningBroker, pki: TestPki, id: Identity, name: string): Promise<Record<string, unknown>> {
  const earlier = new Set(b.logs.lines);
  // tls.refusal http (the default): the handshake completes and the one request is answered 495
  const res = await request(b.port, { id, ca: pki.ca, path: '/api/again' });
  assert.equal(res.status, 495, `a new connection of ${name} is refused: ${res.text}`);
  assert.equal(res.json().reason, 'certificate revoked');
  const line = await b.logs.waitFor((l) => !earlier.has(l) && l.log === 'auth' && l.event === 'handshake' && l.outcome === 'refused');
  assert.equal(line.reason, 'revoked', JSON.stringify(line));
  return line;
}

test('a revoked identity loses its open keep-alive connection and WebSocket at the reload, and its next handshake is refused; others carry on', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    ...LONG_KEEPALIVE,
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'ws', path: '/ws', upstream: up.url, roles: ['user'], websocket: true },
    ],
  });
  const mallory = await pki.issue('mallory', ['user']);
  const alice = await pki.issue('alice', ['user']);

  const mc = await openConnection(t, b.port, pki.ca, mallory, '/api/1');
  const mws = await openWebSocket(t, b.port, pki.ca, mallory, '/ws/room');
  const ac = await openConnection(t, b.port, pki.ca, alice, '/api/1');
  const aws = await openWebSocket(t, b.port, pki.ca, alice, '/ws/room');
  let aliceClosed = false;
  ac.socket.once('close', () => (aliceClosed = true));
  aws.once('close', () => (aliceClosed = true));
  const connectionClosed = once(mc.socket, 'close');
  const wsClosed = once(mws, 'close');

  await pki.revoke('mallory');
  const r = await b.broker.reload();
  assert.equal(r.ok, true, r.problems.join('\n'));
  assert.equal(r.revoked, 1);
  await within(connectionClosed, 5_000, "mallory's keep-alive connection closing");
  await within(wsClosed, 5_000, "mallory's WebSocket closing");
  const audit = await b.logs.waitFor((l) => l.log === 'audit' && l.event === 'reload' && l.outcome === 'ok');
  assert.deepEqual(audit.revoked, [mallory.serial]);
  assert.equal(audit.closedConnections, 2, 'the keep-alive connection and the WebSocket');

  await assertRefused(b, pki, mallory, 'mallory');

  assert.equal(await ac.get('/api/2'), 200, "alice's open connection still serves");
  const echo = once(aws, 'message');
  aws.send('still here');
  assert.equal(String((await within(echo, 5_000, "alice's WebSocket echo"))[0]), 'echo:still here');
  assert.equal(aliceClosed, false, "alice's connections stayed open");
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/3' })).status, 200);
});

test('two replicas on one Redis: revoking and reloading replica A closes the identity on B too, B refuses it with its old CRL, and a replica started later refuses it', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const mallory = await pki.issue('mallory', ['user']);
  const alice = await pki.issue('alice', ['user']);
  // B and C run on a copy of the store taken before the revocation: their CRL never learns it.
  const oldDir = join(tempDir(t), 'pki');
  cpSync(pki.dir, oldDir, { recursive: true });
  const oldPki: TestPki = { ...pki, dir: oldDir };
  const shared = { ...LONG_KEEPALIVE, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }], rateLimit: { ...LENIENT.rateLimit, store: redis.url } };
  const a = await startBroker(t, pki, shared);
  const b = await startBroker(t, oldPki, shared);
  assert.equal(a.broker.store.kind, 'redis');

  const onA = await openConnection(t, a.port, pki.ca, mallory, '/api/1');
  const onB = await openConnection(t, b.port, pki.ca, mallory, '/api/1');
  const aliceOnB = await openConnection(t, b.port, pki.ca, alice, '/api/1');
  let aliceClosed = false;
  aliceOnB.socket.once('close', () => (aliceClosed = true));
  const closedOnA = once(onA.socket, 'close');
  const closedOnB = once(onB.socket, 'close');

  await pki.revoke('mallory');
  const r = await a.broker.reload(); // A only: B is never reloaded
  assert.equal(r.ok, true, r.problems.join('\n'));
  await within(closedOnA, 5_000, "mallory's connection on A closing");
  await within(closedOnB, 5_000, "mallory's connection on B closing (heard through Redis)");
  assert.equal(b.broker.material.revoked.has(mallory.serial), false, "B's CRL does not list mallory");
  const heard = await b.logs.waitFor((l) => l.log === 'audit' && l.event === 'revocation' && l.source === 'replica');
  assert.deepEqual(heard.serials, [mallory.serial]);
  assert.equal(heard.closedConnections, 1);

  const onB2 = await assertRefused(b, oldPki, mallory, 'mallory');
  assert.equal(onB2.serial, mallory.serial);
  assert.equal(onB2.subject, 'mallory');
  assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'refused').length, 1, 'B refused no one else');
  await assertRefused(a, pki, mallory, 'mallory');
  assert.equal(await aliceOnB.get('/api/2'), 200, "alice's open connection on B still serves");
  assert.equal(aliceClosed, false);

  // C starts after the announcement, on the old CRL too: it reads the revoked serials from Redis.
  const c = await startBroker(t, oldPki, shared);
  assert.equal(c.broker.material.revoked.has(mallory.serial), false, "C's CRL does not list mallory");
  assert.equal((await assertRefused(c, oldPki, mallory, 'mallory')).serial, mallory.serial);
  assert.equal((await request(c.port, { id: alice, ca: pki.ca, path: '/api/3' })).status, 200);
});
