/**
 * The operator console's JSON API (issue 20) against a real broker: its views report what the test
 * did (names, roles, expiry dates from the inventory, the requests and refusals it sent, the live
 * series, the audit log with its chain), and its actions take effect on the running broker: a
 * certificate revoked from the console is refused at its next handshake, a revoked API key at its
 * next request, a lifted ban lets the address in again; each leaves an audit line. The admin token
 * and the admin listener's rules apply; `admin.console: false` turns it all off.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { request as httpRequest } from 'node:http';
import { makePki, openConnection, request, startBroker, startUpstream, type RunningBroker } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { redisMissing, startRedis } from '../helpers/redis.ts';
import { within } from '../helpers/within.ts';
import { createKey } from '../../src/pki/credentials.ts';
import { issueClient } from '../../src/pki/issue.ts';
import { createInvitation } from '../../src/pki/invitations.ts';
import type { CertificatesView, ChangesView, LiveView, PartnersView, ActionResult } from '../../src/console/model.ts';

const TOKEN = 'console-test-token';
const PASS = 'console-test-passphrase';

function adminPort(b: RunningBroker): number {
  return (b.broker.admin?.server.address() as AddressInfo).port;
}

function api<T>(b: RunningBroker, path: string, o: { method?: string; body?: unknown; token?: string | null; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { ...o.headers };
  const token = o.token === undefined ? TOKEN : o.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const data = o.body === undefined ? undefined : JSON.stringify(o.body);
  if (data !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: adminPort(b), path, method: o.method ?? 'GET', headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : undefined) as T });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('admin request timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const action = (b: RunningBroker, name: string, body: unknown, o: { token?: string | null; headers?: Record<string, string> } = {}) =>
  api<ActionResult & { code?: string }>(b, `/api/console/actions/${name}`, { method: 'POST', body, ...o });

async function setup(t: TestContext, admin: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const pki = await makePki(t, { passphrase: PASS });
  const dir = tempDir(t, 'console-');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const passFile = join(dir, 'pass');
  writeFileSync(passFile, `${PASS}\n`);
  const up = await startUpstream(t);
  const alice = await pki.issue('alice', ['user']);
  const bob = await pki.issue('bob', ['other']);
  await issueClient(pki.store, { name: 'carol', roles: ['user', 'audit'], ttlMs: 2 * 86_400_000, passphrase: PASS, contact: 'carol@example.com', outDir: join(dir, 'carol') });
  const key = await createKey(pki.store, { name: 'acme', roles: ['user'], kind: 'apiKey' });
  const b = await startBroker(t, pki, {
    listenCertOptional: { host: '127.0.0.1', port: 0 },
    admin: Object.fromEntries(Object.entries({ port: 0, tokenFile, consolePassphraseFile: passFile, ...admin }).filter(([, v]) => v !== undefined)),
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'keys', path: '/k', upstream: up.url, roles: ['user'], auth: ['apiKey'] },
    ],
    ...extra,
  });
  const opt = (b.broker.optionalServer?.address() as AddressInfo).port;
  return { pki, up, alice, bob, key, b, opt };
}

test('the console API reports the partners, certificates, traffic and changes the test made', async (t) => {
  const { pki, alice, bob, key, b, opt } = await setup(t);
  const invited = await createInvitation(pki.store, { name: 'dave', roles: ['user'], expiresMs: 86_400_000, certTtlMs: 86_400_000, contact: 'dave@example.com' });
  for (let i = 0; i < 5; i++) assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: `/api/${i}` })).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/no' })).status, 403);
  for (let i = 0; i < 2; i++) assert.equal((await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } })).status, 200);

  const inv = pki.store.readInventory();
  const certOf = (name: string) => inv.certs.find((c) => c.name === name && c.type === 'client');

  const partners = await api<PartnersView>(b, '/api/console/partners');
  assert.equal(partners.status, 200);
  const byName = new Map(partners.body.partners.map((p) => [p.name, p]));
  assert.deepEqual([...byName.keys()], ['acme', 'alice', 'bob', 'carol']);
  const a = byName.get('alice');
  assert.ok(a);
  assert.deepEqual(a.roles, ['user']);
  assert.deepEqual(a.requests, { hour: 5, day: 5 });
  assert.deepEqual(a.refusals, { hour: 0, day: 0 });
  assert.ok(a.lastSeen !== null && Date.now() - Date.parse(a.lastSeen) < 600_000);
  assert.deepEqual(a.credentials, [{ kind: 'certificate', id: alice.serial, status: 'valid', notAfter: certOf('alice')?.notAfter, fingerprint: certOf('alice')?.fingerprint }]);
  assert.ok(a.rateLimit && a.rateLimit.limit > 0 && a.rateLimit.remaining <= a.rateLimit.limit, JSON.stringify(a.rateLimit));
  assert.equal(a.openConnections, 0, 'every request above ran on its own connection, closed since');
  const kept = await openConnection(t, b.port, pki.ca, alice, '/api/kept');
  const withOne = new Map((await api<PartnersView>(b, '/api/console/partners')).body.partners.map((p) => [p.name, p]));
  assert.equal(withOne.get('alice')?.openConnections, 1);
  assert.deepEqual(withOne.get('alice')?.requests, { hour: 6, day: 6 });
  kept.agent.destroy();
  const bp = byName.get('bob');
  assert.deepEqual(bp?.requests, { hour: 0, day: 0 });
  assert.deepEqual(bp?.refusals, { hour: 3, day: 3 });
  const carol = byName.get('carol');
  assert.equal(carol?.contact, 'carol@example.com');
  assert.deepEqual(carol?.roles, ['audit', 'user']);
  assert.equal(carol?.lastSeen, null);
  assert.equal(carol?.rateLimit, null, 'never used since start');
  const acme = byName.get('acme');
  assert.deepEqual(acme?.credentials, [{ kind: 'apiKey', id: key.record.id, status: 'valid', notAfter: null }]);
  assert.deepEqual(acme?.requests, { hour: 2, day: 2 });

  const certs = await api<CertificatesView>(b, '/api/console/certificates');
  assert.equal(certs.status, 200);
  const tl = certs.body.timeline;
  assert.deepEqual(tl.map((i) => i.notAfter), [...tl.map((i) => i.notAfter)].sort((x, y) => Date.parse(x) - Date.parse(y)), 'soonest first');
  assert.deepEqual(tl.find((i) => i.kind === 'root'), { kind: 'root', name: 'Test CA root', serial: inv.ca.root.serial, notAfter: inv.ca.root.notAfter, retiring: false });
  assert.equal(tl.find((i) => i.kind === 'intermediate')?.notAfter, inv.ca.intermediate.notAfter);
  assert.equal(tl.find((i) => i.kind === 'client' && i.name === 'carol')?.notAfter, certOf('carol')?.notAfter);
  assert.equal(tl.find((i) => i.kind === 'server')?.name, 'localhost');
  assert.equal(tl.find((i) => i.kind === 'crl')?.notAfter, b.broker.material.crlNextUpdate?.toISOString());
  assert.deepEqual(certs.body.invitations, [{ id: invited.record.id, name: 'dave', roles: ['user'], status: 'open', expiresAt: invited.record.expires, contact: 'dave@example.com' }]);

  const live = await api<LiveView>(b, '/api/console/live');
  assert.equal(live.status, 200);
  assert.equal(live.body.intervalSeconds, 10);
  assert.equal(live.body.series.length, 90);
  const total = (f: (p: LiveView['series'][number]) => number) => Math.round(live.body.series.reduce((n, p) => n + f(p) * live.body.intervalSeconds, 0));
  assert.equal(total((p) => p.requestsPerSecond), 11, '6 by alice, 3 by bob, 2 with the API key');
  assert.equal(total((p) => p.errorsPerSecond), 0);
  assert.equal(total((p) => p.handshakesPerSecond), 11, 'one connection per request');
  assert.ok(live.body.series.some((p) => p.p50Ms !== null && p.p99Ms !== null && p.p99Ms >= p.p50Ms));
  const refusals = live.body.refusals;
  assert.equal(refusals.length, 3);
  for (const r of refusals) {
    assert.equal(r.principal, 'bob');
    assert.equal(r.code, 'BRK_ERR_ACL_DENIED');
    assert.match(r.reason, /403 on route api/);
    assert.ok(r.reqId);
    assert.deepEqual(r.certificate, { subject: r.certificate?.subject, serial: bob.serial, fingerprint: certOf('bob')?.fingerprint });
    assert.match(r.certificate?.subject ?? '', /bob/);
  }
  assert.deepEqual(live.body.bans, []);

  const changes = await api<ChangesView>(b, '/api/console/changes');
  assert.equal(changes.status, 200);
  assert.deepEqual(changes.body.chain, { ok: true, lines: changes.body.chain.lines, problem: null });
  assert.ok(changes.body.chain.lines >= 6);
  const kinds = changes.body.changes.map((c) => c.kind);
  assert.equal(kinds.filter((k) => k === 'issue').length, 3, JSON.stringify(kinds));
  assert.ok(kinds.includes('init') && kinds.includes('keys-create'), JSON.stringify(kinds));
  assert.ok(changes.body.changes.some((c) => c.kind === 'issue' && /name=carol/.test(c.detail)));
});

test('console actions: a revoked certificate is refused at its next handshake, a revoked key at its next request, each audited', async (t) => {
  const { pki, alice, key, b, opt } = await setup(t);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/1' })).status, 200);

  const r = await action(b, 'revoke-certificate', { serial: alice.serial });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.ok, true);
  assert.equal(r.body.target, alice.serial);
  const refused = await request(b.port, { id: alice, ca: pki.ca, path: '/api/2' });
  assert.equal(refused.status, 495, 'the next handshake is refused');
  assert.equal(refused.json().reason, 'certificate revoked');
  const after = (await api<PartnersView>(b, '/api/console/partners')).body.partners.find((p) => p.name === 'alice');
  assert.deepEqual(after?.refusals, { hour: 1, day: 1 }, 'the refused handshake counts against alice');
  assert.equal(after?.credentials[0]?.status, 'revoked');
  const lastRefusal = (await api<LiveView>(b, '/api/console/live')).body.refusals[0];
  assert.equal(lastRefusal?.code, 'BRK_ERR_TLS_CLIENT_CERT_REFUSED');
  assert.equal(lastRefusal?.certificate?.serial, alice.serial);
  const again = await action(b, 'revoke-certificate', { serial: alice.serial });
  assert.equal(again.status, 404);
  assert.equal(again.body.code, 'BRK_ERR_CONSOLE_NOT_FOUND');

  assert.equal((await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } })).status, 200);
  const k = await action(b, 'revoke-credential', { id: key.record.id });
  assert.equal(k.status, 200, JSON.stringify(k.body));
  assert.equal((await request(opt, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } })).status, 401, 'the key is refused at its next request');

  const changes = await api<ChangesView>(b, '/api/console/changes');
  assert.equal(changes.body.chain.ok, true);
  const revoke = changes.body.changes.find((c) => c.kind === 'revoke');
  assert.equal(revoke?.actor, 'console');
  assert.match(revoke?.detail ?? '', new RegExp(`serial=${alice.serial}`));
  assert.equal(changes.body.changes.find((c) => c.kind === 'keys-revoke')?.actor, 'console');
  assert.ok(changes.body.changes.some((c) => c.kind === 'reload' && c.actor === 'console'), 'the reloads that applied them are listed');
  const audited = b.logs.of('audit').filter((l) => l.event === 'console').map((l) => [l.action, l.outcome]);
  assert.deepEqual(audited, [
    ['revoke-certificate', 'ok'],
    ['revoke-certificate', 'failed'],
    ['revoke-credential', 'ok'],
  ]);

  const reload = await action(b, 'reload', {});
  assert.equal(reload.status, 200);
  assert.equal(reload.body.ok, true);
  const bad = await action(b, 'revoke-certificate', {});
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'BRK_ERR_CONSOLE_BAD_REQUEST');
});

test('console lift-ban: a banned address connects again at once', async (t) => {
  const { pki, alice, bob, b } = await setup(t, {}, { bans: { enabled: true, window: '1m', deniedRequests: 2, failedHandshakes: 1000, duration: '1h' } });
  const far = '127.0.0.2';
  for (let i = 0; i < 2; i++) assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/x', localAddress: far })).status, 403);
  await b.logs.waitFor((l) => l.log === 'auth' && l.event === 'ban');
  await assert.rejects(request(b.port, { id: alice, ca: pki.ca, path: '/api/1', localAddress: far }), 'the address is banned');
  const live = await api<LiveView>(b, '/api/console/live');
  assert.deepEqual(live.body.bans.map((x) => x.key), [far]);
  assert.ok(live.body.refusals.some((r) => r.code === 'ban' && r.remoteIp === far));

  const r = await action(b, 'lift-ban', { key: far });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/2', localAddress: far })).status, 200, 'admitted again');
  assert.deepEqual((await api<LiveView>(b, '/api/console/live')).body.bans, []);
  // the failure count went with the ban: one more denial does not ban again
  assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/x', localAddress: far })).status, 403);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/3', localAddress: far })).status, 200);
  const none = await action(b, 'lift-ban', { key: far });
  assert.equal(none.status, 404);
  assert.ok(b.logs.of('audit').some((l) => l.event === 'console' && l.action === 'lift-ban' && l.target === far && l.outcome === 'ok'));
});

test('the console API keeps the admin rules: no token, a foreign Origin → refused; off with admin.console: false', async (t) => {
  const { alice, b } = await setup(t);
  assert.equal((await api(b, '/api/console/partners', { token: null })).status, 401);
  assert.equal((await action(b, 'revoke-certificate', { serial: alice.serial }, { token: null, headers: { 'x-broker-admin': '1' } })).status, 401);
  assert.equal((await action(b, 'revoke-certificate', { serial: alice.serial }, { token: 'wrong' })).status, 401);
  assert.equal((await action(b, 'reload', {}, { headers: { origin: 'http://evil.example' } })).status, 403);
  assert.equal((await api(b, '/api/console/partners', { headers: { host: 'evil.example' } })).status, 421);
  assert.equal(b.logs.of('audit').filter((l) => l.event === 'console').length, 0, 'no refused request reached an action');

  const off = await setup(t, { console: false });
  assert.equal((await api(off.b, '/api/console/partners')).status, 404);
  assert.equal((await action(off.b, 'reload', {})).status, 404);
  assert.equal(off.b.broker.console, undefined);
});

test('revoke-certificate without a CA passphrase says how to enable it, and changes nothing', async (t) => {
  const { pki, alice, b } = await setup(t, { consolePassphraseFile: undefined });
  const r = await action(b, 'revoke-certificate', { serial: alice.serial });
  assert.equal(r.status, 409);
  assert.equal(r.body.code, 'BRK_ERR_CONSOLE_REVOKE_DISABLED');
  assert.match(r.body.message, /admin\.consolePassphraseFile/);
  assert.equal(pki.store.readInventory().certs.find((c) => c.serial === alice.serial)?.revokedAt, undefined);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/1' })).status, 200);
});

test('console lift-ban with replicas sharing Redis: lifted on every replica', { skip: redisMissing }, async (t) => {
  const redis = await startRedis(t);
  const pki = await makePki(t);
  const dir = tempDir(t, 'console-');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const up = await startUpstream(t);
  const alice = await pki.issue('alice', ['user']);
  const bob = await pki.issue('bob', ['other']);
  const raw = {
    admin: { port: 0, tokenFile },
    routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }],
    rateLimit: { store: redis.url, rate: 1000, per: '1s', burst: 1000 },
    bans: { enabled: true, window: '1m', deniedRequests: 2, failedHandshakes: 1000, duration: '1h' },
  };
  const a = await startBroker(t, pki, raw);
  const b = await startBroker(t, pki, raw);
  const far = '127.0.0.3';
  for (let i = 0; i < 2; i++) assert.equal((await request(a.port, { id: bob, ca: pki.ca, path: '/api/x', localAddress: far })).status, 403);
  await a.logs.waitFor((l) => l.event === 'ban');
  await within(
    (async () => {
      while (!(await api<LiveView>(b, '/api/console/live')).body.bans.some((x) => x.key === far)) await new Promise((r) => setTimeout(r, 50));
    })(),
    10_000,
    'replica B hears the ban',
  );
  await assert.rejects(request(b.port, { id: alice, ca: pki.ca, path: '/api/1', localAddress: far }), 'B refuses the banned address');

  const r = await action(b, 'lift-ban', { key: far });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/2', localAddress: far })).status, 200, 'B admits it at once');
  await within(
    (async () => {
      while ((await api<LiveView>(a, '/api/console/live')).body.bans.length) await new Promise((r) => setTimeout(r, 50));
    })(),
    10_000,
    'replica A hears the lift',
  );
  assert.equal((await request(a.port, { id: alice, ca: pki.ca, path: '/api/3', localAddress: far })).status, 200, 'A admits it too');
  // the shared failure count went with the ban: one more denial on A does not ban again
  assert.equal((await request(a.port, { id: bob, ca: pki.ca, path: '/api/x', localAddress: far })).status, 403);
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/4', localAddress: far })).status, 200);
  // the identity's bucket is read from Redis: the same on both replicas
  for (const r of [a, b]) {
    const p = (await api<PartnersView>(r, '/api/console/partners')).body.partners.find((x) => x.name === 'alice');
    assert.equal(p?.rateLimit?.limit, 1000, JSON.stringify(p));
  }
});
