/**
 * Client certificate expiry notices: one `client_certificate_expiring` alert per identity and
 * alerts.clientExpiry threshold it is within, with the identity, serial, notAfter, days left,
 * threshold and contact in the webhook payload; exactly once per (serial, threshold) in the
 * process (a reload does not repeat them, a newly issued identity read at reload gets its own);
 * revoked certificates and renewed identities' older certificates are left alone; the newest
 * certificate of each identity is a metric. A broker verifying against an explicit tls.clientCa
 * raises none (the inventory is not its CA's).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makePki, startBroker, type TestPki } from '../helpers/broker.ts';
import { scrape } from '../helpers/admin.ts';
import { eventually } from '../helpers/within.ts';
import { issueClient, renew } from '../../src/pki/issue.ts';
import { startWebhook, type AlertBody } from '../helpers/webhook.ts';

type Body = AlertBody;
const DAY = 86_400_000;


let n = 0;
async function issue(pki: TestPki, name: string, ttlMs: number, contact?: string) {
  const r = await issueClient(pki.store, { name, roles: ['billing'], ttlMs, outDir: join(pki.dir, '..', `kit-${n++}`), ...(contact ? { contact } : {}) });
  return r.record;
}

const notices = (bodies: Body[]) => bodies.filter((b) => b.alert === 'client_certificate_expiring');
const pairs = (bodies: Body[]) => notices(bodies).map((b) => `${String(b.details.identity)}@${String(b.details.threshold)}`).sort();

test('expiry notices reach the webhook at the right thresholds, exactly once each, with the contact; a reload repeats none; the metric shows each identity', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  const soon = await issue(pki, 'soon', 2 * DAY, 'ops@soon.example'); // within 30d and 7d, not 1d
  const later = await issue(pki, 'later', 20 * DAY, 'ops@later.example'); // within 30d only
  await issue(pki, 'far', 60 * DAY); // none
  const hours = await issue(pki, 'hours', 12 * 3_600_000); // all three
  await issue(pki, 'gone', 2 * DAY);
  await pki.revoke('gone'); // revoked: none
  // renewed: the older certificate (2 days) is no concern, the newer one (40 days) is within none
  await issue(pki, 'renewed', 2 * DAY);
  const renewed = await renew(pki.store, { name: 'renewed', ttlMs: 40 * DAY, outDir: join(pki.dir, '..', 'renewed') });

  // expiryWarning below the test server certificate's day: only the client notices are in play
  const b = await startBroker(t, pki, { alerts: { webhook: hook.url, expiryWarning: '1h' } });
  const expected = ['hours@1d', 'hours@30d', 'hours@7d', 'later@30d', 'soon@30d', 'soon@7d'];
  await eventually(() => notices(hook.bodies).length >= expected.length, 'the notices reached the webhook');
  await eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');
  assert.deepEqual(pairs(hook.bodies), expected);

  const soon7 = notices(hook.bodies).find((x) => x.details.identity === 'soon' && x.details.threshold === '7d');
  assert.ok(soon7);
  assert.equal(soon7.severity, 'warning');
  assert.deepEqual(
    { ...soon7.details, secondsLeft: undefined },
    { identity: 'soon', serial: soon.serial, notAfter: soon.notAfter, daysLeft: 1, secondsLeft: undefined, threshold: '7d', thresholdDays: 7, contact: 'ops@soon.example' },
  );
  const hours1 = notices(hook.bodies).find((x) => x.details.identity === 'hours' && x.details.threshold === '1d');
  assert.equal(hours1?.severity, 'critical', 'the last threshold is critical');
  assert.equal(hours1?.details.daysLeft, 0);
  assert.equal(hours1?.details.contact, null, 'no contact: null');
  assert.equal(hours1?.details.serial, hours.serial);
  assert.ok(b.logs.of('error').some((l) => l.event === 'alert' && l.alert === 'client_certificate_expiring' && l.identity === 'later' && l.contact === 'ops@later.example'), 'on the error stream too');

  // a reload reads the inventory again: a newly issued identity gets its notices, the others none again
  const fresh = await issue(pki, 'fresh', 5 * DAY, 'ops@fresh.example');
  const r = await b.broker.reload(b.broker.config, 'test');
  assert.equal(r.ok, true, r.problems.join('; '));
  await eventually(() => notices(hook.bodies).length >= expected.length + 2, 'the new identity\'s notices');
  await b.broker.reload(b.broker.config, 'test');
  await eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');
  assert.deepEqual(pairs(hook.bodies), [...expected, 'fresh@30d', 'fresh@7d'].sort(), 'each (serial, threshold) exactly once');
  assert.equal(notices(hook.bodies).find((x) => x.details.identity === 'fresh')?.details.serial, fresh.serial);

  const m = await scrape(b);
  const gauge = 'broker_client_certificate_expiry_timestamp_seconds';
  for (const rec of [soon, later, hours, fresh, renewed.record]) {
    assert.deepEqual(m.find(gauge, { identity: rec.name }).map((s) => [s.labels.serial, s.value]), [[rec.serial, Math.floor(Date.parse(rec.notAfter) / 1000)]], rec.name);
  }
  assert.equal(m.find(gauge, { identity: 'gone' }).length, 0, 'revoked: not shown');
  assert.equal(m.find(gauge).length, 6, 'soon, later, far, hours, renewed, fresh');
});

test('alerts.clientExpiry: [] raises no notice; a broker verifying against an explicit tls.clientCa raises none either', async (t) => {
  const hook = await startWebhook(t);
  const pki = await makePki(t);
  await issue(pki, 'soon', 2 * DAY, 'ops@soon.example');
  const off = await startBroker(t, pki, { alerts: { webhook: hook.url, expiryWarning: '1h', clientExpiry: [] } });
  const explicit = await startBroker(t, pki, { alerts: { webhook: hook.url, expiryWarning: '1h' }, tls: { server: 'localhost', clientCa: pki.store.layout.chain } });
  // a third broker that does raise them: once its notices arrived, the others had their chance (same start path)
  const on = await startBroker(t, pki, { alerts: { webhook: hook.url, expiryWarning: '1h', clientExpiry: ['7d'] } });
  await eventually(() => notices(hook.bodies).length >= 1, 'the notice of the broker with notices on');
  for (const b of [off, explicit, on]) await eventually(() => b.broker.alerts.pending() === 0, 'no delivery left');
  assert.deepEqual(pairs(hook.bodies), ['soon@7d']);
  assert.equal((await scrape(explicit)).find('broker_client_certificate_expiry_timestamp_seconds').length, 0);
});
