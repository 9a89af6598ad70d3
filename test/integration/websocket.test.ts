/**
 * WebSocket routes: the upgrade goes through the same identity, path and ACL checks as any request,
 * the upstream gets the broker's identity headers (never the client's), and a route that is not a
 * WebSocket route refuses an upgrade.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import WebSocket from 'ws';
import { makePki, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, type Upstream } from '../helpers/broker.ts';

interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  carol: Identity;
}

async function setup(t: TestContext): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'] },
      { name: 'api', path: '/api', upstream: up.url, roles: ['chat'] },
      { name: 'admin', path: '/admin', upstream: up.url, websocket: true, roles: ['admin'] },
    ],
  });
  const carol = await pki.issue('carol', ['chat']);
  return { pki, up, b, carol };
}

/** ws hands its options to tls.connect, which takes `servername`; its types do not list it. */
function clientOptions(ca: string, id: Identity, headers: Record<string, string> = {}): WebSocket.ClientOptions {
  const o: WebSocket.ClientOptions & { servername: string } = { ca, cert: id.cert, key: id.key, servername: 'localhost', headers, handshakeTimeout: 10_000 };
  return o;
}

function open(s: Setup, id: Identity, path: string, headers: Record<string, string> = {}): WebSocket {
  return new WebSocket(`wss://127.0.0.1:${s.b.port}${path}`, clientOptions(s.pki.ca, id, headers));
}

/** Resolves with the status of a refused upgrade; fails if the upgrade succeeds. */
function refusedStatus(ws: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => (ws.terminate(), reject(new Error('upgrade was accepted'))));
    ws.once('error', (e) => reject(e));
  });
}

/**
 * Sends raw bytes on an mTLS connection and resolves with everything read once the server closes
 * it; rejects if it is still open after `ms` (rawExchange would close it itself and hide a hang).
 */
function untilServerCloses(s: Setup, id: Identity, data: string, ms = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = tlsConnect({ host: '127.0.0.1', port: s.b.port, servername: 'localhost', ca: s.pki.ca, cert: id.cert, key: id.key }, () => socket.write(data));
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`connection still open after ${ms} ms; got ${JSON.stringify(got)}`))), ms);
    socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => (clearTimeout(timer), resolve(got)));
  });
}

const upgradeHead = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
const firstStatus = (reply: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 0);

test('a client with the route role talks to the upstream, which sees the broker identity headers only', async (t) => {
  const s = await setup(t);
  const ws = open(s, s.carol, '/ws/room?x=1', {
    'X-Client-Name': 'root',
    'X-Client-Roles': 'admin',
    'X_Client_DN': 'CN=root',
    'X-Forwarded-Client-Cert': 'Hash=00;Subject="CN=root"',
    'X-Forwarded-For': '10.0.0.1',
  });
  const closed = once(ws, 'close');
  t.after(() => ws.terminate());
  const [hello] = (await once(ws, 'message')) as [Buffer];
  const seen = JSON.parse(String(hello)) as { hello: boolean; url: string; headers: Record<string, string> };
  assert.equal(seen.hello, true);
  assert.equal(seen.url, '/ws/room?x=1');
  assert.equal(seen.headers['x-client-name'], 'carol');
  assert.equal(seen.headers['x-client-roles'], 'chat');
  assert.equal(seen.headers['x-client-serial'], s.carol.serial);
  assert.match(seen.headers['x-forwarded-client-cert'] ?? '', /^Hash=[0-9a-f]{64};Subject="CN=carol,OU=chat";URI=spiffe:\/\/test\.example\/client\/carol$/);
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-client-dn'], undefined);
  assert.equal(seen.headers['x_client_dn'], undefined);
  for (const [k, v] of Object.entries(seen.headers)) {
    if (!k.startsWith('sec-websocket-')) assert.doesNotMatch(v, /root|admin|10\.0\.0\.1|Hash=00/, `${k} carries a spoofed value`);
  }

  ws.send('ping');
  const [echo] = (await once(ws, 'message')) as [Buffer];
  assert.equal(String(echo), 'echo:ping');
  ws.close();
  await closed;
});

test('a client without the route role gets 403 on the upgrade', async (t) => {
  const s = await setup(t);
  const dave = await s.pki.issue('dave', ['reader']);
  assert.equal(await refusedStatus(open(s, dave, '/ws/room')), 403);
  const access = await s.b.logs.waitFor((l) => l.log === 'access' && l.route === 'ws');
  assert.equal(access.decision, 'deny');
  assert.equal(access.code, 'BRK_ERR_ACL_DENIED');
});

test('an upgrade on a route that is not a WebSocket route gets 400', async (t) => {
  const s = await setup(t);
  assert.equal(await refusedStatus(open(s, s.carol, '/api/socket')), 400);
  assert.deepEqual(s.up.seen.map((r) => r.url), []);
  // The same on raw bytes: an answer, then the server closes the connection (no hanging upgrade).
  const reply = await untilServerCloses(s, s.carol, upgradeHead('/api/socket'));
  assert.equal(firstStatus(reply), 400, JSON.stringify(reply));
  assert.deepEqual(s.up.seen.map((r) => r.url), []);
});

test('an upgrade on a broker without any WebSocket route gets 400', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['chat'] }] });
  const carol = await pki.issue('carol', ['chat']);
  const ws = new WebSocket(`wss://127.0.0.1:${b.port}/api/socket`, clientOptions(pki.ca, carol));
  assert.equal(await refusedStatus(ws), 400);
  assert.deepEqual(up.seen.map((r) => r.url), []);
});

test('a path spelled to climb out of the WebSocket route does not reach another route', async (t) => {
  const s = await setup(t);
  // "/ws/../admin" is /admin: judged (and refused) as /admin; encoded dots are refused outright.
  const cases: Array<[string, number]> = [
    ['/ws/../admin/room', 403],
    ['/ws/./../admin/room', 403],
    ['/ws//../admin/room', 403],
    ['/ws/%2e%2e/admin/room', 400],
    ['/ws/%2E%2E%2Fadmin/room', 400],
    ['/ws/..%2fadmin/room', 400],
    ['/ws/..\\admin/room', 400],
    ['/ws/..;/admin/room', 400],
  ];
  const upgrades: string[] = [];
  s.up.server.on('upgrade', (req: IncomingMessage) => upgrades.push(req.url ?? ''));
  for (const [path, status] of cases) {
    const reply = await untilServerCloses(s, s.carol, upgradeHead(path));
    assert.equal(firstStatus(reply), status, `${path}: ${JSON.stringify(reply)}`);
  }
  assert.deepEqual(upgrades, []);
  assert.deepEqual(s.up.seen.map((r) => r.url), []);
  const admin = s.b.logs.of('access').filter((l) => l.path === '/admin/room');
  assert.equal(admin.length, 3);
  assert.ok(admin.every((l) => l.decision === 'deny' && l.route === 'admin' && l.upstream === null));
});
