/**
 * Per-identity limits over real mTLS: a token bucket per identity name (rateLimit), stricter ones
 * per role (roles.*.rateLimit) and per route (routes[].rateLimit), and in-flight caps
 * (maxConcurrent, roles.*.maxConcurrent). A refused request gets 429 with Retry-After and the
 * RateLimit-* headers, is never forwarded, and its access log line carries the code.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { makePki, request, startBroker, startUpstream, type Identity, type Response, type RunningBroker, type TestPki } from '../helpers/broker.ts';

/** A request id: the trace id and the broker span id of its traceparent. */
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;
const FIVE_PER_MINUTE = { rate: 5, per: '1m', burst: 5 };

function get(b: RunningBroker, pki: TestPki, id: Identity, path: string): Promise<Response> {
  return request(b.port, { id, ca: pki.ca, path });
}

/** What a client learns from the limit headers, as numbers (NaN when absent). */
function limits(res: Response): { status: number; limit: number; remaining: number } {
  return { status: res.status, limit: Number(res.headers['ratelimit-limit']), remaining: Number(res.headers['ratelimit-remaining']) };
}

function assertRefused(res: Response, code: string): Record<string, unknown> {
  assert.equal(res.status, 429, res.text);
  const body = res.json();
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'reqId', 'statusCode']);
  assert.equal(body.statusCode, 429);
  assert.equal(body.code, code);
  assert.equal(typeof body.message, 'string');
  assert.match(String(body.reqId), REQ_ID);
  const retryAfter = String(res.headers['retry-after']);
  assert.match(retryAfter, /^\d+$/, 'Retry-After is whole seconds');
  assert.ok(Number(retryAfter) >= 1, `Retry-After ${retryAfter}`);
  return body;
}

test('an identity\'s 6th request within its burst of 5 gets 429 with Retry-After and RateLimit-*; the upstream saw 5', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { rateLimit: FIVE_PER_MINUTE, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);

  const allowed: Array<ReturnType<typeof limits>> = [];
  for (let i = 0; i < 5; i++) allowed.push(limits(await get(b, pki, alice, `/api/${i}`)));
  assert.deepEqual(allowed, [4, 3, 2, 1, 0].map((remaining) => ({ status: 200, limit: 5, remaining })));

  const sixth = await get(b, pki, alice, '/api/5');
  const body = assertRefused(sixth, 'BRK_ERR_RATE_LIMITED');
  assert.equal(body.message, 'rate limit exceeded');
  assert.equal(sixth.headers['ratelimit-limit'], '5');
  assert.equal(sixth.headers['ratelimit-remaining'], '0');
  // 5 a minute is one token every 12 s; the bucket is full again within the minute.
  assert.ok(Number(sixth.headers['retry-after']) <= 12, `Retry-After ${sixth.headers['retry-after']}`);
  assert.match(String(sixth.headers['ratelimit-reset']), /^\d+$/);
  assert.ok(Number(sixth.headers['ratelimit-reset']) >= 1 && Number(sixth.headers['ratelimit-reset']) <= 60, `RateLimit-Reset ${sixth.headers['ratelimit-reset']}`);
  assert.deepEqual(up.seen.map((s) => s.url), ['/api/0', '/api/1', '/api/2', '/api/3', '/api/4']);

  const access = await b.logs.waitFor((l) => l.log === 'access' && l.status === 429);
  assert.equal(access.code, 'BRK_ERR_RATE_LIMITED');
  assert.equal(access.decision, 'deny');
  assert.equal(access.principal, 'alice');
  assert.equal(access.route, 'api');
  assert.equal(access.upstream, null);
  assert.equal(access.reqId, body.reqId);
});

test('buckets are per identity name: another identity is unaffected; a second certificate of the same name shares the bucket', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { rateLimit: FIVE_PER_MINUTE, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);
  const bob = await pki.issue('bob', ['user']);
  // A renewal, say: same name, another key and serial.
  const alice2 = await pki.custom({ name: 'alice', roles: ['user'], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
  assert.notEqual(alice2.serial, alice.serial);

  for (let i = 0; i < 3; i++) assert.equal((await get(b, pki, alice, '/api/a')).status, 200);
  const sharing: Array<ReturnType<typeof limits>> = [];
  for (let i = 0; i < 3; i++) sharing.push(limits(await get(b, pki, alice2, '/api/a2')));
  assert.deepEqual(sharing, [
    { status: 200, limit: 5, remaining: 1 },
    { status: 200, limit: 5, remaining: 0 },
    { status: 429, limit: 5, remaining: 0 },
  ]);
  assertRefused(await get(b, pki, alice, '/api/a'), 'BRK_ERR_RATE_LIMITED');

  assert.deepEqual(limits(await get(b, pki, bob, '/api/b')), { status: 200, limit: 5, remaining: 4 });
  assert.deepEqual(up.seen.map((s) => `${s.headers['x-client-name']} ${s.url}`), ['alice /api/a', 'alice /api/a', 'alice /api/a', 'alice /api/a2', 'alice /api/a2', 'bob /api/b']);
});

test('roles.*.rateLimit binds for an identity holding the role; others keep the default', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    rateLimit: FIVE_PER_MINUTE,
    roles: { partner: { rateLimit: { rate: 2, per: '1m', burst: 2 } } },
    routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['partner', 'user'] }],
  });
  const acme = await pki.issue('acme', ['partner']);
  const bob = await pki.issue('bob', ['user']);

  const partner: Array<ReturnType<typeof limits>> = [];
  for (let i = 0; i < 3; i++) partner.push(limits(await get(b, pki, acme, '/api/p')));
  assert.deepEqual(partner, [
    { status: 200, limit: 2, remaining: 1 },
    { status: 200, limit: 2, remaining: 0 },
    { status: 429, limit: 2, remaining: 0 },
  ]);
  const other: Array<ReturnType<typeof limits>> = [];
  for (let i = 0; i < 3; i++) other.push(limits(await get(b, pki, bob, '/api/u')));
  assert.deepEqual(other, [4, 3, 2].map((remaining) => ({ status: 200, limit: 5, remaining })));
  assert.equal(up.seen.length, 5);
});

