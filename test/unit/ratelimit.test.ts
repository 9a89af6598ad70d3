/**
 * The pure side of rate limiting and filtering: token-bucket arithmetic on an injected clock, which
 * limits a request is planned against, all-or-nothing over several buckets, the memory store's
 * bounds (idle buckets, failure windows and bans are forgotten), IP lists and CIDR validation.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { take, idleTtlMs, type BucketSpec, type BucketState } from '../../src/ratelimit/bucket.ts';
import { compileLimits, stricter, type LimitCheck } from '../../src/ratelimit/policy.ts';
import { combine, takeAll } from '../../src/ratelimit/store.ts';
import { MemoryStore } from '../../src/ratelimit/memory-store.ts';
import { compileIpList, ipAdmitted, plainIp } from '../../src/filter/ip.ts';
import { cidrProblem } from '../../src/config/cidr.ts';
import { validateConfig, type BrokerConfig } from '../../src/config/index.ts';

/** One token a second, three at most: round numbers for the arithmetic. */
const SEC3: BucketSpec = { rate: 1, perMs: 1_000, burst: 3 };

test('take: a table of requests on one bucket, on an injected clock', () => {
  // [now, allowed, remaining, resetMs, retryAfterMs]
  const steps: Array<[number, boolean, number, number, number]> = [
    [0, true, 2, 1_000, 0], // a new bucket starts full
    [0, true, 1, 2_000, 0],
    [0, true, 0, 3_000, 0], // burst spent
    [0, false, 0, 3_000, 1_000], // refused: one token in 1 s, full in 3 s
    [500, false, 0, 2_500, 500], // half a token is not a token
    [1_000, true, 0, 3_000, 0], // refilled one
    [1_000, false, 0, 3_000, 1_000],
    [2_500, true, 0, 2_500, 0], // 1.5 tokens: one taken, half left, remaining counts whole tokens
    [3_000, true, 0, 3_000, 0], // the half left + 500 ms of refill = exactly one token
    [3_000, false, 0, 3_000, 1_000],
  ];
  let state: BucketState | undefined;
  for (const [now, allowed, remaining, resetMs, retryAfterMs] of steps) {
    const r = take(SEC3, state, now);
    assert.deepEqual({ allowed: r.allowed, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs }, { allowed, remaining, resetMs, retryAfterMs }, `at ${now} ms`);
    if (r.allowed) state = r.state;
  }
});

test('take: refill never passes the burst, however long the bucket sat idle', () => {
  const spent = { tokens: 0, at: 0 };
  for (const now of [3_000, 10_000, 86_400_000]) {
    const r = take(SEC3, spent, now);
    assert.equal(r.allowed, true);
    assert.equal(r.remaining, 2, `at ${now} ms`);
    assert.equal(r.state.tokens, 2);
  }
  // A clock that goes backwards adds nothing (and takes nothing away).
  assert.deepEqual(take(SEC3, { tokens: 1.5, at: 5_000 }, 4_000).state, { tokens: 0.5, at: 4_000 });
});

test('take: the header numbers for the broker\'s usual shape (5 per minute, burst 5)', () => {
  const spec: BucketSpec = { rate: 5, perMs: 60_000, burst: 5 };
  let state: BucketState | undefined;
  const seen: Array<[boolean, number, number, number]> = [];
  for (let i = 0; i < 6; i++) {
    const r = take(spec, state, 0);
    seen.push([r.allowed, r.remaining, r.resetMs, r.retryAfterMs]);
    if (r.allowed) state = r.state;
  }
  assert.deepEqual(seen, [
    [true, 4, 12_000, 0],
    [true, 3, 24_000, 0],
    [true, 2, 36_000, 0],
    [true, 1, 48_000, 0],
    [true, 0, 60_000, 0],
    [false, 0, 60_000, 12_000],
  ]);
  assert.equal(idleTtlMs(spec), 60_000);
  assert.equal(idleTtlMs(SEC3), 3_000);
});

