/**
 * Alerts: each rule raises one error-stream line and one webhook POST, de-duplicated within
 * alerts.dedupWindow (a storm makes one alert); a webhook that never answers, or refuses
 * connections, slows no request, and its queue is bounded.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, deadPort } from '../helpers/broker.ts';
import { eventually } from '../helpers/within.ts';
import { startWebhook, type AlertBody } from '../helpers/webhook.ts';

type Body = AlertBody;



/** A server that accepts TCP connections and never answers; holds them until the test ends. */
async function startSilent(t: TestContext): Promise<{ url: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, sockets };
}

/** A connection the broker must refuse in the handshake (no certificate unless `id`); a presented certificate that fails verification is told why with a 495 (tls.refusal http), never forwarded. */
async function refused(b: RunningBroker, pki: TestPki, o: { id?: Identity; localAddress?: string } = {}): Promise<void> {
  await request(b.port, { ...(o.id ? { id: o.id } : {}), ca: pki.ca, path: '/api/x', ...(o.localAddress ? { localAddress: o.localAddress } : {}) }).then(
    (res) => assert.equal(res.status, 495, `expected a refused handshake or a 495, got HTTP ${res.status}`),
    () => undefined,
  );
}

const alertLines = (b: RunningBroker, alert?: string) => b.logs.of('error').filter((l) => l.event === 'alert' && l.outcome === undefined && (alert === undefined || l.alert === alert));

test('a burst of 30 failed handshakes from one address makes exactly one alert, on the error stream and at the webhook', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  // expiryWarning below the test certificates' day, so that no expiry alert is raised at start
  const b = await startBroker(t, pki, { alerts: { webhook: hook.url, failedHandshakesPerIp: 5, dedupWindow: '10m', expiryWarning: '1h' } });
  for (let i = 0; i < 30; i++) await refused(b, pki);
  await eventually(() => b.logs.of('auth').filter((l) => l.outcome === 'refused').length === 30, 'thirty refused handshakes logged');

  await eventually(() => hook.bodies.length >= 1, 'the webhook received the alert');
  await eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');
  assert.equal(hook.bodies.length, 1, JSON.stringify(hook.bodies));
  const [body] = hook.bodies;
  assert.ok(body);
  assert.deepEqual(
    { alert: body.alert, severity: body.severity, key: body.key, details: body.details },
    { alert: 'failed_handshakes_from_ip', severity: 'warning', key: 'hs-ip:127.0.0.1', details: { remoteIp: '127.0.0.1', windowMs: 60_000 } },
  );
  assert.equal(typeof body.message, 'string');
  assert.ok(!Number.isNaN(Date.parse(String(body.time))));
  assert.equal(b.broker.alerts.sent, 1);
  assert.equal(b.broker.alerts.dropped, 0);

  const lines = alertLines(b);
  assert.equal(lines.length, 1);
  assert.deepEqual({ alert: lines[0]?.alert, severity: lines[0]?.severity, remoteIp: lines[0]?.remoteIp, level: lines[0]?.level }, { alert: 'failed_handshakes_from_ip', severity: 'warning', remoteIp: '127.0.0.1', level: 50 });
});

