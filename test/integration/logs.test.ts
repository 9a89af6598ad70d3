/**
 * The log streams, read back as JSON objects: every line names its stream (auth, access, error,
 * audit); a handshake leaves an auth line saying who, or why not and from where; every answer
 * leaves one access line with its decision; upstream failures go to the error stream and bans to
 * the audit stream; and nothing secret (tokens, cookies, keys, PEMs, the CA passphrase) is written.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, deadPort } from '../helpers/broker.ts';

const STREAMS = new Set(['auth', 'access', 'error', 'audit']);
/** A request id: the trace id and the broker span id of its traceparent. */
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;
const DAY = 86_400_000;
const ago = (days: number) => new Date(Date.now() - days * DAY);
const serialOf = (id: Identity) => id.serial.toLowerCase().replace(/^(00)+/, '');

function assertStreams(b: RunningBroker): void {
  assert.ok(b.logs.lines.length > 0);
  for (const l of b.logs.lines) assert.ok(STREAMS.has(String(l.log)), `line without a known stream: ${JSON.stringify(l)}`);
}


/** The access line of the request with this reqId, or of the first request to `path`. */
const accessLine = (b: RunningBroker, match: { reqId?: unknown; path?: string; status?: number }) =>
  b.logs.waitFor((l) => l.log === 'access' && (match.reqId === undefined || l.reqId === match.reqId) && (match.path === undefined || l.path === match.path) && (match.status === undefined || l.status === match.status));

test('a success: the auth line says who (principal, roles, serial, fingerprint, address, protocol, cipher); 200, 403, 429 and 502 each leave an access line with their decision', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const dead = await deadPort();
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
      { name: 'scarce', path: '/scarce', upstream: up.url, roles: ['user'], rateLimit: { rate: 1, per: '1h', burst: 1 } },
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${dead}`, roles: ['user'] },
    ],
  });
  const alice = await pki.issue('alice', ['user', 'ops']);
  const get = (path: string, o: { method?: string; body?: string } = {}) => request(b.port, { id: alice, ca: pki.ca, path, ...o });

  // 200
  const ok = await get('/api/items?q=1', { method: 'POST', body: 'hello' });
  assert.equal(ok.status, 200, ok.text);
  const auth = await b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'ok');
  assert.equal(auth.event, 'handshake');
  assert.equal(auth.principal, 'alice');
  assert.deepEqual(auth.roles, ['user', 'ops']);
  assert.equal(auth.serial, serialOf(alice));
  assert.match(String(auth.fingerprint), /^[0-9a-f]{64}$/);
  assert.equal(auth.remoteIp, '127.0.0.1');
  assert.equal(auth.tlsVersion, 'TLSv1.3');
  assert.match(String(auth.cipher), /^TLS_[A-Z0-9_]+$/);

  const allow = await accessLine(b, { path: '/api/items' });
  assert.match(String(allow.reqId), REQ_ID);
  assert.deepEqual(
    { principal: allow.principal, roles: allow.roles, method: allow.method, route: allow.route, path: allow.path, upstream: allow.upstream, status: allow.status, bytesIn: allow.bytesIn, bytesOut: allow.bytesOut, decision: allow.decision },
    { principal: 'alice', roles: ['user', 'ops'], method: 'POST', route: 'api', path: '/api/items', upstream: up.url, status: 200, bytesIn: 5, bytesOut: Buffer.byteLength(ok.text), decision: 'allow' },
  );
  assert.equal(typeof allow.durationMs, 'number');
  assert.ok((allow.durationMs as number) >= 0);
  assert.equal(String(allow.rateLimitRemaining), ok.headers['ratelimit-remaining'], 'the remaining budget the client was told');
  assert.ok(Number.isInteger(Number(allow.rateLimitRemaining)));
  assert.equal(allow.code, undefined);

  // 403
  const denied = await get('/admin/x');
  assert.equal(denied.status, 403);
  const deny = await accessLine(b, { reqId: denied.json().reqId });
  assert.deepEqual({ principal: deny.principal, route: deny.route, path: deny.path, upstream: deny.upstream, status: deny.status, decision: deny.decision, code: deny.code }, { principal: 'alice', route: 'admin', path: '/admin/x', upstream: null, status: 403, decision: 'deny', code: 'BRK_ERR_ACL_DENIED' });
  assert.equal(typeof deny.detail, 'string');

  // 429
  assert.equal((await get('/scarce/1')).status, 200);
  const limited = await get('/scarce/2');
  assert.equal(limited.status, 429);
  const rl = await accessLine(b, { reqId: limited.json().reqId });
  assert.deepEqual({ route: rl.route, status: rl.status, decision: rl.decision, code: rl.code, rateLimitRemaining: Number(rl.rateLimitRemaining) }, { route: 'scarce', status: 429, decision: 'deny', code: 'BRK_ERR_RATE_LIMITED', rateLimitRemaining: 0 });

  // 502: an error, not a denial, and a line on the error stream with the same reqId
  const failed = await get('/dead/x');
  assert.equal(failed.status, 502);
  const reqId = failed.json().reqId;
  const err = await accessLine(b, { reqId });
  assert.deepEqual({ route: err.route, upstream: err.upstream, status: err.status, decision: err.decision, code: err.code }, { route: 'dead', upstream: `http://127.0.0.1:${dead}`, status: 502, decision: 'error', code: 'BRK_ERR_UPSTREAM_UNAVAILABLE' });
  const upstreamLine = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.deepEqual({ route: upstreamLine.route, upstream: upstreamLine.upstream, reqId: upstreamLine.reqId, level: upstreamLine.level }, { route: 'dead', upstream: `http://127.0.0.1:${dead}`, reqId, level: 50 });

  // one auth line per connection, one access line per request, nothing else on those streams
  assert.equal(b.logs.of('access').length, 5);
  assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'ok').length, 5);
  assert.deepEqual(b.logs.of('auth').filter((l) => l.outcome !== 'ok'), []);
  assertStreams(b);
});