test('stricter: the lower sustained rate wins whatever the units; on a tie, the smaller burst', () => {
  const perMinute10 = { rate: 10, perMs: 60_000, burst: 50 };
  const perSecond1 = { rate: 1, perMs: 1_000, burst: 1 }; // 60 a minute
  assert.equal(stricter(perMinute10, perSecond1), perMinute10);
  assert.equal(stricter(perSecond1, perMinute10), perMinute10);
  const sameRateSmallBurst = { rate: 20, perMs: 120_000, burst: 5 };
  assert.equal(stricter(perMinute10, sameRateSmallBurst), sameRateSmallBurst);
  assert.equal(stricter(sameRateSmallBurst, perMinute10), sameRateSmallBurst);
});

function config(raw: Record<string, unknown>): BrokerConfig {
  const { config: c, problems } = validateConfig({ tls: { server: 'localhost' }, ...raw }, '/config-dir');
  if (!c) throw new Error(problems.join('\n'));
  return c;
}

const ROUTES = [
  { name: 'orders', path: '/orders', upstream: 'http://127.0.0.1:9', roles: ['partner', 'user'], rateLimit: { rate: 2, per: '1m' } },
  { name: 'files', path: '/files', upstream: 'http://127.0.0.1:9', roles: ['partner', 'user'] },
];

test('plan: the strictest rate among the roles that set one, else the default; a route limit adds its own bucket', () => {
  const policy = compileLimits(
    config({
      rateLimit: { rate: 600, per: '1m', burst: 60 },
      roles: { partner: { rateLimit: { rate: 10, per: '1m', burst: 10 } }, bulk: { rateLimit: { rate: 100, per: '1s' } }, ops: { maxConcurrent: 3 } },
      routes: ROUTES,
    }),
  );
  const cases: Array<[label: string, roles: string[], route: string, checks: LimitCheck[]]> = [
    ['no role sets a limit: the default', ['user', 'ops'], 'files', [{ key: 'rl:id:acme', spec: { rate: 600, perMs: 60_000, burst: 60 } }]],
    ['one role sets one', ['user', 'partner'], 'files', [{ key: 'rl:id:acme', spec: { rate: 10, perMs: 60_000, burst: 10 } }]],
    ['two roles: the stricter, even listed last', ['bulk', 'partner'], 'files', [{ key: 'rl:id:acme', spec: { rate: 10, perMs: 60_000, burst: 10 } }]],
    ['a role looser than the default still replaces it', ['bulk'], 'files', [{ key: 'rl:id:acme', spec: { rate: 100, perMs: 1_000, burst: 100 } }]],
    [
      'a route with a limit: the identity\'s bucket and a (route, identity) bucket; burst defaults to rate',
      ['partner'],
      'orders',
      [
        { key: 'rl:id:acme', spec: { rate: 10, perMs: 60_000, burst: 10 } },
        { key: 'rl:rt:orders:acme', spec: { rate: 2, perMs: 60_000, burst: 2 } },
      ],
    ],
  ];
  for (const [label, roles, route, checks] of cases) assert.deepEqual(policy.plan('acme', roles, route).checks, checks, label);
});

test('plan: maxConcurrent is the smallest among the roles that set one, else the default; keyed by identity name', () => {
  const policy = compileLimits(config({ maxConcurrent: 100, roles: { slow: { maxConcurrent: 2 }, calm: { maxConcurrent: 5 } }, routes: ROUTES }));
  assert.equal(policy.plan('a', ['user'], 'files').maxConcurrent, 100);
  assert.equal(policy.plan('a', ['calm'], 'files').maxConcurrent, 5);
  assert.equal(policy.plan('a', ['calm', 'slow'], 'files').maxConcurrent, 2);
  assert.equal(policy.plan('a', ['slow', 'calm'], 'files').maxConcurrent, 2);
  assert.equal(policy.plan('a', ['slow'], 'files').concurrencyKey, 'cc:a');
  assert.equal(policy.plan('b', ['slow'], 'orders').concurrencyKey, 'cc:b');
});

