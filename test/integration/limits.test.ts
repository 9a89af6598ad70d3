/**
 * Size and time limits on requests: limits.bodySize (declared and streamed bodies), limits.urlLength
 * and timeouts.headers / timeouts.request (a slow client is dropped without holding up anyone else).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { makePki, rawExchange, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, type Upstream } from '../helpers/broker.ts';

interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  alice: Identity;
  /** Every request the upstream started to receive, finished or not (`up.seen` has the finished ones). */
  arrived: string[];
}

async function setup(t: TestContext, raw: Record<string, unknown>): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }], ...raw });
  const alice = await pki.issue('alice', ['user']);
  const arrived: string[] = [];
  up.server.on('request', (req: IncomingMessage) => {
    arrived.push(`${req.method} ${req.url}`);
    req.on('error', () => {}); // a request the broker aborts mid-body ("aborted") must not crash the test
  });
  return { pki, up, b, alice, arrived };
}

function mtls(s: Setup): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: s.b.port, servername: 'localhost', ca: s.pki.ca, cert: s.alice.cert, key: s.alice.key }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Rejects if `p` has not settled within `ms`: a deadline for a wait, not a measurement. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

const chunked = (sizes: number[]) => sizes.map((n) => `${n.toString(16)}\r\n${'a'.repeat(n)}\r\n`).join('');
const H = 'Host: localhost\r\n';

test('a declared body over limits.bodySize gets 413 and is never forwarded', async (t) => {
  const s = await setup(t, { limits: { bodySize: '1kb' } });
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, method: 'POST', path: '/api/upload', body: Buffer.alloc(2048, 1) });
  assert.equal(res.status, 413);
  assert.equal(res.json().code, 'BRK_ERR_HTTP_BODY_TOO_LARGE');
  assert.deepEqual(s.arrived, []);
});

test('a body within limits.bodySize reaches the upstream byte for byte', async (t) => {
  const s = await setup(t, { limits: { bodySize: '1kb' } });
  const body = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, method: 'POST', path: '/api/upload', body });
  assert.equal(res.status, 200);
  assert.equal(s.up.seen.length, 1);
  assert.deepEqual(s.up.seen[0]!.body, body);
  // Exactly at the limit is still allowed.
  const full = await request(s.b.port, { id: s.alice, ca: s.pki.ca, method: 'POST', path: '/api/upload', body: Buffer.alloc(1024, 7) });
  assert.equal(full.status, 200);
  assert.equal(s.up.seen[1]?.body.length, 1024);
});

test('a chunked body over limits.bodySize gets 413, and the upstream never gets it whole', async (t) => {
  const s = await setup(t, { limits: { bodySize: '1kb' } });
  // All at once: refused before or while the proxy streams it.
  const data = `POST /api/upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunked([1024, 1024, 1024, 1024])}0\r\n\r\n`;
  const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data });
  assert.match(reply, /^HTTP\/1\.1 413 /);
  assert.match(reply, /"code":"BRK_ERR_HTTP_BODY_TOO_LARGE"/);
  assert.deepEqual(s.up.seen.map((r) => r.url), []);

  // In two parts, the second sent only once the upstream has the request: the counter must stop a
  // body that is already streaming, and the upstream's request must end incomplete.
  const upstreamRequest = once(s.up.server, 'request') as Promise<[IncomingMessage]>;
  const socket = await mtls(s);
  t.after(() => void socket.destroy());
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  const clientClosed = once(socket, 'close');
  socket.write(`POST /api/upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunked([1000])}`);
  const [upReq] = await upstreamRequest;
  upReq.on('error', () => {}); // "aborted": expected
  const upstreamDone = new Promise<boolean>((resolve) => upReq.on('close', () => resolve(upReq.complete)));
  socket.write(`${chunked([1024, 1024, 1024])}0\r\n\r\n`);
  assert.equal(await upstreamDone, false, 'the upstream received the whole body');
  await clientClosed;
  assert.match(answer, /^HTTP\/1\.1 413 /);
  assert.deepEqual(s.up.seen.map((r) => r.url), []);
});

test('a request target longer than limits.urlLength gets 414', async (t) => {
  const s = await setup(t, { limits: { urlLength: 100 } });
  const long = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: `/api/${'a'.repeat(200)}` });
  assert.equal(long.status, 414);
  assert.equal(long.json().code, 'BRK_ERR_HTTP_URI_TOO_LONG');
  const longQuery = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: `/api/a?q=${'a'.repeat(200)}` });
  assert.equal(longQuery.status, 414);
  assert.deepEqual(s.arrived, []);
  const atLimit = `/api/${'a'.repeat(95)}`;
  assert.equal(atLimit.length, 100);
  const ok = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: atLimit });
  assert.equal(ok.status, 200);
  assert.equal(s.up.seen[0]?.url, atLimit);
});

test('a client that stops halfway through its request head is dropped at timeouts.headers; others are served', async (t) => {
  const s = await setup(t, { timeouts: { headers: '500ms' } });
  const slow = await mtls(s);
  t.after(() => void slow.destroy());
  let answer = '';
  slow.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  slow.on('error', () => {});
  const slowClosed = once(slow, 'close');
  slow.write(`GET /api/slow HTTP/1.1\r\nHost: loc`);

  // A well-behaved client on its own connection is served while the slow one hangs on.
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/fast' });
  assert.equal(res.status, 200);

  // Node sweeps for expired head deadlines every connectionsCheckingInterval (30 s unless set): the
  // deadline here catches a sweep that ignores timeouts.headers.
  await within(slowClosed, 10_000, 'the slow client was not dropped');
  // Dropped by the server, with at most an error answer; the partial request never went upstream.
  assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d /.test(answer), JSON.stringify(answer));
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/fast']);
});

test('a client that stalls halfway through its body is dropped at timeouts.request; others are served', async (t) => {
  const s = await setup(t, { timeouts: { headers: '500ms', request: '1s' } });
  const upstreamRequest = once(s.up.server, 'request') as Promise<[IncomingMessage]>;
  const slow = await mtls(s);
  t.after(() => void slow.destroy());
  let answer = '';
  slow.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  slow.on('error', () => {});
  const slowClosed = once(slow, 'close');
  // The head is complete (so timeouts.headers is met); 100 of the 1000 announced body bytes follow.
  slow.write(`POST /api/slow HTTP/1.1\r\n${H}Content-Length: 1000\r\n\r\n${'a'.repeat(100)}`);
  // The proxy streams: the upstream has the request, and must see it end incomplete.
  const [upReq] = await upstreamRequest;
  const upstreamDone = new Promise<boolean>((resolve) => upReq.on('close', () => resolve(upReq.complete)));

  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/fast' });
  assert.equal(res.status, 200);

  await within(slowClosed, 10_000, 'the slow client was not dropped');
  assert.equal(await within(upstreamDone, 10_000, 'the upstream request did not end'), false, 'the upstream received a whole body');
  assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d /.test(answer), JSON.stringify(answer));
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/fast']);
});