interface Refusal {
  reason: string;
  detail?: string;
  id?: (pki: TestPki, t: TestContext) => Promise<Identity | undefined>;
  tls?: ConnectionOptions;
}

/** Refused handshakes, one broker for all (made after every certificate: the CRL is read at start). */
const REFUSALS: Refusal[] = [
  { reason: 'no certificate', detail: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', id: async () => undefined },
  { reason: 'unknown CA', id: async (_pki, t) => (await makePki(t)).issue('stranger', ['user']) },
  { reason: 'expired', detail: 'CERT_HAS_EXPIRED', id: (pki) => pki.custom({ name: 'old', roles: ['user'], notBefore: ago(10), notAfter: ago(1) }) },
  { reason: 'not yet valid', detail: 'CERT_NOT_YET_VALID', id: (pki) => pki.custom({ name: 'early', roles: ['user'], notBefore: ago(-1), notAfter: ago(-10) }) },
  {
    reason: 'revoked',
    detail: 'CERT_REVOKED',
    id: async (pki) => {
      const id = await pki.issue('gone', ['user']);
      await pki.revoke(id.serial);
      return id;
    },
  },
  { reason: 'wrong key usage', detail: 'INVALID_PURPOSE', id: (pki) => pki.custom({ name: 'server-ish', roles: ['user'], kind: 'server', notBefore: ago(1), notAfter: ago(-1) }) },
  { reason: 'protocol', tls: { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } },
  { reason: 'cipher', tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA' } },
];

test('each refused handshake leaves one auth line with its reason and the client address', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const alice = await pki.issue('alice', ['user']);
  const ids: Array<Identity | undefined> = [];
  for (const r of REFUSALS) ids.push(r.id ? await r.id(pki, t) : alice);
  const b = await startBroker(t, pki, { tls: { server: 'localhost', handshakeTimeout: '2s' }, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });

  const next = (from: number) => b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'refused' && b.logs.lines.indexOf(l) >= from, 10_000);
  for (const [i, r] of REFUSALS.entries()) {
    const from = b.logs.lines.length;
    const id = ids[i];
    await request(b.port, { ...(id ? { id } : {}), ca: pki.ca, path: '/api/x', ...(r.tls ? { tls: r.tls } : {}) }).then(
      // tls.refusal http: a certificate that failed verification is told why (495); every other refusal is cut off in TLS
      (res) => assert.equal(res.status, 495, `${r.reason}: expected a refused handshake or a 495, got HTTP ${res.status}`),
      () => undefined,
    );
    const line = await next(from);
    assert.equal(line.event, 'handshake', r.reason);
    assert.equal(line.reason, r.reason, JSON.stringify(line));
    if (r.detail) assert.equal(line.detail, r.detail, JSON.stringify(line));
    assert.equal(line.remoteIp, '127.0.0.1', r.reason);
    assert.equal(line.level, 40, `${r.reason}: a warning`);
  }

  // A TCP client that never says hello: dropped at the handshake deadline, logged with its address.
  const from = b.logs.lines.length;
  const socket = netConnect(b.port, '127.0.0.1');
  t.after(() => void socket.destroy());
  await once(socket, 'connect');
  const timeout = await next(from);
  assert.deepEqual({ reason: timeout.reason, detail: timeout.detail, remoteIp: timeout.remoteIp }, { reason: 'handshake timeout', detail: 'ERR_TLS_HANDSHAKE_TIMEOUT', remoteIp: '127.0.0.1' });

  assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'refused').length, REFUSALS.length + 1);
  assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'ok').length, 0);
  assert.equal(b.logs.of('access').length, 0);
  assert.equal(up.seen.length, 0);
  assertStreams(b);
});

