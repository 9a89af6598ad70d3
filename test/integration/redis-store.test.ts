/**
 * Shared state in a real redis-server (no mocks): the RedisStore itself, then replicas (separate
 * buildBroker instances, each with its own Redis connections) sharing one budget, one in-flight
 * count and one set of bans; key prefixes keeping brokers apart; and what a replica does while
 * Redis is gone (fail open or closed, one log line per outage) and after it is back.
 *
 * Buckets refill per day here, so no token comes back during a test and the counts are exact.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { validateConfig, type BrokerConfig } from '../../src/config/index.ts';
import { RedisStore, type LimitCheck } from '../../src/ratelimit/index.ts';
import { captureLoggers, makePki, request, startBroker, startUpstream, type Identity, type Response, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { redisMissing, startRedis, type RunningRedis } from '../helpers/redis.ts';
import { within } from '../helpers/within.ts';

const skip = redisMissing;
const DAY = { per: '1d' } as const;

function storeConfig(pki: TestPki, raw: Record<string, unknown>): BrokerConfig {
  const { config, problems } = validateConfig({ pki: { dir: pki.dir }, tls: { server: 'localhost' }, ...raw }, pki.dir);
  if (!config) throw new Error(problems.join('\n'));
  return config;
}

/** A RedisStore on `url`, connected and subscribed, closed after the test. */
async function openStore(t: TestContext, pki: TestPki, raw: Record<string, unknown>) {
  const { loggers, sink } = captureLoggers();
  const store = new RedisStore(storeConfig(pki, raw), loggers.error);
  t.after(() => store.close());
  await store.ready();
  return { store, logs: sink };
}

const route = (upstream: string) => [{ name: 'r', path: '/r', upstream, roles: ['app'] }];

/** Starts `n` brokers with the same config: replicas of one service, sharing `redis`. */
async function replicas(t: TestContext, pki: TestPki, n: number, raw: Record<string, unknown>): Promise<RunningBroker[]> {
  const out: RunningBroker[] = [];
  for (let i = 0; i < n; i++) out.push(await startBroker(t, pki, raw));
  return out;
}

const get = (b: RunningBroker, pki: TestPki, id: Identity) => request(b.port, { id, ca: pki.ca, path: '/r/x' });

function redisLines(b: RunningBroker, outcome: 'down' | 'up'): Array<Record<string, unknown>> {
  return b.logs.of('error').filter((l) => l.event === 'redis' && l.outcome === outcome);
}

function assertLimited(r: Response, limit: number): void {
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json().code, 'BRK_ERR_RATE_LIMITED');
  assert.equal(r.headers['ratelimit-limit'], String(limit));
  assert.equal(r.headers['ratelimit-remaining'], '0');
  assert.ok(Number(r.headers['retry-after']) >= 1, `retry-after ${r.headers['retry-after']}`);
}

/** Sends requests (alternating over `brokers`) until one is refused with 429; returns how many were admitted before it. */
async function admittedUntilLimited(brokers: RunningBroker[], pki: TestPki, id: Identity, most: number): Promise<number> {
  for (let i = 0; i < most; i++) {
    const r = await get(brokers[i % brokers.length] as RunningBroker, pki, id);
    if (r.status === 429) return i;
    assert.equal(r.status, 200, r.text);
  }
  assert.fail(`no request refused in ${most}`);
}

test('RedisStore: two stores on one Redis share buckets atomically, all-or-nothing, keyed per identity and prefix', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const raw = { rateLimit: { store: redis.url } };
  const [a, b] = [await openStore(t, pki, raw), await openStore(t, pki, raw)];
  const spec = { rate: 1, perMs: 86_400_000, burst: 50 };
  const x: LimitCheck[] = [{ key: 'rl:id:x', spec }];

  // 200 takes at once, half through each connection: the script runs atomically, so exactly the burst.
  const verdicts = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).store.take(x)));
  const allowed = verdicts.filter((v) => v.allowed);
  assert.equal(allowed.length, 50);
  assert.deepEqual(allowed.map((v) => v.remaining).sort((p, q) => p - q), Array.from({ length: 50 }, (_, i) => i), 'every token handed out once');
  for (const v of verdicts.filter((v) => !v.allowed)) {
    assert.equal(v.limit, 50);
    assert.equal(v.remaining, 0);
    assert.ok(v.retryAfterMs > 0);
    assert.equal(v.degraded, undefined);
  }
  // another identity has its own bucket
  assert.equal((await b.store.take([{ key: 'rl:id:y', spec }])).remaining, 49);

  // several buckets: a refusal by one takes nothing from the others
  const wide = { rate: 1, perMs: 86_400_000, burst: 5 };
  const narrow = { rate: 1, perMs: 86_400_000, burst: 1 };
  const both: LimitCheck[] = [{ key: 'rl:id:z', spec: wide }, { key: 'rl:rt:r:z', spec: narrow }];
  assert.equal((await a.store.take(both)).allowed, true);
  const refused = await b.store.take(both);
  assert.equal(refused.allowed, false);
  assert.equal(refused.limit, 1, 'the binding bucket is the empty one');
  assert.equal((await a.store.take([{ key: 'rl:id:z', spec: wide }])).remaining, 3, 'the wide bucket lost only the first token');

  // a broker with another prefix on the same Redis has budgets of its own
  const other = await openStore(t, pki, { ...raw, redis: { keyPrefix: 'other:' } });
  assert.equal((await other.store.take(x)).remaining, 49);
  const inspect = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 0 });
  t.after(() => inspect.disconnect());
  await inspect.connect();
  const keys = (await inspect.keys('*')).sort();
  assert.deepEqual(keys, ['broker:rl:id:x', 'broker:rl:id:y', 'broker:rl:id:z', 'broker:rl:rt:r:z', 'other:rl:id:x']);
  assert.ok((await inspect.pttl('broker:rl:id:x')) > 0, 'buckets expire');
  assert.equal(a.logs.lines.length + b.logs.lines.length + other.logs.lines.length, 0, 'nothing logged while Redis is up');
});

