/**
 * The admin listener against browsers and look-alike names: a Host it does not expect is refused
 * (421: DNS rebinding cannot read /metrics), a state-changing request needs X-Broker-Admin: 1 or the
 * token and no foreign Origin (a cross-site POST /reload does nothing), and "loopback" is decided
 * on parsed addresses (config check refuses admin.host: 127.attacker.example without a token).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki, startBroker } from '../helpers/broker.ts';
import { adminPort, adminPost, httpGet, httpRequest } from '../helpers/admin.ts';
import { tempDir } from '../helpers/cli.ts';
import { validateConfig } from '../../src/config/index.ts';

/** Admin audit lines of reloads asked for on the admin listener. */
const reloads = (b: Awaited<ReturnType<typeof startBroker>>) => b.logs.of('audit').filter((l) => l.event === 'admin' && l.action === 'reload').length;

test('a cross-site POST /reload (foreign Origin, text/plain, no custom header) is refused and reloads nothing', async (t) => {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, {});
  const port = adminPort(b);
  const self = `http://127.0.0.1:${port}`;

  const refused: Array<[string, Record<string, string>]> = [
    ['a simple cross-site form/fetch', { origin: 'https://evil.example', 'content-type': 'text/plain' }],
    ['a foreign Origin, with the custom header', { origin: 'https://evil.example', 'x-broker-admin': '1' }],
    ['Origin null (sandboxed page), with the custom header', { origin: 'null', 'x-broker-admin': '1' }],
    ['another port of this host', { origin: 'http://127.0.0.1:1', 'x-broker-admin': '1' }],
    ['no Origin and no custom header (curl without it)', {}],
    ['the custom header with another value', { 'x-broker-admin': 'yes' }],
  ];
  for (const [what, headers] of refused) {
    const res = await httpRequest(port, { method: 'POST', path: '/reload', headers, body: 'x' });
    assert.equal(res.status, 403, `${what}: ${res.text}`);
    assert.equal(res.json().code, 'BRK_ERR_ADMIN_CROSS_SITE', what);
  }
  assert.equal(reloads(b), 0, 'no reload happened');

  // What the repo's own callers send: the custom header, and (from the admin's own page) its own Origin.
  assert.equal((await adminPost(port, '/reload')).status, 200);
  assert.equal((await adminPost(port, '/reload', { origin: self })).status, 200);
  assert.equal(reloads(b), 2);
  // Reading stays as it was: GET needs no custom header.
  assert.equal((await httpGet(port, '/metrics')).status, 200);
});

test('with admin.tokenFile, the token stands in for the custom header, and a foreign Origin is refused even with it', async (t) => {
  const pki = await makePki(t);
  const token = 't0ken-for-the-admin';
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const b = await startBroker(t, pki, { admin: { host: '127.0.0.1', port: 0, tokenFile } });
  const port = adminPort(b);
  const bearer = { authorization: `Bearer ${token}` };
  assert.equal((await httpRequest(port, { method: 'POST', path: '/reload', headers: bearer })).status, 200);
  const foreign = await httpRequest(port, { method: 'POST', path: '/reload', headers: { ...bearer, origin: 'https://evil.example' } });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.json().code, 'BRK_ERR_ADMIN_CROSS_SITE');
  assert.equal((await adminPost(port, '/reload')).status, 401, 'the custom header is no substitute for the token');
});

test('the admin listener answers only Hosts no DNS-rebinding page can present: IP addresses, localhost, admin.allowedHosts', async (t) => {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, { admin: { host: '127.0.0.1', port: 0, allowedHosts: ['broker-admin.internal'] } });
  const port = adminPort(b);
  const cases: Array<[host: string, status: number]> = [
    [`evil.example:${port}`, 421],
    ['evil.example', 421],
    [`127.attacker.example:${port}`, 421],
    [`localhost.evil.example:${port}`, 421],
    [`other.internal:${port}`, 421],
    ['<x>', 421],
    [`127.0.0.1:${port}`, 200],
    [`localhost:${port}`, 200],
    ['localhost', 200],
    [`[::1]:${port}`, 200],
    [`BROKER-ADMIN.internal:${port}`, 200],
    // Reached by address: no name to rebind (a port forward changes the port, not the risk).
    ['10.0.0.7:19901', 200],
  ];
  for (const path of ['/metrics', '/readyz', '/healthz']) {
    for (const [host, status] of cases) {
      const res = await httpGet(port, path, { host });
      assert.equal(res.status, status, `${path} Host ${host}: ${res.text.slice(0, 200)}`);
      if (status === 421) {
        assert.equal(res.json().code, 'BRK_ERR_ADMIN_HOST');
        assert.doesNotMatch(res.text, /broker_/);
      }
    }
  }
  const post = await httpRequest(port, { method: 'POST', path: '/reload', headers: { host: `evil.example:${port}`, 'x-broker-admin': '1' } });
  assert.equal(post.status, 421);
  assert.equal(reloads(b), 0);
});

test('config check decides "loopback" on parsed addresses: 127.attacker.example needs a token', async (t) => {
  const pki = await makePki(t);
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, 'token\n', { mode: 0o600 });
  const problems = (admin: Record<string, unknown>) => validateConfig({ pki: { dir: pki.dir }, tls: { server: 'localhost' }, admin }, pki.dir).problems;
  for (const host of ['127.attacker.example', '127.0.0.1.nip.io', '127.1', 'localhost.evil.example', '::ffff:10.0.0.1', '::2', '[::1].evil']) {
    assert.deepEqual(problems({ host }), [`admin.host: ${host} is beyond loopback; set admin.tokenFile so the admin endpoints require a token`], host);
    assert.deepEqual(problems({ host, tokenFile }), [], `${host} with a token`);
  }
  for (const host of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) {
    assert.deepEqual(problems({ host }), [], host);
  }
  assert.ok(problems({ allowedHosts: ['evil.example/x'] }).some((p) => p.startsWith('admin.allowedHosts')), 'allowedHosts are names');
});
