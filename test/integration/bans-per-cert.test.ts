/**
 * One stale certificate does not lock out its neighbours (issue 15). A handshake refused with a
 * certificate this broker's CA issued (revoked, expired, wrong usage) counts against that
 * certificate's fingerprint at that address: its ban refuses only that certificate from that
 * address, right after the handshake. Anonymous failures (a certificate from a foreign CA, none at
 * all) count against the address alone: their ban refuses every client from it at accept.
 *
 * The refused certificates are presented on the certificate-optional listener, where the broker
 * refuses after the handshake with the certificate still in hand (on the main listener Node
 * destroys the socket before the broker sees the certificate, unless tls.refusal answers in HTTP).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { within } from '../helpers/within.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';

const BANS = { enabled: true, window: '1m', failedHandshakes: 20, duration: '1m' };

async function setup(t: TestContext) {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }],
    listenCertOptional: { host: '127.0.0.1', port: 0 },
    bans: BANS,
  });
  const alice = await pki.issue('alice', ['user']);
  const optionalPort = (b.broker.optionalServer?.address() as { port: number }).port;
  return { pki, up, b, alice, optionalPort };
}

/** One handshake with `id` on `port` (the broker refuses it): resolves when the connection is gone. */
async function refusedHandshake(port: number, pki: TestPki, id: Identity): Promise<void> {
  const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port, ca: pki.ca, cert: id.cert, key: id.key });
  socket.on('error', () => {});
  // With tls.refusal http (the default) the broker answers the first request with the reason, then closes.
  socket.once('secureConnect', () => socket.write('GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n'));
  socket.resume(); // read the answer, so that its end closes the socket
  await within(new Promise((resolve) => socket.once('close', resolve)), 5_000, 'refused connection closed');
}

const fingerprintOf = (id: Identity) => new X509Certificate(id.cert).fingerprint256.replaceAll(':', '').toLowerCase();

async function status(b: RunningBroker, port: number, pki: TestPki, id: Identity, path: string): Promise<number> {
  return (await request(port, { id, ca: pki.ca, path })).status;
}

for (const listener of ['certificate-optional', 'main'] as const) {
  test(`${listener} listener: 20 refused handshakes of a revoked certificate at 127.0.0.1 ban that certificate there, not a valid identity from the same address`, async (t) => {
  const s = await setup(t);
  const port = listener === 'main' ? s.b.port : s.optionalPort;
  const mallory = await s.pki.issue('mallory', ['user']);
  await s.pki.revoke('mallory');
  await s.b.broker.reload();
  const fingerprint = fingerprintOf(mallory);
  for (let i = 0; i < 20; i++) await refusedHandshake(port, s.pki, mallory);
  const ban = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.banKey, 'cert', JSON.stringify(ban));
  assert.equal(ban.fingerprint, fingerprint);
  assert.equal(ban.remoteIp, '127.0.0.1');
  assert.equal(ban.count, 20);
  assert.equal(ban.reason, 'failed handshakes');
  // Its next handshake is refused because of the ban, right after the handshake.
  await refusedHandshake(port, s.pki, mallory);
  const refused = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'handshake' && l.reason === 'banned');
  assert.equal(refused.banKey, 'cert');
  assert.equal(refused.fingerprint, fingerprint);
  assert.equal(s.b.broker.guard.refusedCertBans, 1);
  // A valid identity from the same address is served, on both listeners.
  assert.equal(await status(s.b, s.b.port, s.pki, s.alice, '/api/main'), 200);
  assert.equal(await status(s.b, s.optionalPort, s.pki, s.alice, '/api/optional'), 200);
  assert.equal(s.b.broker.guard.refused.banned, 0, 'nothing refused at accept');
  assert.deepEqual(s.up.seen.map((r) => r.url), ['/api/main', '/api/optional']);
});
}

test('an expired certificate from our CA is banned on its own fingerprint too', async (t) => {
  const s = await setup(t);
  const day = 86_400_000;
  const stale = await s.pki.custom({ name: 'stale', roles: ['user'], notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) });
  for (let i = 0; i < 20; i++) await refusedHandshake(s.optionalPort, s.pki, stale);
  assert.equal((await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'handshake' && l.outcome === 'refused')).reason, 'expired');
  const ban = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.banKey, 'cert', JSON.stringify(ban));
  assert.equal(ban.fingerprint, fingerprintOf(stale));
  assert.equal(await status(s.b, s.b.port, s.pki, s.alice, '/api/ok'), 200);
});