test('RedisStore: in-flight counts, failure counts and bans are shared; a later store finds the bans in force', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const raw = { rateLimit: { store: redis.url } };
  const [a, b] = [await openStore(t, pki, raw), await openStore(t, pki, raw)];

  assert.equal(await a.store.acquire('cc:x', 2), true);
  assert.equal(await b.store.acquire('cc:x', 2), true);
  assert.equal(await a.store.acquire('cc:x', 2), false, 'the third in flight, through either store, is refused');
  assert.equal(await b.store.acquire('cc:x', 2), false);
  assert.equal(await b.store.acquire('cc:y', 2), true, 'another identity has its own count');
  a.store.release('cc:x'); // fire and forget: B sees it once Redis has run it
  let freed = false;
  for (const deadline = Date.now() + 5_000; !freed && Date.now() < deadline; ) freed = await b.store.acquire('cc:x', 2);
  assert.ok(freed, 'a slot released through A is free for B');

  assert.equal(await a.store.countFailure('handshake:192.0.2.1', 60_000), 1);
  assert.equal(await b.store.countFailure('handshake:192.0.2.1', 60_000), 2);
  assert.equal(await b.store.countFailure('handshake:192.0.2.2', 60_000), 1);

  const heard = new Promise<[string, number]>((resolve) => b.store.onBan((ip, until) => resolve([ip, until])));
  const before = Date.now();
  await a.store.ban('192.0.2.1', 60_000);
  const [ip, until] = await within(heard, 5_000, 'B hears the ban');
  assert.equal(ip, '192.0.2.1');
  assert.ok(until >= before + 60_000 && until <= Date.now() + 60_000, `until ${until}`);
  const later = await openStore(t, pki, raw);
  assert.deepEqual(await later.store.activeBans(), [['192.0.2.1', until]]);
  const elsewhere = await openStore(t, pki, { ...raw, redis: { keyPrefix: 'other:' } });
  assert.deepEqual(await elsewhere.store.activeBans(), [], 'bans are per prefix too');
});

test('two replicas, one identity: the combined 200s equal the burst, the rest are 429 with RateLimit headers; another identity is untouched', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const [a, b] = await replicas(t, pki, 2, { routes: route(up.url), rateLimit: { store: redis.url, rate: 1, ...DAY, burst: 10 } });
  const app = await pki.issue('app', ['app']);
  const other = await pki.issue('other', ['app']);

  const answers: Response[] = [];
  for (let i = 0; i < 30; i++) answers.push(await get(i % 2 ? (b as RunningBroker) : (a as RunningBroker), pki, app)); // A, B, A, B, ...
  const ok = answers.filter((r) => r.status === 200);
  assert.equal(ok.length, 10);
  assert.deepEqual(answers.map((r) => r.status), [...Array(10).fill(200), ...Array(20).fill(429)], 'the first ten (five on each replica), then none on either');
  assert.deepEqual(ok.map((r) => r.headers['ratelimit-remaining']), ['9', '8', '7', '6', '5', '4', '3', '2', '1', '0'], 'one count across both replicas');
  for (const r of answers.slice(10)) assertLimited(r, 10);
  assert.equal(up.seen.length, 10, 'refused requests reach nothing');

  assert.equal((await get(a as RunningBroker, pki, other)).status, 200);
  assert.equal((await get(b as RunningBroker, pki, other)).headers['ratelimit-remaining'], '8');
});

