/**
 * Per-identity limits of the forward listener: new tunnels per period, tunnels open at once, and
 * byte quotas per window in each direction (the tunnel that spends one is cut, the next is refused
 * with 429 and Retry-After), per role and shared between two replicas through a real Redis.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { makePki, request, startUpstream, type Identity } from '../helpers/broker.ts';
import { BIG, connectRaw, connectThrough, getInside, startForward, startTlsDestination } from '../helpers/forward.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';
import { eventually, within } from '../helpers/within.ts';

/** Holds a tunnel open; closed when the test ends. */
async function hold(t: { after(fn: () => void): void }, port: number, ca: string, id: Identity, authority: string): Promise<Socket> {
  const { status, socket } = await within(connectThrough(port, ca, id, authority), 15_000, 'CONNECT');
  assert.equal(status, 200, 'the tunnel opens');
  t.after(() => socket.destroy());
  return socket;
}

const retryAfter = (head: string): number => Number(/\r\nretry-after: (\d+)/i.exec(head)?.[1]);

test('new tunnels per period: past the burst, 429 BRK_ERR_FORWARD_RATE_LIMITED with Retry-After; other identities unaffected', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('rate-a', ['partner']);
  const other = await pki.issue('rate-b', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], { limits: { tunnels: { rate: 1, per: '1h', burst: 2 } } });
  const to = `127.0.0.1:${dest.port}`;
  await hold(t, b.forwardPort, pki.ca, a, to);
  await hold(t, b.forwardPort, pki.ca, a, to);
  const third = await connectRaw(b.forwardPort, pki.ca, a, to);
  assert.equal(third.status, 429);
  assert.equal(third.body.code, 'BRK_ERR_FORWARD_RATE_LIMITED');
  assert.ok(retryAfter(third.head) >= 1, third.head);
  // an absolute-form request takes from the same bucket
  const abs = await request(b.forwardPort, { id: a, ca: pki.ca, path: `http://127.0.0.1:${dest.port}/` });
  assert.equal(abs.status, 429);
  assert.equal(abs.json().code, 'BRK_ERR_FORWARD_RATE_LIMITED');
  assert.ok(Number(abs.headers['retry-after']) >= 1);
  await hold(t, b.forwardPort, pki.ca, other, to);
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.code === 'BRK_ERR_FORWARD_RATE_LIMITED', 10_000);
  assert.equal(line.principal, 'rate-a');
  assert.equal(line.status, 429);
  assert.equal(line.outcome, 'refused');
});

test('tunnels open at once: past maxTunnels, 429 BRK_ERR_FORWARD_TUNNELS; a closed tunnel frees its slot; roles.NAME.forward overrides per role', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('slots-a', ['partner']);
  const bulk = await pki.issue('slots-bulk', ['partner', 'bulk']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], { limits: { maxTunnels: 2 } }, { roles: { bulk: { forward: { maxTunnels: 3 } } } });
  const to = `127.0.0.1:${dest.port}`;
  const first = await hold(t, b.forwardPort, pki.ca, a, to);
  await hold(t, b.forwardPort, pki.ca, a, to);
  const refused = await connectRaw(b.forwardPort, pki.ca, a, to);
  assert.equal(refused.status, 429);
  assert.equal(refused.body.code, 'BRK_ERR_FORWARD_TUNNELS');
  first.destroy();
  await eventually(async () => {
    const r = await within(connectThrough(b.forwardPort, pki.ca, a, to), 15_000, 'CONNECT');
    r.socket.destroy();
    return r.status === 200;
  }, 'a slot is free again once a tunnel closed');
  // the bulk role allows three
  for (let i = 0; i < 3; i++) await hold(t, b.forwardPort, pki.ca, bulk, to);
  assert.equal((await connectRaw(b.forwardPort, pki.ca, bulk, to)).body.code, 'BRK_ERR_FORWARD_TUNNELS');
});

