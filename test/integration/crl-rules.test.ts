/**
 * How a running broker takes in CRLs and revocation sets:
 * - an older CRL put back in place is refused (CRL numbers, per issuing CA): the certificates it
 *   would revive stay refused, and the reload says BRK_ERR_TLS_CRL_ROLLBACK;
 * - a revocation (a new CRL, a key revoked in keys.json) is applied although the config file
 *   beside it is broken: the reload reports the config problem and still closes the revoked
 *   identity's open connection and refuses its next handshake / its key.
 * Keep-alive connections are kept open for a minute (timeouts.keepAlive), so one that closes within
 * the 5 s deadline was closed by the revocation, not by idleness.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { LENIENT, captureLoggers, makePki, openConnection, request, startBroker, startUpstream, type Identity, type LogSink, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { within } from '../helpers/within.ts';
import { loadConfig } from '../../src/config/index.ts';
import { keysFile } from '../../src/auth/index.ts';
import { materialFiles } from '../../src/tls/material.ts';
import { watchFiles } from '../../src/tls/watch.ts';
import { buildBroker, type Broker } from '../../src/server.ts';
import { createCrl } from '../../src/pki/certs.ts';
import { crlPem } from '../../src/pki/crl.ts';
import { createKey, revokeKey } from '../../src/pki/credentials.ts';

const LONG_KEEPALIVE = { timeouts: { keepAlive: '60s' } };


/** Refused for its certificate: with tls.refusal http (the default) the one request is answered 495, never forwarded. */
const refusedAtHandshake = async (port: number, pki: TestPki, id: Identity, who: string) => {
  const res = await request(port, { id, ca: pki.ca, path: '/api/again' });
  assert.equal(res.status, 495, `${who}: a new connection is refused: ${res.text}`);
};

/** The intermediate's CRL (the bundle's first block) and the rest of the bundle (the root's). */
function splitBundle(bundle: string): { intermediate: string; rest: string } {
  const blocks = [...bundle.matchAll(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----\n?/g)].map((m) => m[0]);
  return { intermediate: blocks[0] as string, rest: blocks.slice(1).join('') };
}

test('an older CRL put back in place is refused with BRK_ERR_TLS_CRL_ROLLBACK: both revoked certificates stay refused, others carry on', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...LONG_KEEPALIVE, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const [ann, bob, carol] = [await pki.issue('ann', ['user']), await pki.issue('bob', ['user']), await pki.issue('carol', ['user'])];
  const bundleFile = pki.store.layout.crlBundle;

  await pki.revoke('ann');
  const crlN = readFileSync(bundleFile, 'utf8'); // CRL n: ann
  assert.equal((await b.broker.reload()).ok, true);
  await pki.revoke('bob');
  const crlN1 = readFileSync(bundleFile, 'utf8'); // CRL n+1: ann and bob
  assert.equal((await b.broker.reload()).ok, true);
  const carolConn = await openConnection(t, b.port, pki.ca, carol, '/api/1');

  writeFileSync(bundleFile, crlN); // the older CRL, still before its nextUpdate, put back
  const r = await b.broker.reload();
  assert.equal(r.ok, false, 'the reload is refused');
  assert.ok(r.problems.some((p) => /^BRK_ERR_TLS_CRL_ROLLBACK: .*crl\.pem: the CRL of ".*Issuing CA.*" has number \d+, not above the loaded number \d+, and no longer lists 1 revoked serial \(/.test(p)), r.problems.join('\n'));
  const logged = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'reload' && l.outcome === 'failed');
  assert.equal(logged.code, 'BRK_ERR_TLS_CRL_ROLLBACK');
  assert.ok(b.broker.material.revoked.has(ann.serial) && b.broker.material.revoked.has(bob.serial), 'the loaded CRL keeps serving');
  await refusedAtHandshake(b.port, pki, ann, 'ann');
  await refusedAtHandshake(b.port, pki, bob, 'bob (the rollback would have revived bob)');
  assert.equal(await carolConn.get('/api/2'), 200, "carol's open connection still serves");
  assert.equal((await request(b.port, { id: carol, ca: pki.ca, path: '/api/3' })).status, 200);

  // The current CRL back in place (the same bytes) is fine again.
  writeFileSync(bundleFile, crlN1);
  const back = await b.broker.reload();
  assert.equal(back.ok, true, back.problems.join('\n'));
});

