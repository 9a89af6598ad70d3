/**
 * CRL and reload alerts (issue 19): a loaded CRL within alerts.crlExpiry of its nextUpdate raises
 * crl_expiring at start, after a reload, and from the minute check while the broker runs; a refused
 * reload raises reload_failed. Each at a local webhook and on the error stream.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { makePki, startBroker, type RunningBroker } from '../helpers/broker.ts';
import { eventually } from '../helpers/within.ts';
import { publishCrl } from '../../src/pki/revoke.ts';
import { startWebhook, type AlertBody } from '../helpers/webhook.ts';

type Body = AlertBody;


const MIN = 60_000;
const settled = (b: RunningBroker) => eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');
const named = (bodies: Body[], alert: string) => bodies.filter((x) => x.alert === alert);
// expiryWarning under the test certificates' day: no certificate alert gets in the way
const alertsConfig = (url: string, crlExpiry: string) => ({ alerts: { webhook: url, expiryWarning: '1h', crlExpiry } });

test('a CRL loaded at start within alerts.crlExpiry of nextUpdate raises crl_expiring; outside the margin it does not', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  const crl = await publishCrl(pki.store, { nextUpdateMs: 20 * MIN, force: true });

  const calm = await startBroker(t, pki, alertsConfig(hook.url, '10m'));
  await settled(calm);
  assert.deepEqual(named(hook.bodies, 'crl_expiring'), [], '20 minutes left is outside a 10m margin');

  const b = await startBroker(t, pki, alertsConfig(hook.url, '1h'));
  await eventually(() => named(hook.bodies, 'crl_expiring').length === 1, 'crl_expiring at the webhook');
  const [alert] = named(hook.bodies, 'crl_expiring');
  assert.equal(alert?.severity, 'critical');
  assert.equal(alert?.key, `crl:${crl.nextUpdate.toISOString()}`);
  assert.equal(alert?.details.nextUpdate, crl.nextUpdate.toISOString());
  assert.equal(alert?.details.file, b.broker.material.files.crl);
  assert.equal(alert?.details.marginSeconds, 3_600);
  assert.ok((alert?.details.secondsLeft as number) > 0 && (alert?.details.secondsLeft as number) <= 20 * 60);
  assert.match(alert?.message ?? '', /broker pki crl/);
  assert.ok(b.logs.of('error').some((l) => l.event === 'alert' && l.alert === 'crl_expiring'), 'on the error stream too');
  // CRLs are no longer certificate_expiring alerts
  assert.deepEqual(named(hook.bodies, 'certificate_expiring'), []);
});

test('a reload that loads a CRL near its end raises crl_expiring at once, without waiting for a clock', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  const b = await startBroker(t, pki, alertsConfig(hook.url, '1h'));
  await settled(b);
  assert.deepEqual(named(hook.bodies, 'crl_expiring'), [], 'the 30-day CRL of a fresh store raises nothing');

  const crl = await publishCrl(pki.store, { nextUpdateMs: 30 * MIN, force: true });
  assert.equal((await b.broker.reload(undefined, 'test')).ok, true);
  // the alert is raised before reload() returns; only its delivery is asynchronous
  assert.ok(b.logs.of('error').some((l) => l.event === 'alert' && l.alert === 'crl_expiring'), 'raised by the reload itself');
  await eventually(() => named(hook.bodies, 'crl_expiring').length === 1, 'crl_expiring at the webhook');
  assert.equal(named(hook.bodies, 'crl_expiring')[0]?.details.nextUpdate, crl.nextUpdate.toISOString());
});

test('a refused reload raises reload_failed with its trigger, code and problems', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  const b = await startBroker(t, pki, alertsConfig(hook.url, '1h'));
  const broken = { ...b.broker.config, tls: { ...b.broker.config.tls, server: 'no-such-server' } };
  const r = await b.broker.reload(broken, 'test');
  assert.equal(r.ok, false);
  await eventually(() => named(hook.bodies, 'reload_failed').length === 1, 'reload_failed at the webhook');
  const [alert] = named(hook.bodies, 'reload_failed');
  assert.equal(alert?.severity, 'critical');
  assert.equal(alert?.details.trigger, 'test');
  assert.deepEqual(alert?.details.problems, r.problems);
  assert.match(String(alert?.key), /^reload:/);

  // the same problem again is the same alert (dedupWindow); a good reload raises nothing
  assert.equal((await b.broker.reload(broken, 'test')).ok, false);
  assert.equal((await b.broker.reload(undefined, 'test')).ok, true);
  await settled(b);
  assert.equal(named(hook.bodies, 'reload_failed').length, 1);
});

test('the minute check: a CRL that comes within the margin while the broker runs raises crl_expiring without a reload', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  // 1 h 15 s left at publication: outside the 1h margin at start, inside it a quarter minute later
  const crl = await publishCrl(pki.store, { nextUpdateMs: 60 * MIN + 15_000 });
  const b = await startBroker(t, pki, alertsConfig(hook.url, '1h'));
  await settled(b);
  if (crl.nextUpdate.getTime() - Date.now() > 60 * MIN) assert.deepEqual(named(hook.bodies, 'crl_expiring'), [], 'outside the margin at start');
  // bounded: the check runs every minute
  await eventually(() => named(hook.bodies, 'crl_expiring').length === 1, 'crl_expiring from the minute check', 2 * MIN);
  assert.equal(named(hook.bodies, 'crl_expiring')[0]?.details.nextUpdate, crl.nextUpdate.toISOString());
});