test('routes[].rateLimit binds on that route only; the identity\'s own bucket still counts every route', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    rateLimit: FIVE_PER_MINUTE,
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'orders', path: '/orders', upstream: up.url, roles: ['user'], rateLimit: { rate: 2, per: '1m', burst: 2 } },
    ],
  });
  const alice = await pki.issue('alice', ['user']);
  const bob = await pki.issue('bob', ['user']);

  const cases: Array<[path: string, status: number, limit: number, remaining: number]> = [
    ['/orders/1', 200, 2, 1], // the route bucket is the one with fewest left
    ['/orders/2', 200, 2, 0],
    ['/orders/3', 429, 2, 0], // the route's limit binds…
    ['/api/1', 200, 5, 2], // …not elsewhere; the refused request cost nothing: 5 - 2 - 1
    ['/api/2', 200, 5, 1],
    ['/api/3', 200, 5, 0],
    ['/api/4', 429, 5, 0], // the default bucket binds on its own
  ];
  for (const [path, status, limit, remaining] of cases) assert.deepEqual(limits(await get(b, pki, alice, path)), { status, limit, remaining }, path);
  // The route bucket is per (route, identity).
  assert.deepEqual(limits(await get(b, pki, bob, '/orders/1')), { status: 200, limit: 2, remaining: 1 });
  assert.deepEqual(up.seen.map((s) => `${s.headers['x-client-name']} ${s.url}`), ['alice /orders/1', 'alice /orders/2', 'alice /api/1', 'alice /api/2', 'alice /api/3', 'bob /orders/1']);
});

/** An upstream that holds /api/hold requests until the test releases them, and answers others at once. */
async function holdingUpstream(t: TestContext) {
  const held: ServerResponse[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const up = await startUpstream(t, (req, res) => {
    if (!req.url.startsWith('/api/hold')) return void res.end('quick');
    held.push(res);
    for (const w of [...waiters]) if (held.length >= w.n) waiters.splice(waiters.indexOf(w), 1) && w.resolve();
  });
  return {
    up,
    held,
    /** Resolves once `n` requests are held, or rejects after `ms`. */
    holding(n: number, ms = 10_000): Promise<void> {
      if (held.length >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the upstream held ${held.length} of ${n} requests in time`)), ms);
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    release(): void {
      for (const res of held.splice(0)) res.end('released');
    },
  };
}

test('roles.*.maxConcurrent: the 3rd request in flight gets 429 BRK_ERR_CONCURRENCY_LIMITED; once answers return, requests pass again', async (t) => {
  const pki = await makePki(t);
  const h = await holdingUpstream(t);
  const b = await startBroker(t, pki, { maxConcurrent: 100, roles: { slow: { maxConcurrent: 2 } }, routes: [{ name: 'api', path: '/api', upstream: h.up.url, roles: ['slow', 'user'] }] });
  t.after(() => h.release()); // before the upstream and broker close, should an assertion fail midway
  const alice = await pki.issue('alice', ['slow']);
  const bob = await pki.issue('bob', ['user']);

  const first = get(b, pki, alice, '/api/hold/1');
  const second = get(b, pki, alice, '/api/hold/2');
  await h.holding(2);

  const third = await get(b, pki, alice, '/api/quick');
  const body = assertRefused(third, 'BRK_ERR_CONCURRENCY_LIMITED');
  assert.equal(body.message, 'too many requests in flight');
  assert.equal(third.headers['retry-after'], '1');
  // Someone else, without the role, is not held up by alice's requests.
  assert.equal((await get(b, pki, bob, '/api/quick')).status, 200);

  h.release();
  assert.deepEqual([(await first).text, (await second).text], ['released', 'released']);
  const after = await get(b, pki, alice, '/api/quick');
  assert.equal(after.status, 200, after.text);
  assert.deepEqual(h.up.seen.map((s) => `${s.headers['x-client-name']} ${s.url}`).sort(), ['alice /api/hold/1', 'alice /api/hold/2', 'alice /api/quick', 'bob /api/quick']);

  const access = await b.logs.waitFor((l) => l.log === 'access' && l.status === 429);
  assert.equal(access.code, 'BRK_ERR_CONCURRENCY_LIMITED');
  assert.equal(access.principal, 'alice');
  assert.equal(access.reqId, body.reqId);
});