test('a download quota cuts the tunnel that spends it, and refuses the next tunnel and request with 429 BRK_ERR_FORWARD_QUOTA', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('quota-a', ['partner']);
  const other = await pki.issue('quota-b', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], { limits: { quota: { window: '1h', down: '1mb' } } });
  const to = `127.0.0.1:${dest.port}`;
  const socket = await hold(t, b.forwardPort, pki.ca, a, to);
  const got = await within(getInside(socket, dest.ca, '/big').catch((e: Error) => `error: ${e.message}`), 30_000, 'the download ends');
  assert.ok(got.length < BIG.length, `the tunnel was cut before the 6 MiB arrived (${got.length} bytes)`);
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.principal === 'quota-a' && l.method === 'CONNECT' && l.status === 200, 15_000);
  assert.equal(line.end, 'download quota spent');
  assert.ok((line.bytesDown as number) >= 1024 * 1024 && (line.bytesDown as number) < BIG.length, JSON.stringify(line));
  const next = await connectRaw(b.forwardPort, pki.ca, a, to);
  assert.equal(next.status, 429);
  assert.equal(next.body.code, 'BRK_ERR_FORWARD_QUOTA');
  const ra = retryAfter(next.head);
  assert.ok(ra >= 1 && ra <= 3600, next.head);
  const abs = await request(b.forwardPort, { id: a, ca: pki.ca, path: `http://127.0.0.1:${dest.port}/` });
  assert.equal(abs.json().code, 'BRK_ERR_FORWARD_QUOTA');
  // another identity has its own quota
  const fresh = await hold(t, b.forwardPort, pki.ca, other, to);
  assert.match(await within(getInside(fresh, dest.ca, '/small'), 15_000, 'GET'), /secret from \/small/);
});

test('an upload quota cuts an absolute-form request that spends it', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('upload-a', ['partner']);
  const sink = await startUpstream(t);
  const port = sink.port;
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [port], allowPrivate: ['127.0.0.0/8'] }], { limits: { quota: { window: '1h', up: '1mb' } } });
  const big = await request(b.forwardPort, { id: a, ca: pki.ca, method: 'POST', path: `http://127.0.0.1:${port}/upload`, body: BIG }).catch((e: Error) => ({ status: 0, error: e.message }));
  assert.notEqual(big.status, 200, 'the 6 MiB upload did not complete');
  assert.ok(!sink.seen.some((s) => s.body.length === BIG.length), 'the destination never received the whole body');
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.method === 'POST', 15_000);
  assert.equal(line.end, 'upload quota spent');
  const next = await request(b.forwardPort, { id: a, ca: pki.ca, path: `http://127.0.0.1:${port}/small` });
  assert.equal(next.status, 429);
  assert.equal(next.json().code, 'BRK_ERR_FORWARD_QUOTA');
});

