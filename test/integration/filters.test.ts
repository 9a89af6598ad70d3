/**
 * Traffic filters and bans. At accept, before any TLS work: global address lists (filters.allowIps,
 * filters.denyIps), open connections per address, new connections per address, and bans earned by
 * failed handshakes or 401/403 answers. After the handshake: per-role address lists (403) and
 * requests per keep-alive connection.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createNetServer } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import { LENIENT, makePki, rawExchange, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';

/** A request id: the trace id and the broker span id of its traceparent. */
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;

async function setup(t: TestContext, raw: Record<string, unknown>) {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user', 'partner'] }], ...raw });
  const alice = await pki.issue('alice', ['user']);
  return { pki, up, b, alice };
}

/** A request that must fail to connect: the error's code (or message). */
async function refusedAt(b: RunningBroker, pki: TestPki, id: Identity, host = '127.0.0.1'): Promise<string> {
  try {
    const res = await request(b.port, { id, ca: pki.ca, path: '/api/x', tls: { host } });
    return assert.fail(`expected the connection to be refused, got ${res.status}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

/** The auth log, one "event outcome reason" per line. */
function authEvents(b: RunningBroker): string[] {
  return b.logs.of('auth').map((l) => [l.event, l.outcome, l.reason].filter((x) => x !== undefined).join(' '));
}

/** An mTLS connection held open; destroyed in t.after. */
async function openConnection(t: TestContext, b: RunningBroker, pki: TestPki, id: Identity): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port: b.port, ca: pki.ca, cert: id.cert, key: id.key });
  t.after(() => void socket.destroy());
  await once(socket, 'secureConnect');
  return socket;
}

/** One GET on an open keep-alive connection: the head of the answer (once its body is in too). */
function answerOn(socket: TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: Buffer) => {
      text += c.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, end + 2));
      if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(text.slice(0, end));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  });
}

/** Rejects if `p` has not settled within `ms`: a deadline for a wait, not a measurement. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** A handshake without a client certificate: refused by the broker. Resolves when the connection is gone. */
async function handshakeWithoutCertificate(b: RunningBroker, pki: TestPki): Promise<void> {
  const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port: b.port, ca: pki.ca });
  socket.on('error', () => {}); // the broker's "certificate required" alert
  socket.on('secureConnect', () => socket.write('GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n'));
  await new Promise((resolve) => socket.once('close', resolve));
}

/** Retries `attempt` until it resolves with true, every `everyMs`, for at most `ms`. */
async function eventually(attempt: () => Promise<boolean>, what: string, ms = 10_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await attempt()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(everyMs);
  }
}

const served = (b: RunningBroker, pki: TestPki, id: Identity) => async () => {
  try {
    return (await request(b.port, { id, ca: pki.ca, path: '/api/again' })).status === 200;
  } catch {
    return false;
  }
};

async function ipv6Problem(host: string): Promise<string | undefined> {
  const server = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
    return undefined;
  } catch (err) {
    return `cannot listen on ${host}: ${(err as NodeJS.ErrnoException).code}`;
  } finally {
    server.close();
  }
}

test('filters.denyIps: a listed address is closed at accept, before any handshake; nothing is forwarded', async (t) => {
  const s = await setup(t, { filters: { ...LENIENT.filters, denyIps: ['127.0.0.1'] } });
  const code = await refusedAt(s.b, s.pki, s.alice);
  assert.match(code, /ECONNRESET|socket disconnected/, code);
  await s.b.logs.waitFor((l) => l.event === 'accept');
  assert.deepEqual(authEvents(s.b), ['accept refused ip not allowed']);
  assert.equal(s.b.logs.of('auth')[0]?.remoteIp, '127.0.0.1');
  assert.equal(s.b.broker.guard.refused['ip not allowed'], 1);
  assert.deepEqual(s.up.seen, []);
});

test('filters.denyIps on a dual-stack listener: 127.0.0.1 (seen as ::ffff:127.0.0.1) is refused, ::1 is admitted', async (t) => {
  const problem = (await ipv6Problem('::1')) ?? (await ipv6Problem('::'));
  if (problem) return void t.skip(`no IPv6 here (${problem})`);
  const s = await setup(t, { listen: { host: '::', port: 0 }, filters: { ...LENIENT.filters, denyIps: ['127.0.0.0/8'] } });
  await refusedAt(s.b, s.pki, s.alice, '127.0.0.1');
  const refused = await s.b.logs.waitFor((l) => l.event === 'accept');
  assert.equal(refused.remoteIp, '127.0.0.1');
  assert.equal(refused.reason, 'ip not allowed');

  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/v6', tls: { host: '::1' } });
  assert.equal(res.status, 200, res.text);
  const ok = s.b.logs.of('auth').find((l) => l.outcome === 'ok');
  assert.equal(ok?.remoteIp, '::1');
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/v6']);
});

test('filters.allowIps: an address outside the list is refused at accept', async (t) => {
  const s = await setup(t, { filters: { ...LENIENT.filters, allowIps: ['10.0.0.0/8'] } });
  await refusedAt(s.b, s.pki, s.alice);
  await s.b.logs.waitFor((l) => l.event === 'accept');
  assert.deepEqual(authEvents(s.b), ['accept refused ip not allowed']);
  assert.deepEqual(s.up.seen, []);
});

test('roles.*.allowIps / denyIps: 403 BRK_ERR_FILTER_IP_DENIED for an identity holding the role, 200 for another', async (t) => {
  const s = await setup(t, { roles: { partner: { denyIps: ['127.0.0.1/32'] }, remote: { allowIps: ['10.0.0.0/8', '::1'] } } });
  const acme = await s.pki.issue('acme', ['partner']);
  const far = await s.pki.issue('far', ['user', 'remote']);
  const cases: Array<[label: string, id: Identity, status: number]> = [
    ['partner, denied 127.0.0.1', acme, 403],
    ['remote, 127.0.0.1 not allowed', far, 403],
    ['user', s.alice, 200],
  ];
  for (const [label, id, status] of cases) {
    const res = await request(s.b.port, { id, ca: s.pki.ca, path: '/api/x' });
    assert.equal(res.status, status, `${label}: ${res.text}`);
    if (status !== 403) continue;
    const body = res.json();
    assert.deepEqual(body.code, 'BRK_ERR_FILTER_IP_DENIED');
    assert.equal(body.message, 'access denied');
    assert.match(String(body.reqId), REQ_ID);
    assert.ok(!res.text.includes('127.0.0.1') && !res.text.includes('partner'), res.text);
  }
  assert.deepEqual(s.up.seen.map((r) => r.headers['x-client-name']), ['alice']);
  const denied = s.b.logs.of('access').filter((l) => l.status === 403);
  assert.deepEqual(denied.map((l) => [l.principal, l.code, l.detail]), [
    ['acme', 'BRK_ERR_FILTER_IP_DENIED', '127.0.0.1 denied for role partner'],
    ['far', 'BRK_ERR_FILTER_IP_DENIED', '127.0.0.1 not allowed for role remote'],
  ]);
});

test('filters.maxConnectionsPerIp: a 3rd simultaneous connection is closed at accept; the first two still work', async (t) => {
  const s = await setup(t, { filters: { ...LENIENT.filters, maxConnectionsPerIp: 2 } });
  const one = await openConnection(t, s.b, s.pki, s.alice);
  const two = await openConnection(t, s.b, s.pki, s.alice);
  await refusedAt(s.b, s.pki, s.alice);
  assert.ok(authEvents(s.b).includes('accept refused too many connections'), authEvents(s.b).join('\n'));
  assert.match(await answerOn(one, '/api/one'), /^HTTP\/1\.1 200 /);
  assert.match(await answerOn(two, '/api/two'), /^HTTP\/1\.1 200 /);

  // One closes: a new connection fits again (once the broker has seen the close).
  one.destroy();
  await eventually(served(s.b, s.pki, s.alice), 'a new connection after one closed');
  two.destroy();
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/one', '/api/two', '/api/again']);
});

test('filters.connectionRate: the 4th new connection within the burst of 3 is refused at accept', async (t) => {
  const s = await setup(t, { filters: { ...LENIENT.filters, connectionRate: { rate: 1, per: '1m', burst: 3 } } });
  for (let i = 0; i < 3; i++) assert.equal((await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: `/api/${i}` })).status, 200);
  await refusedAt(s.b, s.pki, s.alice);
  const refused = await s.b.logs.waitFor((l) => l.event === 'accept');
  assert.equal(refused.reason, 'connection rate');
  assert.equal(s.b.broker.guard.refused['connection rate'], 1);
  assert.equal(s.up.seen.length, 3);
});

test('filters.maxRequestsPerConnection: the 3rd answer on a keep-alive connection says "connection: close", and the broker closes it', async (t) => {
  // keepAlive is long, so only the request cap can end the connection this soon.
  const s = await setup(t, { filters: { ...LENIENT.filters, maxRequestsPerConnection: 3 }, timeouts: { keepAlive: '60s' } });
  const socket = await openConnection(t, s.b, s.pki, s.alice);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  const heads: string[] = [];
  for (let i = 1; i <= 3; i++) heads.push(await answerOn(socket, `/api/${i}`));
  assert.deepEqual(heads.map((h) => [h.split('\r\n', 1)[0], /^connection: (.*)$/im.exec(h)?.[1]]), [
    ['HTTP/1.1 200 OK', 'keep-alive'],
    ['HTTP/1.1 200 OK', 'keep-alive'],
    ['HTTP/1.1 200 OK', 'close'],
  ]);
  await within(closed, 10_000, 'the broker kept the connection open after its last request');
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/1', '/api/2', '/api/3']);

  // Five requests pipelined on a new connection: three answers, then the connection ends.
  const data = [4, 5, 6, 7, 8].map((i) => `GET /api/${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join('');
  const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data, ms: 10_000 });
  assert.deepEqual(reply.match(/HTTP\/1\.1 \d{3}(?= )/g), ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
  assert.deepEqual(s.up.seen.map((r) => r.url).slice(3), ['/api/4', '/api/5', '/api/6']);
});

test('bans: 3 failed handshakes ban the address (a valid client is refused at accept) until the ban expires', async (t) => {
  const s = await setup(t, { bans: { enabled: true, window: '1m', failedHandshakes: 3, duration: '2s' } });
  for (let i = 0; i < 3; i++) await handshakeWithoutCertificate(s.b, s.pki);
  const ban = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.remoteIp, '127.0.0.1');
  assert.equal(ban.reason, 'failed handshakes');
  assert.equal(ban.count, 3);
  assert.equal(ban.durationMs, 2_000);
  assert.equal(s.b.logs.of('auth').filter((l) => l.event === 'handshake' && l.outcome === 'refused').length, 3);

  await refusedAt(s.b, s.pki, s.alice);
  assert.equal((await s.b.logs.waitFor((l) => l.event === 'accept')).reason, 'banned');
  assert.ok(!s.b.logs.of('auth').some((l) => l.outcome === 'ok'), 'no handshake while banned');

  await eventually(served(s.b, s.pki, s.alice), 'admitted again after the ban');
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/again']);
});