test('a ban is written to the audit stream with the address, reason, count and duration', async (t) => {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, { bans: { enabled: true, failedHandshakes: 3, window: '1m', duration: '10m' } });
  for (let i = 0; i < 3; i++) await request(b.port, { ca: pki.ca, path: '/' }).then(() => assert.fail('a client without a certificate got an answer'), () => undefined);
  const ban = await b.logs.waitFor((l) => l.log === 'audit' && l.event === 'ban');
  assert.deepEqual(
    { remoteIp: ban.remoteIp, reason: ban.reason, count: ban.count, windowMs: ban.windowMs, durationMs: ban.durationMs },
    { remoteIp: '127.0.0.1', reason: 'failed handshakes', count: 3, windowMs: 60_000, durationMs: 600_000 },
  );
  assert.equal(b.logs.of('audit').length, 1);
  assertStreams(b);
});

test('nothing secret is logged: no Authorization, Cookie or Proxy-Authorization value, no key, no PEM, no CA passphrase', async (t) => {
  const passphrase = 'tr0ub4dor-and-3-more-words';
  const pki = await makePki(t, { passphrase });
  const up = await startUpstream(t);
  const dead = await deadPort();
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${dead}`, roles: ['user'] },
    ],
  });
  const alice = await pki.issue('alice', ['user']);
  const secrets = { authorization: 'Bearer s3cret-token', cookie: 'session=s3cret-cookie', 'proxy-authorization': 'Basic s3cret-proxy-credential' };
  const cases: Array<[path: string, status: number]> = [
    ['/api/x', 200],
    ['/admin/x', 403],
    ['/dead/x', 502],
    ['/nowhere', 404],
  ];
  for (const [path, status] of cases) {
    const res = await request(b.port, { id: alice, ca: pki.ca, path, method: 'POST', headers: secrets, body: 'body' });
    assert.equal(res.status, status, `${path}: ${res.text}`);
  }
  // Refused handshakes too: a certificate the broker will not take, and none at all.
  const strange = await (await makePki(t)).issue('stranger', ['user']);
  for (const id of [strange, undefined]) await request(b.port, { ...(id ? { id } : {}), ca: pki.ca, path: '/api/x', headers: secrets }).then((res) => assert.equal(res.status, 495, 'a refused client is answered at most with the 495'), () => undefined);

  await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  await b.logs.waitFor((l) => l.log === 'access' && l.status === 404);
  await b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'refused' && l.reason === 'no certificate');
  assert.equal(up.seen.length, 1);
  assert.equal(up.seen[0]?.headers.authorization, secrets.authorization, 'the control: the secret did go through the broker');
  assert.equal(b.logs.of('access').length, cases.length);

  const text = b.logs.lines.map((l) => JSON.stringify(l)).join('\n');
  for (const needle of ['s3cret', 'PRIVATE KEY', 'BEGIN CERTIFICATE', 'BEGIN X509 CRL', passphrase, alice.key.split('\n')[1] as string]) {
    assert.ok(!text.includes(needle), `the logs contain ${JSON.stringify(needle)}`);
  }
  assertStreams(b);
});

test('log.buffer: file lines are collected, written by the periodic flush, and whatever is left at shutdown', async (t) => {
  const { createLoggers } = await import('../../src/observability/loggers.ts');
  const { tempDir } = await import('../helpers/cli.ts');
  const { eventually } = await import('../helpers/within.ts');
  const { readFileSync, existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dir = tempDir(t);
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
  const off = { auth: 'off', audit: 'off', error: 'off' } as const;
  // A long flush interval: only the buffer size or a flush writes.
  const held = createLoggers({ level: 'info', access: join(dir, 'held.log'), ...off, bufferBytes: 64 * 1024, flushMs: 3_600_000 });
  const direct = createLoggers({ level: 'info', access: join(dir, 'direct.log'), ...off });
  for (let i = 0; i < 3; i++) held.access.info({ n: i }, 'line');
  direct.access.info({ n: 0 }, 'line');
  await eventually(() => read(join(dir, 'direct.log')).length === 1, 'the unbuffered line, written later, is on disk');
  assert.equal(read(join(dir, 'held.log')).length, 0, 'the buffered lines wait for the buffer to fill');
  held.flush();
  assert.deepEqual(read(join(dir, 'held.log')).map((l) => JSON.parse(l).n), [0, 1, 2], 'flush at shutdown writes them, in order');

  const periodic = createLoggers({ level: 'info', access: join(dir, 'periodic.log'), ...off, bufferBytes: 64 * 1024, flushMs: 50 });
  periodic.access.info({ n: 7 }, 'line');
  await eventually(() => read(join(dir, 'periodic.log')).length === 1, 'the periodic flush writes the line');
  periodic.flush();
  direct.flush();
});