test('plan: repeated plans are equal and share the cached specs; names only change the keys', () => {
  const policy = compileLimits(config({ roles: { partner: { rateLimit: { rate: 10, per: '1m' } } }, routes: ROUTES }));
  const a = policy.plan('acme', ['partner'], 'orders');
  const b = policy.plan('acme', ['partner'], 'orders');
  assert.deepEqual(a, b);
  assert.equal(a.checks[0]?.spec, b.checks[0]?.spec);
  assert.equal(a.checks[1]?.spec, b.checks[1]?.spec);
  const other = policy.plan('globex', ['partner'], 'orders');
  assert.deepEqual(other.checks.map((c) => c.key), ['rl:id:globex', 'rl:rt:orders:globex']);
  assert.equal(other.checks[0]?.spec, a.checks[0]?.spec);
});

const ID: LimitCheck = { key: 'rl:id:acme', spec: { rate: 5, perMs: 60_000, burst: 5 } };
const ROUTE: LimitCheck = { key: 'rl:rt:orders:acme', spec: { rate: 1, perMs: 60_000, burst: 1 } };

test('combine: allowed only when every bucket allows; the binding bucket gives the headers', () => {
  const full = take(ID.spec, undefined, 0);
  const last = take(ROUTE.spec, undefined, 0);
  assert.deepEqual(combine([ID, ROUTE], [full, last]), { allowed: true, limit: 1, remaining: 0, resetMs: 60_000, retryAfterMs: 0 });
  const refused = take(ROUTE.spec, last.state, 1_000);
  assert.deepEqual(combine([ID, ROUTE], [full, refused]), { allowed: false, limit: 1, remaining: 0, resetMs: 59_000, retryAfterMs: 59_000 });
  // Two refused buckets: the one that frees up last binds.
  const idEmpty = take(ID.spec, { tokens: 0.5, at: 0 }, 0);
  assert.equal(idEmpty.retryAfterMs, 6_000);
  assert.deepEqual(combine([ID, ROUTE], [idEmpty, refused]), { allowed: false, limit: 1, remaining: 0, resetMs: 59_000, retryAfterMs: 59_000 });
  assert.deepEqual(combine([ROUTE, ID], [refused, idEmpty]), { allowed: false, limit: 1, remaining: 0, resetMs: 59_000, retryAfterMs: 59_000 });
});

test('takeAll: computes every bucket against the lookup, and the verdict over them', () => {
  const states = new Map<string, BucketState>([[ROUTE.key, { tokens: 0, at: 0 }]]);
  const { verdict, results } = takeAll([ID, ROUTE], (k) => states.get(k), 0);
  assert.equal(verdict.allowed, false);
  assert.deepEqual(results.map((r) => r.allowed), [true, false]);
});

function memoryStore(t: TestContext, clock: { now: number }): MemoryStore {
  const store = new MemoryStore({ now: () => clock.now, sweepMs: 3_600_000 });
  t.after(() => store.close());
  return store;
}

test('MemoryStore.take is all-or-nothing: a refused second bucket consumes nothing from the first', (t) => {
  const clock = { now: 0 };
  const store = memoryStore(t, clock);
  assert.deepEqual(store.take([ID, ROUTE]), { allowed: true, limit: 1, remaining: 0, resetMs: 60_000, retryAfterMs: 0 });
  for (let i = 0; i < 3; i++) assert.equal(store.take([ID, ROUTE]).allowed, false);
  // The identity's bucket paid for the one allowed request only: 5 - 1 = 4 tokens, 3 after this take.
  assert.equal(store.take([ID]).remaining, 3);
});

