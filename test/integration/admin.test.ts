/**
 * The admin listener: /healthz, /readyz (certificates, every route's upstream, the shared store)
 * and /metrics, on their own plain-HTTP address and never on the public TLS port; a bearer token
 * when admin.tokenFile is set; and a config that would expose it beyond loopback without one is
 * refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki, request, startBroker, startUpstream, type RunningBroker } from '../helpers/broker.ts';
import { adminPort, httpGet } from '../helpers/admin.ts';
import { tempDir } from '../helpers/cli.ts';
import { startRedis, redisMissing } from '../helpers/redis.ts';
import { eventually } from '../helpers/within.ts';
import { validateConfig } from '../../src/config/index.ts';

interface Readiness {
  status: number;
  ready: boolean;
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
  notReady: string[];
}

async function readyz(b: RunningBroker): Promise<Readiness> {
  const res = await httpGet(adminPort(b), '/readyz');
  const body = res.json() as unknown as Omit<Readiness, 'status'>;
  return { status: res.status, ...body };
}

/** Polls /readyz until its status is `status`; returns that answer. */
async function readyzUntil(b: RunningBroker, status: number, what: string): Promise<Readiness> {
  let last: Readiness | undefined;
  await eventually(async () => (last = await readyz(b)).status === status, `${what} (last: ${JSON.stringify(last)})`, 15_000, 50);
  return last as Readiness;
}

test('/healthz is 200; /readyz is 200 with every check ok, 503 naming the route whose upstream is down, 200 again once it is back', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const other = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'other', path: '/other', upstream: other.url, roles: ['user'] },
    ],
  });
  const port = adminPort(b);
  const health = await httpGet(port, '/healthz');
  assert.equal(health.status, 200);
  assert.deepEqual(health.json(), { status: 'ok' });

  const ready = await readyz(b);
  assert.equal(ready.status, 200, JSON.stringify(ready));
  assert.equal(ready.ready, true);
  assert.deepEqual(ready.checks.map((c) => [c.name, c.ok]), [['config', true], ['server certificate', true], ['crl', true], ['upstream api', true], ['upstream other', true]]);
  assert.deepEqual(ready.notReady, []);

  up.server.closeAllConnections();
  await new Promise<void>((resolve) => up.server.close(() => resolve()));
  const down = await readyz(b);
  assert.equal(down.status, 503);
  assert.equal(down.ready, false);
  assert.deepEqual(down.notReady, ['upstream api']);
  assert.match(String(down.checks.find((c) => c.name === 'upstream api')?.detail), new RegExp(`127\\.0\\.0\\.1:${up.port} does not accept connections`));
  assert.equal((await httpGet(port, '/healthz')).status, 200, 'liveness does not depend on the upstreams');

  await new Promise<void>((resolve) => up.server.listen(up.port, '127.0.0.1', resolve));
  const back = await readyzUntil(b, 200, '/readyz 200 once the upstream is back');
  assert.deepEqual(back.notReady, []);
});

test('/readyz is 503 naming redis while the shared store is down, 200 again once it is back', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { rateLimit: { rate: 1_000_000, per: '1s', burst: 1_000_000, store: redis.url }, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const ready = await readyzUntil(b, 200, '/readyz 200 with Redis up');
  assert.deepEqual(ready.checks.find((c) => c.name === 'redis'), { name: 'redis', ok: true });

  await redis.stop();
  const down = await readyzUntil(b, 503, '/readyz 503 with Redis down');
  assert.deepEqual(down.notReady, ['redis']);
  assert.equal((await httpGet(adminPort(b), '/healthz')).status, 200);

  await redis.start();
  const back = await readyzUntil(b, 200, '/readyz 200 once Redis is back');
  assert.deepEqual(back.notReady, []);
});

test('the admin endpoints are not on the public TLS port, and the public routes are not on the admin port', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);
  const address = b.broker.admin?.server.address();
  assert.ok(address && typeof address !== 'string');
  assert.equal(address.address, '127.0.0.1', 'loopback by default');
  assert.notEqual(address.port, b.port);

  for (const path of ['/metrics', '/readyz', '/healthz']) {
    const res = await request(b.port, { id: alice, ca: pki.ca, path });
    assert.equal(res.status, 404, `${path} on the public port: ${res.text}`);
    assert.equal(res.json().code, 'BRK_ERR_HTTP_NOT_FOUND');
    assert.doesNotMatch(res.text, /# (HELP|TYPE)|broker_|"checks"/);
  }
  // and the control: the same paths on the admin port are the admin endpoints
  assert.match((await httpGet(address.port, '/metrics')).text, /^# TYPE broker_requests_total counter$/m);

  const onAdmin = await httpGet(address.port, '/api/x');
  assert.equal(onAdmin.status, 404);
  assert.equal(up.seen.length, 0, 'nothing reached the upstream through the admin port');
  assert.equal(b.logs.of('access').length, 3, 'the admin port leaves no access line');
});

test('with admin.tokenFile, /metrics and /readyz need the bearer token; /healthz stays open', async (t) => {
  const pki = await makePki(t);
  const token = 'adm1n-t0ken-for-tests';
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const b = await startBroker(t, pki, { admin: { host: '127.0.0.1', port: 0, tokenFile } });
  const port = adminPort(b);

  const cases: Array<[path: string, headers: Record<string, string>, status: number]> = [
    ['/metrics', {}, 401],
    ['/metrics', { authorization: `Bearer ${token}x` }, 401],
    ['/metrics', { authorization: `Bearer ${token.slice(0, -1)}` }, 401],
    ['/metrics', { authorization: token }, 401],
    ['/metrics', { authorization: `Basic ${Buffer.from(`admin:${token}`).toString('base64')}` }, 401],
    ['/readyz', {}, 401],
    ['/healthz', {}, 200],
    ['/readyz', { authorization: `Bearer ${token}` }, 200],
    ['/metrics', { authorization: `Bearer ${token}` }, 200],
  ];
  for (const [path, headers, status] of cases) {
    const res = await httpGet(port, path, headers);
    assert.equal(res.status, status, `${path} ${JSON.stringify(headers)}: ${res.text}`);
    if (status === 401) {
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.json().code, 'BRK_ERR_ADMIN_UNAUTHORIZED');
      assert.doesNotMatch(res.text, /broker_/);
    }
  }
  assert.match((await httpGet(port, '/metrics', { authorization: `Bearer ${token}` })).text, /^# TYPE broker_requests_total counter$/m);
  assert.ok(!JSON.stringify(b.logs.lines).includes(token), 'the token is not logged');
});

test('config: an admin listener beyond loopback without admin.tokenFile is refused', async (t) => {
  const pki = await makePki(t);
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, 'token\n', { mode: 0o600 });
  const check = (admin: Record<string, unknown>) => validateConfig({ pki: { dir: pki.dir }, tls: { server: 'localhost' }, admin }, pki.dir).problems;

  assert.deepEqual(check({ host: '0.0.0.0' }), ['admin.host: 0.0.0.0 is beyond loopback; set admin.tokenFile so the admin endpoints require a token']);
  assert.deepEqual(check({ host: '::' }), ['admin.host: :: is beyond loopback; set admin.tokenFile so the admin endpoints require a token']);
  assert.deepEqual(check({ host: '0.0.0.0', tokenFile }), []);
  assert.deepEqual(check({ host: '0.0.0.0', enabled: false }), []);
  assert.deepEqual(check({ host: '127.0.0.1' }), []);
  assert.deepEqual(check({}), [], 'the default is loopback');
});
