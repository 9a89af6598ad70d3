/**
 * The console's activity (src/console/activity.ts) on a clock the test moves: per identity counts
 * over the last hour and day, the live series (10 s intervals over 15 minutes, with percentiles from
 * its histogram), and the bounded list of refusals. Events are published on the real channels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channels, type HandshakeEvent, type RequestEvent } from '../../src/channels.ts';
import { createActivity } from '../../src/console/activity.ts';

const MIN = 60_000;
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);

function req(principal: string | null, o: Partial<RequestEvent> = {}): void {
  channels.request.publish({ route: 'api', role: 'user', principal, status: 200, durationMs: 3, ...o } satisfies RequestEvent);
}

test('counts per identity over the last hour and day, by minute and hour buckets', (t) => {
  let now = T0;
  const a = createActivity(() => now);
  t.after(() => a.close());
  req('alice');
  req('alice');
  req('alice', { status: 403, code: 'BRK_ERR_ACL_DENIED' });
  assert.deepEqual(a.of('alice'), { lastSeen: new Date(T0).toISOString(), requests: { hour: 2, day: 2 }, refusals: { hour: 1, day: 1 } });
  now += 61 * MIN; // the minute buckets no longer cover T0; the hour buckets do
  req('alice');
  assert.deepEqual(a.of('alice').requests, { hour: 1, day: 3 });
  assert.deepEqual(a.of('alice').refusals, { hour: 0, day: 1 });
  now += 25 * 60 * MIN;
  assert.deepEqual(a.of('alice').requests, { hour: 0, day: 0 });
  assert.deepEqual(a.of('nobody'), { lastSeen: null, requests: { hour: 0, day: 0 }, refusals: { hour: 0, day: 0 } });
});

test('a refused handshake counts against the identity of its serial', (t) => {
  const now = T0;
  const a = createActivity(() => now);
  t.after(() => a.close());
  channels.handshake.publish({ outcome: 'refused', reason: 'revoked', remoteIp: '127.0.0.1', serial: 'ab12', subject: 'CN=bob', fingerprint: 'ff' } satisfies HandshakeEvent);
  assert.deepEqual(a.of('bob', ['ab12']).refusals, { hour: 1, day: 1 });
  assert.deepEqual(a.of('bob').refusals, { hour: 0, day: 0 });
  const [r] = a.refusals();
  assert.equal(r?.code, 'BRK_ERR_TLS_CLIENT_CERT_REFUSED');
  assert.deepEqual(r?.certificate, { subject: 'CN=bob', serial: 'ab12', fingerprint: 'ff' });
});

test('the live series: 90 intervals of 10 s, rates, errors, handshakes and histogram percentiles', (t) => {
  let now = T0 + 1_000;
  const a = createActivity(() => now);
  t.after(() => a.close());
  for (let i = 0; i < 98; i++) req('alice', { durationMs: 4 });
  req('alice', { durationMs: 150 });
  req('alice', { status: 502, code: 'BRK_ERR_UPSTREAM_UNAVAILABLE', durationMs: 1_500 });
  channels.handshake.publish({ outcome: 'ok', remoteIp: '127.0.0.1', principal: 'alice', serial: '01' } satisfies HandshakeEvent);
  now += 20_000;
  req('alice', { durationMs: 1 });
  const s = a.series();
  assert.equal(s.length, 90);
  assert.equal(s.at(-1)?.t, new Date(T0 + 20_000).toISOString());
  const first = s.at(-3);
  assert.deepEqual(first, { t: new Date(T0).toISOString(), requestsPerSecond: 10, errorsPerSecond: 0.1, p50Ms: 5, p99Ms: 200, handshakesPerSecond: 0.1 });
  assert.deepEqual(s.at(-2), { t: new Date(T0 + 10_000).toISOString(), requestsPerSecond: 0, errorsPerSecond: 0, p50Ms: null, p99Ms: null, handshakesPerSecond: 0 });
  assert.equal(s.at(-1)?.p99Ms, 1);
  assert.equal(a.refusals().length, 0, 'a 502 from upstream is an error, not a refusal');
  now += 15 * MIN;
  assert.ok(a.series().every((p) => p.requestsPerSecond === 0), 'older than 15 minutes is gone');
});

test('refusals: newest first, the last 100', (t) => {
  const a = createActivity(() => T0);
  t.after(() => a.close());
  for (let i = 0; i < 120; i++) req(null, { status: 401, code: 'BRK_ERR_AUTH_INVALID', reqId: `r${i}` });
  const list = a.refusals();
  assert.equal(list.length, 100);
  assert.equal(list[0]?.reqId, 'r119');
  assert.equal(list.at(-1)?.reqId, 'r20');
  a.close();
  req(null, { status: 401, code: 'BRK_ERR_AUTH_INVALID', reqId: 'after' });
  assert.equal(a.refusals()[0]?.reqId, 'r119', 'closed: no longer listening');
});