test('an upstream that is down, a revoked certificate and a client certificate about to expire each raise their alert once', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const dead = await deadPort();
  const alice = await pki.issue('alice', ['user']);
  await pki.issue('brief', ['user'], { ttlMs: 3_600_000 });
  const gone = await pki.issue('gone', ['user']);
  await pki.revoke(gone.serial);
  const b = await startBroker(t, pki, {
    // clientExpiry off: the per-threshold client notices have their own test (client-expiry.test.ts)
    alerts: { webhook: hook.url, expiryWarning: '2h', dedupWindow: '10m', clientExpiry: [] },
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${dead}`, roles: ['user'] },
    ],
  });

  // At start: the 1-hour certificate is inside the 2-hour warning; the others (a day, years) are not.
  const expiring = await b.logs.waitFor((l) => l.event === 'alert' && l.alert === 'certificate_expiring');
  assert.deepEqual({ log: expiring.log, kind: expiring.kind, name: expiring.name, severity: expiring.severity }, { log: 'error', kind: 'client', name: 'brief', severity: 'warning' });

  for (let i = 0; i < 2; i++) assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/dead/x' })).status, 502);
  for (let i = 0; i < 2; i++) await refused(b, pki, { id: gone });
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/x' })).status, 200);
  await eventually(() => b.logs.of('auth').filter((l) => l.reason === 'revoked').length === 2, 'two revoked handshakes logged');
  await eventually(() => hook.bodies.length >= 3, 'three alerts at the webhook');
  await eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');

  const byAlert = (name: string) => hook.bodies.filter((x) => x.alert === name);
  assert.deepEqual(hook.bodies.map((x) => x.alert).sort(), ['certificate_expiring', 'revoked_certificate_used', 'upstream_down']);
  assert.deepEqual(byAlert('certificate_expiring')[0]?.details.name, 'brief');
  assert.equal(byAlert('certificate_expiring')[0]?.details.kind, 'client');
  assert.deepEqual(byAlert('upstream_down')[0]?.details, { route: 'dead', code: 'BRK_ERR_UPSTREAM_UNAVAILABLE' });
  assert.equal(byAlert('upstream_down')[0]?.severity, 'critical');
  // The address only: Node destroys a socket whose chain failed verification before any listener but
  // its own sees it, so the refused certificate's serial is not known to the broker.
  assert.equal(byAlert('revoked_certificate_used')[0]?.details.remoteIp, '127.0.0.1');
  assert.equal(byAlert('revoked_certificate_used')[0]?.severity, 'critical');
  assert.deepEqual(alertLines(b).map((l) => l.alert).sort(), ['certificate_expiring', 'revoked_certificate_used', 'upstream_down']);
  assert.equal(alertLines(b, 'upstream_down')[0]?.route, 'dead');
});

const DEAD_WEBHOOKS: Array<{ name: string; start(t: TestContext): Promise<{ url: string; sockets?: Set<Socket> }> }> = [
  { name: 'accepts connections and never answers', start: startSilent },
  { name: 'refuses connections', start: async () => ({ url: `http://127.0.0.1:${await deadPort()}/hook` }) },
];

for (const dead of DEAD_WEBHOOKS) {
  test(`a webhook that ${dead.name} slows no request, and its queue is bounded`, async (t) => {
    const hook = await dead.start(t);
    const pki = await makePki(t);
    const up = await startUpstream(t);
    const b = await startBroker(t, pki, {
      alerts: { webhook: hook.url, failedHandshakesPerIp: 1, webhookTimeout: '30s', expiryWarning: '1h' },
      routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }],
    });
    const alice = await pki.issue('alice', ['user']);

    // One failed handshake from each of 130 loopback addresses: 130 distinct alerts.
    const RAISED = 130;
    for (let i = 1; i <= RAISED; i++) await refused(b, pki, { localAddress: `127.0.1.${i}` });
    await eventually(() => alertLines(b, 'failed_handshakes_from_ip').length === RAISED, `${RAISED} alerts raised`);
    if (hook.sockets) await eventually(() => (hook.sockets as Set<Socket>).size > 0, 'deliveries hanging on the silent webhook');

    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await request(b.port, { id: alice, ca: pki.ca, path: `/api/${i}` })).status);
    const pending = b.broker.alerts.pending();
    assert.deepEqual(statuses, Array(20).fill(200));
    assert.ok(pending > 0, 'the requests completed while deliveries were still pending');
    assert.ok(pending <= 102, `at most 100 queued and 2 in flight, got ${pending}`);
    assert.ok(b.broker.alerts.dropped > 0, 'the oldest alerts were dropped past 100 queued');
    const accounted = () => b.broker.alerts.dropped + b.broker.alerts.pending() + b.broker.alerts.sent + undeliveredOf(b);
    assert.equal(accounted(), RAISED, 'every alert is queued, in flight, dropped, or given up on');
    if (!hook.sockets) {
      // Refused at once, each delivery is retried with a back-off, then given up on (and said so).
      const undelivered = await b.logs.waitFor((l) => l.event === 'alert' && l.outcome === 'undelivered', 20_000);
      assert.deepEqual({ level: undelivered.level, alert: undelivered.alert }, { level: 40, alert: 'failed_handshakes_from_ip' });
      await new Promise((resolve) => setImmediate(resolve)); // the given-up delivery leaves the in-flight count
      assert.equal(accounted(), RAISED);
    }
    assert.equal(b.broker.alerts.sent, 0);
  });
}

function undeliveredOf(b: RunningBroker): number {
  return b.logs.of('error').filter((l) => l.event === 'alert' && l.outcome === 'undelivered').length;
}