test('20 anonymous refused handshakes (a foreign CA\'s certificate) ban the address: a valid identity is then refused at accept', async (t) => {
  const s = await setup(t);
  const foreign = await makePki(t);
  const stranger = await foreign.issue('stranger', ['user']);
  // The foreign CA has the same names as ours: only the signature tells its certificates apart.
  assert.equal(new X509Certificate(stranger.cert).issuer, new X509Certificate(s.alice.cert).issuer);
  for (let i = 0; i < 20; i++) await refusedHandshake(s.optionalPort, s.pki, stranger);
  const ban = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.banKey, 'ip', JSON.stringify(ban));
  assert.equal(ban.fingerprint, undefined);
  assert.equal(ban.remoteIp, '127.0.0.1');
  assert.equal(ban.count, 20);
  await assert.rejects(request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/x' }));
  assert.equal((await s.b.logs.waitFor((l) => l.event === 'accept')).reason, 'banned');
  assert.ok(s.b.broker.guard.refused.banned >= 1);
  assert.deepEqual(s.up.seen, []);
});

test('with Redis, a certificate ban decided by replica A is enforced by replica B and by a replica started later, on that certificate only', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const raw = {
    routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }],
    listenCertOptional: { host: '127.0.0.1', port: 0 },
    rateLimit: { store: redis.url, rate: 1000, per: '1s', burst: 1000 },
    bans: BANS,
  };
  const alice = await pki.issue('alice', ['user']);
  const mallory = await pki.issue('mallory', ['user']);
  await pki.revoke('mallory');
  const a = await startBroker(t, pki, raw);
  const b = await startBroker(t, pki, raw);
  const optionalOf = (x: RunningBroker) => (x.broker.optionalServer?.address() as { port: number }).port;
  const fingerprint = fingerprintOf(mallory);
  for (let i = 0; i < 20; i++) await refusedHandshake(optionalOf(a), pki, mallory);
  const ban = await a.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  assert.equal(ban.banKey, 'cert', JSON.stringify(ban));
  assert.equal(ban.fingerprint, fingerprint);
  // The failure count and the ban are kept under keys with the fingerprint in them.
  const keys = await redisKeys(redis.port, 'broker:*');
  assert.ok(keys.includes(`broker:ban:cert:${fingerprint}@127.0.0.1`), keys.join(' '));
  assert.ok(keys.includes(`broker:fail:handshake:cert:${fingerprint}@127.0.0.1`), keys.join(' '));
  assert.ok(!keys.includes('broker:ban:127.0.0.1'), 'no address ban');
  const c = await startBroker(t, pki, raw);
  for (const x of [b, c]) {
    await eventuallyBanned(x, pki, mallory, optionalOf(x));
    assert.equal(await status(x, x.port, pki, alice, '/api/ok'), 200);
    assert.equal(x.broker.guard.refused.banned, 0);
  }
});

/** Retries mallory's handshake on `x` until `x` refuses it for the ban (B hears of it over pub/sub). */
async function eventuallyBanned(x: RunningBroker, pki: TestPki, id: Identity, port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (x.broker.guard.refusedCertBans === 0) {
    if (Date.now() >= deadline) assert.fail('the replica did not refuse the banned certificate within 10 s');
    await refusedHandshake(port, pki, id);
  }
  const line = await x.logs.waitFor((l) => l.log === 'auth' && l.reason === 'banned');
  assert.equal(line.banKey, 'cert');
}

/** KEYS over a raw RESP connection (the test reads what the broker wrote, with no client library of its own). */
function redisKeys(port: number, pattern: string): Promise<string[]> {
  return within(
    new Promise((resolve, reject) => {
      const s = netConnect(port, '127.0.0.1');
      let text = '';
      s.on('error', reject);
      s.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        const m = /^\*(\d+)\r\n/.exec(text);
        if (!m) return;
        const parts = text.split('\r\n').filter((p, i) => i > 0 && !p.startsWith('$') && p !== '');
        if (parts.length >= Number(m[1])) {
          s.destroy();
          resolve(parts.slice(0, Number(m[1])));
        }
      });
      s.write(`*2\r\n$4\r\nKEYS\r\n$${pattern.length}\r\n${pattern}\r\n`);
    }),
    5_000,
    'redis KEYS',
  );
}