test('two replicas on one Redis share the tunnel slots, the tunnel rate and the quota', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const slots = await pki.issue('shared-slots', ['partner']);
  const rate = await pki.issue('shared-rate', ['partner']);
  const quota = await pki.issue('shared-quota', ['partner']);
  const dest = await startTlsDestination(t);
  const rules = [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }];
  const limits = { tunnels: { rate: 1, per: '1h', burst: 6 }, maxTunnels: 2, quota: { window: '1h', down: '1mb' } };
  const raw = { rateLimit: { store: redis.url, failOpen: false } };
  const one = await startForward(t, pki, rules, { limits }, raw);
  const two = await startForward(t, pki, rules, { limits }, raw);
  const to = `127.0.0.1:${dest.port}`;

  // slots: one tunnel on each replica, then both refuse
  await hold(t, one.forwardPort, pki.ca, slots, to);
  await hold(t, two.forwardPort, pki.ca, slots, to);
  assert.equal((await connectRaw(one.forwardPort, pki.ca, slots, to)).body.code, 'BRK_ERR_FORWARD_TUNNELS');
  assert.equal((await connectRaw(two.forwardPort, pki.ca, slots, to)).body.code, 'BRK_ERR_FORWARD_TUNNELS');

  // rate: six tunnels across both replicas (each closed at once), the seventh is refused on either
  for (let i = 0; i < 6; i++) {
    const r = await within(connectThrough((i % 2 === 0 ? one : two).forwardPort, pki.ca, rate, to), 15_000, 'CONNECT');
    assert.equal(r.status, 200, `tunnel ${i + 1}`);
    r.socket.destroy();
  }
  assert.equal((await connectRaw(two.forwardPort, pki.ca, rate, to)).body.code, 'BRK_ERR_FORWARD_RATE_LIMITED');
  assert.equal((await connectRaw(one.forwardPort, pki.ca, rate, to)).body.code, 'BRK_ERR_FORWARD_RATE_LIMITED');

  // quota: spent through replica one, refused by replica two
  const socket = await hold(t, one.forwardPort, pki.ca, quota, to);
  const got = await within(getInside(socket, dest.ca, '/big').catch((e: Error) => `error: ${e.message}`), 30_000, 'the download ends');
  assert.ok(got.length < BIG.length, 'the tunnel was cut');
  const refused = await connectRaw(two.forwardPort, pki.ca, quota, to);
  assert.equal(refused.status, 429);
  assert.equal(refused.body.code, 'BRK_ERR_FORWARD_QUOTA');
});

test('metrics count tunnels by identity and outcome and their bytes; a spent quota raises forward_quota_spent', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('metered', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], { limits: { quota: { window: '1h', down: '1mb' } } }, { alerts: { expiryWarning: '1h' } });
  const to = `127.0.0.1:${dest.port}`;
  const socket = await hold(t, b.forwardPort, pki.ca, a, to);
  await within(getInside(socket, dest.ca, '/big').catch(() => ''), 30_000, 'the download ends');
  assert.equal((await connectRaw(b.forwardPort, pki.ca, a, to)).body.code, 'BRK_ERR_FORWARD_QUOTA');
  assert.equal((await connectRaw(b.forwardPort, pki.ca, a, '127.0.0.1:1')).body.code, 'BRK_ERR_FORWARD_PORT');
  await b.logs.waitFor((l) => l.event === 'forward' && l.code === 'BRK_ERR_FORWARD_PORT', 10_000);
  const text = await b.broker.metrics.registry.metrics();
  const value = (line: RegExp) => Number(line.exec(text)?.[1]);
  assert.equal(value(/^broker_forward_total\{identity="metered",outcome="ok",code=""\} (\d+)$/m), 1, text);
  assert.equal(value(/^broker_forward_total\{identity="metered",outcome="refused",code="BRK_ERR_FORWARD_QUOTA"\} (\d+)$/m), 1);
  assert.equal(value(/^broker_forward_total\{identity="metered",outcome="refused",code="BRK_ERR_FORWARD_PORT"\} (\d+)$/m), 1);
  const down = value(/^broker_forward_bytes_total\{identity="metered",direction="down"\} (\d+)$/m);
  assert.ok(down >= 1024 * 1024 && down < BIG.length, `down bytes ${down}`);
  const alert = b.logs.of('error').find((l) => l.event === 'alert' && l.alert === 'forward_quota_spent');
  assert.ok(alert, 'forward_quota_spent raised');
  assert.equal(alert.principal, 'metered');
  assert.equal(b.logs.of('error').filter((l) => l.event === 'alert' && l.alert === 'forward_quota_spent').length, 1, 'once per dedup window');
});

test('stopping the broker cuts open tunnels at once', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('stopper', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const socket = await hold(t, b.forwardPort, pki.ca, a, `127.0.0.1:${dest.port}`);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await within(b.broker.close(), 10_000, 'the broker stops with a tunnel open');
  await within(closed, 10_000, 'the tunnel is cut');
});