test('MemoryStore stays bounded: 200,000 identities, then only the active ones survive the sweep', (t) => {
  const clock = { now: 0 };
  const store = memoryStore(t, clock);
  const spec = ID.spec;
  const ttl = idleTtlMs(spec);
  const N = 200_000;
  for (let i = 0; i < N; i++) assert.ok(store.take([{ key: `rl:id:user-${i}`, spec }]).allowed);
  assert.equal(store.size.buckets, N);

  // Halfway through the idle TTL ten identities come back; the rest stay away.
  clock.now = ttl / 2;
  for (let i = 0; i < 10; i++) assert.equal(store.take([{ key: `rl:id:user-${i}`, spec }]).remaining, 4, 'refilled to full, then one taken');
  store.sweep();
  assert.equal(store.size.buckets, N, 'nothing is idle yet');

  clock.now = ttl + 1;
  store.sweep();
  assert.equal(store.size.buckets, 10, 'the active ones survive');
  // Forgetting an idle bucket loses nothing: it would have been full again anyway.
  assert.equal(store.take([{ key: 'rl:id:user-500', spec }]).remaining, 4);

  clock.now = 2 * ttl + 1; // past the TTL of every bucket touched so far
  store.sweep();
  assert.equal(store.size.buckets, 0);
});

test('MemoryStore: a failure window resets when it ends, and sweeping forgets it', (t) => {
  const clock = { now: 1_000 };
  const store = memoryStore(t, clock);
  assert.deepEqual([1, 2, 3].map(() => store.countFailure('handshake:192.0.2.1', 60_000)), [1, 2, 3]);
  assert.equal(store.countFailure('handshake:192.0.2.2', 60_000), 1, 'per address');
  clock.now = 60_999;
  assert.equal(store.countFailure('handshake:192.0.2.1', 60_000), 4, 'still in the window');
  clock.now = 61_000;
  store.sweep();
  assert.equal(store.size.failures, 0);
  assert.equal(store.countFailure('handshake:192.0.2.1', 60_000), 1, 'a new window');
});

test('MemoryStore: a ban is announced, in force until it ends, then gone', (t) => {
  const clock = { now: 10_000 };
  const store = memoryStore(t, clock);
  const heard: Array<[string, number]> = [];
  store.onBan((ip, until) => heard.push([ip, until]));
  store.ban('192.0.2.1', 5_000);
  assert.deepEqual(heard, [['192.0.2.1', 15_000]]);
  clock.now = 14_999;
  store.sweep();
  assert.deepEqual(store.activeBans(), [['192.0.2.1', 15_000]]);
  clock.now = 15_000;
  assert.deepEqual(store.activeBans(), []);
  store.sweep();
  assert.equal(store.size.bans, 0);
});

test('MemoryStore: in-flight slots up to max, released one by one, and forgotten at zero', (t) => {
  const store = memoryStore(t, { now: 0 });
  assert.deepEqual([1, 2, 3].map(() => store.acquire('cc:acme', 2)), [true, true, false]);
  assert.equal(store.acquire('cc:globex', 2), true, 'per identity');
  store.release('cc:acme');
  assert.equal(store.acquire('cc:acme', 2), true);
  store.release('cc:acme');
  store.release('cc:acme');
  store.release('cc:globex');
  assert.equal(store.size.inflight, 0);
  store.release('cc:acme'); // an extra release does not go negative
  assert.deepEqual([1, 2, 3].map(() => store.acquire('cc:acme', 2)), [true, true, false]);
});

