/**
 * Prometheus metrics on the admin listener, scraped before and after real traffic: the named
 * series move by exactly what the traffic did. The diagnostics channels feeding them are
 * process-global, so each test runs one broker and compares scrapes of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { makePki, request, startBroker, startUpstream, type RunningBroker, type TestPki, type Identity } from '../helpers/broker.ts';
import { scrape, type Scrape } from '../helpers/admin.ts';
import { eventually } from '../helpers/within.ts';
import { buildAdmin } from '../../src/admin/plugin.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

/** A request the broker must refuse in the handshake or at accept. */
async function refused(b: RunningBroker, pki: TestPki, o: { id?: Identity; localAddress?: string } = {}): Promise<void> {
  await request(b.port, { ...(o.id ? { id: o.id } : {}), ca: pki.ca, path: '/api/x', ...(o.localAddress ? { localAddress: o.localAddress } : {}) }).then(
    (res) => assert.fail(`expected a refused connection, got HTTP ${res.status}`),
    () => undefined,
  );
}

/** after − before, for one series (or the sum of the series matching `labels`). */
const delta = (before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);

test('requests, durations, handshakes and rejections move by exactly what the traffic did', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    filters: { connectionRate: { rate: 100_000, per: '1s', burst: 100_000 }, maxConnectionsPerIp: 10_000, denyIps: ['127.0.0.2'] },
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
      { name: 'scarce', path: '/scarce', upstream: up.url, roles: ['user'], rateLimit: { rate: 1, per: '1h', burst: 1 } },
    ],
  });
  // The granting role is the identity's first role the route allows: "user", not "ops".
  const alice = await pki.issue('alice', ['ops', 'user']);
  const before = await scrape(b);

  const statuses: number[] = [];
  for (const path of ['/api/a', '/api/b', '/admin/x', '/scarce/1', '/scarce/2']) statuses.push((await request(b.port, { id: alice, ca: pki.ca, path })).status);
  assert.deepEqual(statuses, [200, 200, 403, 200, 429]);
  await refused(b, pki);
  await refused(b, pki, { id: alice, localAddress: '127.0.0.2' });
  await eventually(() => b.logs.of('access').length === 5, 'five access lines');
  await b.logs.waitFor((l) => l.log === 'auth' && l.reason === 'no certificate');
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'accept');
  const after = await scrape(b);

  const requests = (route: string, role: string, status: string) => delta(before, after, 'broker_requests_total', { route, role, status });
  assert.equal(requests('api', 'user', '200'), 2);
  assert.equal(requests('admin', '', '403'), 1, 'a refusal before any role granted access counts with role ""');
  assert.equal(requests('scarce', 'user', '200'), 1);
  assert.equal(requests('scarce', 'user', '429'), 1);
  assert.equal(delta(before, after, 'broker_requests_total'), 5, 'no other request counted (the scrapes are not requests of the broker)');

  assert.equal(delta(before, after, 'broker_request_duration_seconds_count', { route: 'api' }), 2);
  assert.equal(delta(before, after, 'broker_request_duration_seconds_count', { route: 'admin' }), 1);
  assert.equal(delta(before, after, 'broker_request_duration_seconds_count'), 5);
  assert.ok(delta(before, after, 'broker_request_duration_seconds_sum') > 0);
  assert.equal(delta(before, after, 'broker_upstream_duration_seconds_count', { route: 'api' }), 2);
  assert.equal(delta(before, after, 'broker_upstream_duration_seconds_count', { route: 'admin' }), 0, 'a refused request never reached the upstream');
  assert.equal(delta(before, after, 'broker_upstream_duration_seconds_count'), 3);
  assert.equal(delta(before, after, 'broker_request_duration_seconds_bucket', { route: 'api', le: '+Inf' }), 2);

  assert.equal(delta(before, after, 'broker_handshakes_total', { outcome: 'refused', reason: 'no certificate' }), 1);
  assert.equal(delta(before, after, 'broker_handshakes_total', { outcome: 'ok', reason: '' }), 5);
  assert.equal(delta(before, after, 'broker_handshakes_total'), 6, 'the connection refused at accept never got to a handshake');

  assert.equal(delta(before, after, 'broker_rejections_total', { kind: 'rate_limit' }), 1);
  assert.equal(delta(before, after, 'broker_rejections_total', { kind: 'accept:ip not allowed' }), 1);
  assert.equal(delta(before, after, 'broker_rejections_total'), 2, 'an ACL denial is not a limit or filter rejection');
});

