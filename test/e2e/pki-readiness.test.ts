/**
 * `broker pki readiness` with the built CLI: a broker writes its auth log to a file; a partner
 * connects, the issuing CA is rotated, a second partner issued under the new one connects. The
 * report names the first (with the time it was last seen), not the second, nor an identity that
 * never connected; once the first renews and connects with the new certificate, it has moved on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { json, makeCa, type TestCa } from '../helpers/pki.ts';
import { request, type Identity } from '../helpers/broker.ts';
import { plainUpstream, serve } from '../helpers/serve.ts';
import { eventually } from '../helpers/within.ts';
import type { ReadinessReport } from '../../src/pki/readiness.ts';

type Line = Record<string, unknown>;

function authLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

function issue(ca: TestCa, name: string, args: string[] = [], command = 'issue'): Identity & { serial: string } {
  const r = ca.signing(['pki', command, name, ...(command === 'issue' ? ['--role', 'user'] : []), '--out', name, '--force', '--json', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return { cert: readFileSync(join(ca.root, name, `${name}.crt`), 'utf8'), key: readFileSync(join(ca.root, name, `${name}.key`), 'utf8'), serial: json<{ serial: string }>(r).serial };
}

test('readiness names the identity still on the retiring issuing CA (last seen), not the one on the new CA; after it renews it has moved on', async (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']).code, 0);
  const early = issue(ca, 'early-partner', ['--contact', 'ops@early.example']);
  issue(ca, 'silent-partner'); // from the old CA too, but never connects
  const up = await plainUpstream(t);
  const authFile = join(ca.root, 'auth.log');
  const b = await serve(
    t,
    ca.root,
    ['listen: { host: 127.0.0.1, port: 0 }', 'admin: { enabled: false }', 'pki: { dir: ./pki }', 'tls: { server: localhost }', 'log: { auth: auth.log, access: off, audit: off }', 'reload: { debounce: 50ms }', 'bans: { enabled: false }', 'routes:', `  - { name: api, path: /api, upstream: "${up}", roles: [user] }`, ''].join('\n'),
  );
  const caPem = readFileSync(ca.file('ca.crt'), 'utf8');
  const get = async (id: Identity) => (await request(b.port, { id, ca: caPem, path: '/api/x' }).catch(() => ({ status: 0 }))).status;

  const none = ca.run(['pki', 'readiness', '--auth-log', authFile]);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /no issuing CA is being retired/);

  assert.equal(await get(early), 200);
  assert.equal(ca.signing(['pki', 'rotate', 'intermediate', '--overlap', '7d']).code, 0);
  const late = issue(ca, 'late-partner');
  // the broker reloads the new chain by itself (file watching); until then the new CA is unknown to it
  await eventually(async () => (await get(late)) === 200, 'the late partner (new issuing CA) gets in', 20_000, 200);
  assert.equal(await get(early), 200, 'the early partner still gets in during the overlap');
  await eventually(() => authLines(authFile).filter((l) => l.event === 'handshake' && l.outcome === 'ok').length >= 3, 'handshakes in the auth log');

  const earlySeen = authLines(authFile).filter((l) => l.event === 'handshake' && l.outcome === 'ok' && l.principal === 'early-partner');
  const lastSeen = new Date(Math.max(...earlySeen.map((l) => Date.parse(String(l.time))))).toISOString();
  const inv = JSON.parse(readFileSync(ca.file('inventory.json'), 'utf8')) as { ca: { previous: Array<{ serial: string; retireAt: string }> } };
  const retiring = inv.ca.previous[0];
  assert.ok(retiring);

  const report = json<ReadinessReport>(ca.run(['pki', 'readiness', '--auth-log', authFile, '--json']));
  assert.deepEqual(report.retiring, [{ serial: retiring.serial, retireAt: retiring.retireAt }]);
  assert.deepEqual(
    report.identities.map((r) => ({ ...r, notAfter: undefined })),
    [{ identity: 'early-partner', serial: early.serial, issuer: retiring.serial, retireAt: retiring.retireAt, notAfter: undefined, lastSeen, connections: earlySeen.length, renewed: false, movedOn: false, contact: 'ops@early.example' }],
  );
  const text = ca.run(['pki', 'readiness', '--auth-log', authFile]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /1 identity still connects with a certificate from a retiring CA/);
  assert.match(text.stdout, new RegExp(`^early-partner\\s+${early.serial}\\s+${retiring.serial}\\s+\\S+\\s+${lastSeen.replace(/\./g, '\\.')}\\s`, 'm'));
  assert.doesNotMatch(text.stdout, /late-partner|silent-partner/);

  // the early partner renews (under the new CA) and connects with it: moved on
  const renewed = issue(ca, 'early-partner', [], 'renew');
  assert.equal(await get(renewed), 200);
  await eventually(() => authLines(authFile).some((l) => l.event === 'handshake' && l.outcome === 'ok' && l.serial === renewed.serial), 'the renewed handshake logged');
  const after = json<ReadinessReport>(ca.run(['pki', 'readiness', '--auth-log', authFile, '--json']));
  assert.deepEqual(after.identities.map((r) => [r.identity, r.renewed, r.movedOn]), [['early-partner', true, true]]);

  // the same log on standard input ("-"), e.g. from journalctl
  assert.deepEqual(json<ReadinessReport>(ca.run(['pki', 'readiness', '--auth-log', '-', '--json'], { input: readFileSync(authFile, 'utf8') })), after);

  // a missing log file is a read error with its code
  const missing = ca.run(['pki', 'readiness', '--auth-log', join(ca.root, 'nope.log')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /BRK_ERR_PKI_FILE_READ/);
});