test('IP lists: IPv4 and IPv6 addresses and blocks; IPv4-mapped addresses count as IPv4', () => {
  const list = compileIpList(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1']);
  const cases: Array<[ip: string, listed: boolean]> = [
    ['10.0.0.1', true],
    ['10.255.255.255', true],
    ['11.0.0.1', false],
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['::ffff:10.1.2.3', true],
    ['::ffff:192.0.2.7', true],
    ['::ffff:11.0.0.1', false],
    ['2001:db8::1', true],
    ['2001:db8:ffff::1', true],
    ['2001:db9::1', false],
    ['::1', true],
    ['::2', false],
    ['not-an-ip', false],
    ['', false],
  ];
  for (const [ip, listed] of cases) assert.equal(list.has(ip), listed, ip);
  assert.equal(plainIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(plainIp('::ffff:abcd'), '::ffff:abcd');
  assert.equal(plainIp('::1'), '::1');
});

test('ipAdmitted: deny wins over allow; an allow list admits only what it names; no lists admit all', () => {
  const none = compileIpList([]);
  const allow = compileIpList(['10.0.0.0/8']);
  const deny = compileIpList(['10.1.0.0/16']);
  const cases: Array<[ip: string, allow: typeof none, deny: typeof none, admitted: boolean]> = [
    ['127.0.0.1', none, none, true],
    ['10.2.0.1', allow, none, true],
    ['127.0.0.1', allow, none, false],
    ['10.1.0.1', allow, deny, false],
    ['10.2.0.1', allow, deny, true],
    ['10.1.0.1', none, deny, false],
    ['::ffff:10.1.0.1', none, deny, false],
    ['::1', allow, none, false],
  ];
  for (const [ip, a, d, admitted] of cases) assert.equal(ipAdmitted(ip, a, d), admitted, `${ip} allow=${a.size} deny=${d.size}`);
});

test('cidrProblem: addresses and blocks pass; anything else says what is wrong', () => {
  for (const ok of ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '192.0.2.0/32', '::1', '2001:db8::/32', '::/0', '::ffff:10.0.0.0/104', 'fe80::/128']) assert.equal(cidrProblem(ok), undefined, ok);
  const bad: Array<[string, RegExp]> = [
    ['localhost', /is not an IP address or CIDR block/],
    ['10.0.0.0/8/8', /is not an IP address or CIDR block/],
    ['10.0.0', /is not an IP address or CIDR block/],
    ['', /is not an IP address or CIDR block/],
    ['10.0.0.0/33', /prefix length outside 0-32/],
    ['2001:db8::/129', /prefix length outside 0-128/],
    ['10.0.0.0/', /prefix length outside 0-32/],
    ['10.0.0.0/x', /prefix length outside 0-32/],
    ['10.0.0.0/-1', /prefix length outside 0-32/],
    ['10.0.0.0/1e1', /prefix length outside 0-32/],
  ];
  for (const [entry, problem] of bad) assert.match(cidrProblem(entry) ?? '', problem, entry);
});

test('validateConfig reports every bad address list entry with its path', () => {
  const { config: c, problems } = validateConfig(
    { tls: { server: 'localhost' }, filters: { allowIps: ['10.0.0.0/8', 'ten'], denyIps: ['10.0.0.0/40'] }, roles: { partner: { allowIps: ['::1/200'], denyIps: ['127.0.0.1', 'x'] } } },
    '/config-dir',
  );
  assert.equal(c, undefined);
  assert.deepEqual(problems, [
    'filters.allowIps[1]: "ten" is not an IP address or CIDR block (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)',
    'filters.denyIps[0]: "10.0.0.0/40" has a prefix length outside 0-32 (the number after "/" counts the fixed leading bits of the IPv4 address)',
    'roles.partner.allowIps[0]: "::1/200" has a prefix length outside 0-128 (the number after "/" counts the fixed leading bits of the IPv6 address)',
    'roles.partner.denyIps[1]: "x" is not an IP address or CIDR block (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)',
  ]);
});

test('MemoryStore.unban lifts a ban, tells the listeners (a ban until 0) and forgets its failure counts', async () => {
  const store = new MemoryStore();
  const heard: Array<[string, number]> = [];
  store.onBan((key, until) => heard.push([key, until]));
  store.countFailure('request:192.0.2.1', 60_000);
  store.countFailure('request:192.0.2.1', 60_000);
  store.ban('192.0.2.1', 60_000);
  store.ban('192.0.2.2', 60_000);
  store.unban('192.0.2.1');
  assert.deepEqual(store.activeBans().map(([k]) => k), ['192.0.2.2']);
  assert.deepEqual(heard.at(-1), ['192.0.2.1', 0]);
  assert.equal(store.countFailure('request:192.0.2.1', 60_000), 1, 'counting starts again');
  await store.close();
});