test('broker_open_connections goes up while a keep-alive connection is open and back down after', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);
  const open = async () => (await scrape(b)).value('broker_open_connections');
  assert.equal(await open(), 0);

  const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port: b.port, ca: pki.ca, cert: alice.cert, key: alice.key });
  t.after(() => void socket.destroy());
  await once(socket, 'secureConnect');
  socket.write('GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await once(socket, 'data');
  assert.equal(await open(), 1, 'one connection open, after its first request');

  const closed = once(socket, 'close');
  socket.destroy();
  await closed;
  await eventually(async () => (await open()) === 0, 'broker_open_connections back to 0');
});

test('broker_bans_active and broker_bans_total after a ban', async (t) => {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, { bans: { enabled: true, failedHandshakes: 2, window: '1m', duration: '10m' } });
  const before = await scrape(b);
  assert.equal(before.value('broker_bans_active'), 0);
  await refused(b, pki);
  await refused(b, pki);
  await b.logs.waitFor((l) => l.event === 'ban');
  const after = await scrape(b);
  assert.equal(after.value('broker_bans_active'), 1);
  assert.equal(delta(before, after, 'broker_bans_total', { reason: 'failed handshakes' }), 1);
  await refused(b, pki);
  await b.logs.waitFor((l) => l.event === 'accept' && l.reason === 'banned');
  assert.equal(delta(before, await scrape(b), 'broker_rejections_total', { kind: 'accept:banned' }), 1);
});

test('broker_certificate_expiry_timestamp_seconds: notAfter of the server certificate, both CA certificates, the CRL (nextUpdate) and every valid issued client', async (t) => {
  const pki = await makePki(t);
  await pki.issue('alice', ['user']);
  await pki.issue('bob', ['user'], { ttlMs: 2 * 3_600_000 });
  const gone = await pki.issue('gone', ['user']);
  await pki.revoke(gone.serial);
  const b = await startBroker(t, pki, {});
  const s = await scrape(b);
  const expiry = (labels: Record<string, string>) => s.find('broker_certificate_expiry_timestamp_seconds', labels);
  const DAY = 86_400;
  // A timestamp, not a countdown: seconds left are the value minus now.
  const now = Math.floor(Date.now() / 1000);
  const left = (v: number) => v - now;

  const [server] = expiry({ kind: 'server' });
  assert.ok(server);
  assert.equal(server.labels.name, 'localhost');
  assert.equal(server.value, Math.floor(b.broker.material.server.notAfter.getTime() / 1000));
  assert.ok(left(server.value) > DAY - 600 && left(server.value) <= DAY, `server ${server.value}`);
  const cas = expiry({ kind: 'ca' });
  assert.equal(cas.length, 2, 'root and intermediate');
  for (const ca of cas) assert.ok(left(ca.value) > 30 * DAY, `${ca.labels.name} ${ca.value}`);
  assert.deepEqual(cas.map((c) => /CN=([^,]+)/.exec(c.labels.name ?? '')?.[1]).sort(), ['Test CA Issuing CA', 'Test CA Root']);
  const [crl] = expiry({ kind: 'crl' });
  assert.ok(crl);
  assert.equal(crl.labels.name, 'crl');
  assert.ok(left(crl.value) > 0);

  const clients = Object.fromEntries(expiry({ kind: 'client' }).map((c) => [c.labels.name, left(c.value)]));
  assert.deepEqual(Object.keys(clients).sort(), ['alice', 'bob'], 'a revoked certificate is not watched');
  assert.ok((clients.alice as number) > DAY - 600 && (clients.alice as number) <= DAY, `alice ${clients.alice}`);
  assert.ok((clients.bob as number) > 7_200 - 600 && (clients.bob as number) <= 7_200, `bob ${clients.bob}`);
  assert.equal(s.find('broker_certificate_expiry_seconds').length, 0, 'the countdown gauge is gone');
});