test('CRL order per issuer: the same number with a serial dropped is refused; a lower number that is newer and drops nothing is accepted with a warning', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const [ann, bob] = [await pki.issue('ann', ['user']), await pki.issue('bob', ['user'])];
  await pki.revoke('ann');
  await pki.revoke('bob');
  assert.equal((await b.broker.reload()).ok, true);
  const bundleFile = pki.store.layout.crlBundle;
  const { rest } = splitBundle(readFileSync(bundleFile, 'utf8'));
  const inv = pki.store.readInventory();
  const keys = await pki.store.loadKeys(inv);
  const sign = async (number: number, serials: string[]) =>
    crlPem(await createCrl({ issuer: keys.intermediate, number, entries: serials.map((serial) => ({ serial, revokedAt: new Date() })), validityMs: 86_400_000 }));

  // Same number as the loaded CRL, other content: only ann.
  writeFileSync(bundleFile, (await sign(inv.ca.crlNumber.intermediate, [ann.serial])) + rest);
  const same = await b.broker.reload();
  assert.equal(same.ok, false);
  assert.ok(same.problems.some((p) => p.startsWith('BRK_ERR_TLS_CRL_ROLLBACK: ') && p.includes(`no longer lists 1 revoked serial (${bob.serial})`)), same.problems.join('\n'));
  await refusedAtHandshake(b.port, pki, bob, 'bob');

  // A CA that restarted its numbering (as the CRL of a rotated-out issuing CA does): number 1, newer, both serials.
  writeFileSync(bundleFile, (await sign(1, [ann.serial, bob.serial])) + rest);
  const renumbered = await b.broker.reload();
  assert.equal(renumbered.ok, true, renumbered.problems.join('\n'));
  const warned = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'crl');
  assert.match(String(warned.msg), /has number 1 \(loaded: number \d+\) but is not older and revokes everything the loaded one did; accepted/);
  await refusedAtHandshake(b.port, pki, ann, 'ann');
  await refusedAtHandshake(b.port, pki, bob, 'bob');
});

interface FileBroker {
  broker: Broker;
  port: number;
  optionalPort: number;
  logs: LogSink;
  configFile: string;
  raw: Record<string, unknown>;
}

/** A broker started from a config FILE that its reloads re-read (as `broker serve` does). */
async function startFromFile(t: TestContext, pki: TestPki, raw: Record<string, unknown>): Promise<FileBroker> {
  const configFile = join(tempDir(t), 'broker.json');
  const full = { listen: { host: '127.0.0.1', port: 0 }, listenCertOptional: { host: '127.0.0.1', port: 0 }, admin: { port: 0 }, pki: { dir: pki.dir }, tls: { server: 'localhost' }, ...LENIENT, ...LONG_KEEPALIVE, ...raw };
  writeFileSync(configFile, JSON.stringify(full, null, 2));
  const { loggers, sink } = captureLoggers();
  const broker = await buildBroker(loadConfig(configFile).config, { loggers, reloadSource: () => loadConfig(configFile).config });
  const addr = await broker.listen();
  t.after(() => broker.close());
  return { broker, port: addr.port, optionalPort: (broker.optionalServer?.address() as AddressInfo).port, logs: sink, configFile, raw: full };
}

/** The config file with an error in it: a route whose upstream is not a URL. */
function breakConfig(f: FileBroker): void {
  writeFileSync(f.configFile, JSON.stringify({ ...f.raw, routes: [...(f.raw.routes as object[]), { name: 'broken', path: '/broken', upstream: 'not a url', roles: ['user'] }] }, null, 2));
}