test('maxConcurrent counts in-flight requests across replicas', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const held: Array<import('node:http').ServerResponse> = [];
  let arrived: () => void = () => {};
  const first = new Promise<void>((resolve) => (arrived = resolve));
  const up = await startUpstream(t, (_req, res) => {
    if (held.length === 0) {
      held.push(res);
      return arrived();
    }
    res.end('ok');
  });
  t.after(() => held.forEach((res) => res.destroy()));
  const [a, b] = (await replicas(t, pki, 2, { routes: route(up.url), maxConcurrent: 1, rateLimit: { store: redis.url, rate: 1000, ...DAY, burst: 1000 } })) as [RunningBroker, RunningBroker];
  const app = await pki.issue('app', ['app']);
  const other = await pki.issue('other', ['app']);

  const slow = get(a, pki, app);
  await within(first, 10_000, 'the first request reaches the upstream'); // holding the identity's one slot
  const refused = await get(b, pki, app);
  assert.equal(refused.status, 429, refused.text);
  assert.equal(refused.json().code, 'BRK_ERR_CONCURRENCY_LIMITED');
  assert.equal(refused.headers['retry-after'], '1');
  assert.equal((await get(b, pki, other)).status, 200, 'another identity has its own slot');

  (held[0] as import('node:http').ServerResponse).end('done');
  assert.equal((await slow).status, 200);
  // The slot is released when A's response closes, then by a script on Redis: poll B until it is free.
  let status = 0;
  for (let i = 0; i < 200 && status !== 200; i++) status = (await get(b, pki, app)).status;
  assert.equal(status, 200, 'the slot freed on A is free on B');
});

test('a ban decided by replica A is enforced at accept by replica B and by a replica started later', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const raw = { routes: route(up.url), rateLimit: { store: redis.url, rate: 1000, ...DAY, burst: 1000 }, bans: { enabled: true, failedHandshakes: 2, window: '1m', duration: '10m' } };
  const [a, b] = (await replicas(t, pki, 2, raw)) as [RunningBroker, RunningBroker];
  const app = await pki.issue('app', ['app']);
  assert.equal((await get(b, pki, app)).status, 200, 'B admits the address before the ban');
  const heardOnB = new Promise<string>((resolve) => b.broker.store.onBan((ip) => resolve(ip)));

  for (let i = 0; i < 2; i++) await assert.rejects(request(a.port, { ca: pki.ca, path: '/r/x' }), 'no client certificate: refused in the handshake');
  const ban = await a.logs.waitFor((l) => l.event === 'ban');
  assert.equal(ban.remoteIp, '127.0.0.1');
  assert.equal(ban.reason, 'failed handshakes');
  assert.equal(await within(heardOnB, 5_000, 'B hears the ban'), '127.0.0.1');

  const refusedOnB = await request(b.port, { id: app, ca: pki.ca, path: '/r/x' }).then(
    (r) => assert.fail(`B answered ${r.status} to a banned address`),
    (e: NodeJS.ErrnoException) => e,
  );
  assert.ok(refusedOnB instanceof Error);
  const line = await b.logs.waitFor((l) => l.event === 'accept' && l.outcome === 'refused');
  assert.equal(line.reason, 'banned', 'cut off at accept, before TLS');
  assert.equal(b.broker.guard.refused.banned, 1);
  assert.equal(b.logs.of('auth').filter((l) => l.event === 'handshake').length, 1, 'B did no handshake for it');

  const c = await startBroker(t, pki, raw);
  await assert.rejects(request(c.port, { id: app, ca: pki.ca, path: '/r/x' }));
  assert.equal((await c.logs.waitFor((l) => l.event === 'accept' && l.outcome === 'refused')).reason, 'banned');
  assert.equal(c.logs.of('auth').filter((l) => l.event === 'handshake').length, 0);
  assert.equal(up.seen.length, 1);
});

test('brokers with different redis.keyPrefix on one Redis keep their budgets apart', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const rateLimit = { store: redis.url, rate: 1, ...DAY, burst: 3 };
  const a = await startBroker(t, pki, { routes: route(up.url), rateLimit, redis: { keyPrefix: 'blue:' } });
  const b = await startBroker(t, pki, { routes: route(up.url), rateLimit, redis: { keyPrefix: 'green:' } });
  const a2 = await startBroker(t, pki, { routes: route(up.url), rateLimit, redis: { keyPrefix: 'blue:' } });
  const app = await pki.issue('app', ['app']);
  assert.equal(await admittedUntilLimited([a, a2], pki, app, 10), 3, 'the two blue brokers share one bucket');
  assert.equal(await admittedUntilLimited([b], pki, app, 10), 3, 'green has a full bucket of its own');
});