test('metric names follow Prometheus conventions: broker_ prefix, snake case, counters end in _total, durations in _seconds', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/x' })).status, 200);
  await eventually(() => b.logs.of('access').length === 1, 'the access line');
  const s = await scrape(b);
  assert.ok(s.types.size > 10);
  const own = [...s.types].filter(([name]) => name.startsWith('broker_'));
  assert.deepEqual(
    own.map(([name]) => name).sort(),
    [
      'broker_bans_active',
      'broker_bans_total',
      'broker_certificate_expiry_timestamp_seconds',
      'broker_config_last_reload_success',
      'broker_config_last_reload_timestamp_seconds',
      'broker_client_certificate_expiry_timestamp_seconds',
      'broker_credentials_total',
      'broker_forward_bytes_total',
      'broker_forward_total',
      'broker_handshakes_total',
      'broker_open_connections',
      'broker_redis_errors_total',
      'broker_rejections_total',
      'broker_reloads_total',
      'broker_request_duration_seconds',
      'broker_requests_total',
      'broker_upstream_connections_in_use',
      'broker_upstream_connections_max',
      'broker_upstream_duration_seconds',
      'broker_upstream_share_refusals_total',
    ].sort(),
  );
  for (const [name, type] of s.types) {
    // prom-client's process metrics under their usual names (process_*, nodejs_*), the rest under broker_.
    assert.match(name, /^(broker|process|nodejs)_[a-z0-9_]+$/, 'lower snake case under broker_, process_ or nodejs_');
    // The broker's own families have no digits; Node's default metrics have p50/p90/p99.
    if (name.startsWith('broker_')) assert.match(name, /^broker_[a-z_]+$/);
    if (type === 'counter') assert.match(name, /_total$/, `counter ${name}`);
  }
  for (const name of ['process_cpu_seconds_total', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes']) assert.ok(s.types.has(name), `${name} (prom-client's conventional name)`);
  assert.ok(![...s.types.keys()].some((n) => n.startsWith('broker_process_')), 'no broker_process_ prefix');
  // prom-client's default gauges include nodejs_active_handles_total and the like: only the
  // broker's own families are held to "only counters end in _total".
  for (const [name, type] of own) {
    if (type !== 'counter') assert.doesNotMatch(name, /_total$/, `${type} ${name} ends in _total`);
    if (type === 'histogram') assert.match(name, /_seconds$/, `histogram ${name} in seconds`);
  }
  for (const sample of s.samples) assert.ok(s.types.has(sample.name.replace(/_(bucket|sum|count)$/, '')) || s.types.has(sample.name), `sample ${sample.name} has a # TYPE`);
});

test('broker_config_last_reload_success and _timestamp_seconds: 1 from the start, 0 after a refused reload, 1 again after a good one, each at its time', async (t) => {
  const pki = await makePki(t);
  const seconds = () => Math.floor(Date.now() / 1000);
  const started = seconds();
  const b = await startBroker(t, pki, {});
  const gauges = async () => {
    const s = await scrape(b);
    return { ok: s.value('broker_config_last_reload_success'), at: s.value('broker_config_last_reload_timestamp_seconds') };
  };
  const first = await gauges();
  assert.equal(first.ok, 1, 'the start is a successful load');
  assert.ok(first.at >= started && first.at <= seconds(), `the start time: ${first.at}`);

  const beforeBad = seconds();
  const bad = await b.broker.reload({ ...b.broker.config, tls: { ...b.broker.config.tls, server: 'nosuch' } });
  assert.equal(bad.ok, false);
  const refused = await gauges();
  assert.equal(refused.ok, 0);
  assert.ok(refused.at >= beforeBad && refused.at <= seconds(), `the refused reload's time: ${refused.at}`);

  const beforeGood = seconds();
  const good = await b.broker.reload();
  assert.equal(good.ok, true, good.problems.join('\n'));
  const again = await gauges();
  assert.equal(again.ok, 1);
  assert.ok(again.at >= beforeGood && again.at <= seconds(), `the good reload's time: ${again.at}`);
});

test('a scrape whose cluster collection fails answers 503 BRK_ERR_ADMIN_METRICS_UNAVAILABLE, not a partial sum', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  t.after(() => metrics.close());
  // With a token, so that the injected request (no real socket, no loopback address) is admitted.
  const app = await buildAdmin({ registry: metrics.registry, token: 'tok', scrape: () => Promise.reject(new Error('Operation timed out.')), readiness: async () => [] });
  t.after(() => app.close());
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: { host: '127.0.0.1', authorization: 'Bearer tok' } });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.json().code, 'BRK_ERR_ADMIN_METRICS_UNAVAILABLE');
});