test('a certificate revoked while the config file is broken: the reload reports the config problem, and still closes its open connection and refuses its handshake', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const f = await startFromFile(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const [mallory, alice] = [await pki.issue('mallory', ['user']), await pki.issue('alice', ['user'])];
  const mc = await openConnection(t, f.port, pki.ca, mallory, '/api/1');
  const ac = await openConnection(t, f.port, pki.ca, alice, '/api/1');
  const closed = once(mc.socket, 'close');

  breakConfig(f);
  await pki.revoke('mallory');
  const r = await f.broker.reload(undefined, 'test');
  assert.equal(r.ok, false, 'the config part is refused');
  assert.ok(r.problems.some((p) => p.includes('broker.json has 1 problem')), r.problems.join('\n'));
  await within(closed, 5_000, "mallory's keep-alive connection closing");
  await refusedAtHandshake(f.port, pki, mallory, 'mallory');
  assert.equal(r.revoked, 1, 'the revocation is applied all the same');
  assert.equal(await ac.get('/api/2'), 200, "alice's open connection still serves");
  assert.equal(f.broker.config.routes.length, 1, 'the broken config was not taken');

  const refused = await f.logs.waitFor((l) => l.log === 'error' && l.event === 'reload' && l.outcome === 'failed');
  assert.equal(refused.code, 'BRK_ERR_CONFIG_INVALID');
  const applied = await f.logs.waitFor((l) => l.log === 'audit' && l.event === 'revocation' && l.outcome === 'applied');
  assert.deepEqual(applied.revoked, [mallory.serial]);
  assert.equal(applied.closedConnections, 1);
});

test('an API key revoked with keys revoke while the config file is broken is refused after the reload', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const f = await startFromFile(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }, { name: 'keys', path: '/k', upstream: up.url, roles: ['billing'], auth: ['apiKey'] }] });
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  const other = await createKey(pki.store, { name: 'beta', roles: ['billing'], kind: 'apiKey' });
  assert.equal((await f.broker.reload()).ok, true);
  const withKey = (secret: string) => request(f.optionalPort, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': secret } });
  assert.equal((await withKey(key.secret)).status, 200, 'the key works (and is now in the success cache)');

  breakConfig(f);
  await revokeKey(pki.store, key.record.id);
  const r = await f.broker.reload(undefined, 'test');
  assert.equal(r.ok, false);
  assert.ok(r.problems.some((p) => p.includes('broker.json has 1 problem')), r.problems.join('\n'));
  const refused = await withKey(key.secret);
  assert.equal(refused.status, 401, refused.text);
  assert.equal(refused.json().code, 'BRK_ERR_AUTH_INVALID');
  assert.equal(r.revokedKeys, 1);
  assert.equal((await withKey(other.secret)).status, 200, 'another key still works');
  const applied = await f.logs.waitFor((l) => l.log === 'audit' && l.event === 'revocation' && l.outcome === 'applied');
  assert.deepEqual(applied.revokedKeys, [key.record.id]);
});

test('through the file watcher (as broker serve wires it): a broken config file, then pki revoke and keys revoke, and both revocations are in force', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const f = await startFromFile(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }, { name: 'keys', path: '/k', upstream: up.url, roles: ['billing'], auth: ['apiKey'] }] });
  const key = await createKey(pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  assert.equal((await f.broker.reload()).ok, true);
  const watcher = watchFiles([f.configFile, ...Object.values(materialFiles(f.broker.config)), keysFile(f.broker.config)], 50, (what) => void f.broker.reload(undefined, `file change: ${what}`));
  t.after(() => watcher.close());
  const mallory = await pki.issue('mallory', ['user']);
  const mc = await openConnection(t, f.port, pki.ca, mallory, '/api/1');
  const closed = once(mc.socket, 'close');
  const withKey = () => request(f.optionalPort, { ca: pki.ca, path: '/k/x', headers: { 'x-api-key': key.secret } });
  assert.equal((await withKey()).status, 200);

  breakConfig(f);
  await f.logs.waitFor((l) => l.log === 'error' && l.event === 'reload' && l.outcome === 'failed' && String(l.problems).includes('broker.json has 1 problem'), 10_000);
  await pki.revoke('mallory');
  await within(closed, 10_000, "mallory's keep-alive connection closing after the watcher's reload");
  await refusedAtHandshake(f.port, pki, mallory, 'mallory');
  await revokeKey(pki.store, key.record.id);
  await f.logs.waitFor((l) => l.log === 'audit' && l.event === 'revocation' && l.outcome === 'applied' && Array.isArray(l.revokedKeys) && l.revokedKeys.includes(key.record.id), 10_000);
  assert.equal((await withKey()).status, 401, 'the revoked key is refused');
  assert.equal(f.broker.config.routes.length, 2, 'the broken config was never taken');
});