/** Kills Redis under running replicas, sends `n` requests, restarts it and waits for each replica's "up" line. */
async function outage(redis: RunningRedis, brokers: RunningBroker[], pki: TestPki, id: Identity, n: number): Promise<Response[]> {
  await redis.stop();
  const answers: Response[] = [];
  for (let i = 0; i < n; i++) answers.push(await get(brokers[i % brokers.length] as RunningBroker, pki, id));
  await redis.start();
  for (const b of brokers) await b.logs.waitFor((l) => l.event === 'redis' && l.outcome === 'up', 20_000);
  return answers;
}

test('Redis killed mid-run, failOpen true: requests are admitted, one error line per replica per outage, limits back once Redis is', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const brokers = await replicas(t, pki, 2, { routes: route(up.url), rateLimit: { store: redis.url, rate: 1, ...DAY, burst: 3, failOpen: true } });
  const app = await pki.issue('app', ['app']);
  assert.equal(await admittedUntilLimited(brokers, pki, app, 10), 3);

  const during = await outage(redis, brokers, pki, app, 20);
  assert.deepEqual(during.map((r) => r.status), Array(20).fill(200), 'admitted while the store is down');
  for (const r of during) assert.equal(r.headers['ratelimit-limit'], undefined, 'no RateLimit headers without a count');
  for (const b of brokers) {
    const down = redisLines(b, 'down');
    assert.equal(down.length, 1, `one "down" line for 10 requests, got ${JSON.stringify(down)}`);
    assert.equal(down[0]?.level, 50);
    assert.equal(down[0]?.failOpen, true);
    assert.equal(redisLines(b, 'up').length, 1);
  }

  // Redis came back empty: a fresh bucket, counted across both replicas again.
  assert.equal(await admittedUntilLimited(brokers, pki, app, 20), 3);
  assertLimited(await get(brokers[1] as RunningBroker, pki, app), 3);
  for (const b of brokers) assert.equal(redisLines(b, 'down').length, 1, 'nothing more logged after recovery');
});

test('Redis killed mid-run, failOpen false: 503 BRK_ERR_RATELIMIT_UNAVAILABLE while down, 200 after recovery', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const [b] = await replicas(t, pki, 1, { routes: route(up.url), rateLimit: { store: redis.url, rate: 1, ...DAY, burst: 5, failOpen: false } });
  const broker = b as RunningBroker;
  const app = await pki.issue('app', ['app']);
  assert.equal((await get(broker, pki, app)).status, 200);
  const seen = up.seen.length;

  const during = await outage(redis, [broker], pki, app, 10);
  for (const r of during) {
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json().code, 'BRK_ERR_RATELIMIT_UNAVAILABLE');
    assert.equal(r.headers['ratelimit-limit'], undefined);
  }
  assert.equal(up.seen.length, seen, 'nothing forwarded while refusing');
  const down = redisLines(broker, 'down');
  assert.equal(down.length, 1, JSON.stringify(down));
  assert.equal(down[0]?.failOpen, false);
  const unavailable = () => broker.logs.of('access').filter((l) => l.code === 'BRK_ERR_RATELIMIT_UNAVAILABLE').length;
  await broker.logs.waitFor(() => unavailable() === 10); // access lines are written once each response has gone

  const after = await get(broker, pki, app);
  assert.equal(after.status, 200, after.text);
  assert.equal(after.headers['ratelimit-remaining'], '4', 'counted again, in the new (empty) Redis');
});

test('a replica started while Redis is down serves by its policy, then counts and hears bans once Redis is up', { skip }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  await redis.stop();
  const rateLimit = { store: redis.url, rate: 1, ...DAY, burst: 2, failOpen: true };
  const b = await startBroker(t, pki, { routes: route(up.url), rateLimit }); // waits for Redis at most connectTimeout, then starts anyway
  const app = await pki.issue('app', ['app']);
  const r = await get(b, pki, app);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['ratelimit-limit'], undefined);
  assert.equal(redisLines(b, 'down').length, 1);

  await redis.start();
  await b.logs.waitFor((l) => l.event === 'redis' && l.outcome === 'up', 20_000);
  assert.equal(await admittedUntilLimited([b], pki, app, 10), 2);
  // its ban channel was subscribed once Redis came: a ban from another replica reaches it
  const heard = new Promise<string>((resolve) => b.broker.store.onBan((ip) => resolve(ip)));
  const other = await openStore(t, pki, { rateLimit });
  await other.store.ban('192.0.2.9', 60_000);
  assert.equal(await within(heard, 10_000, 'the ban reaches the replica started during the outage'), '192.0.2.9');
  assert.equal(b.broker.guard.isBanned('192.0.2.9'), true);
  assert.equal(redisLines(b, 'down').length, 1);
});