test('bans: 3 denied requests (403) by a valid identity ban its address until the ban expires', async (t) => {
  const s = await setup(t, { bans: { enabled: true, window: '1m', deniedRequests: 3, duration: '2s' } });
  const outsider = await s.pki.issue('outsider', ['other']);
  for (let i = 0; i < 3; i++) assert.equal((await request(s.b.port, { id: outsider, ca: s.pki.ca, path: '/api/x' })).status, 403);
  const ban = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.reason, 'denied requests');
  assert.equal(ban.count, 3);

  // The ban is on the address: alice, from the same address, is refused too.
  await refusedAt(s.b, s.pki, s.alice);
  assert.equal((await s.b.logs.waitFor((l) => l.event === 'accept')).reason, 'banned');

  await eventually(served(s.b, s.pki, s.alice), 'admitted again after the ban');
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/again']);
});

test('bans.enabled: false never bans, whatever the thresholds', async (t) => {
  const s = await setup(t, { bans: { enabled: false, window: '1m', failedHandshakes: 1, deniedRequests: 1, duration: '1h' } });
  const outsider = await s.pki.issue('outsider', ['other']);
  for (let i = 0; i < 3; i++) await handshakeWithoutCertificate(s.b, s.pki);
  for (let i = 0; i < 3; i++) assert.equal((await request(s.b.port, { id: outsider, ca: s.pki.ca, path: '/api/x' })).status, 403);
  assert.equal((await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/ok' })).status, 200);
  assert.equal(s.b.logs.of('auth').filter((l) => l.event === 'handshake' && l.outcome === 'refused').length, 3);
  assert.ok(!s.b.logs.lines.some((l) => l.event === 'ban' || l.event === 'accept'), 'no ban, no refusal at accept');
  assert.equal(s.b.broker.guard.refused.banned, 0);
});
