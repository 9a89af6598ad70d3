/** `broker pki list`: the inventory with --json fields, statuses and --expiring. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { json, sharedCa, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const shared = sharedCa();

const FIELDS = ['contact', 'fingerprint', 'issuer', 'name', 'notAfter', 'notBefore', 'roles', 'serial', 'status', 'type'];

test('an empty inventory lists as []', () => {
  const ca = shared();
  assert.deepEqual(json(ca.run(['pki', 'list', '--json'])), []);
  const text = ca.run(['pki', 'list']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /no certificates issued yet/);
});

test('list --json: one object per certificate with exactly the documented fields', () => {
  const ca = shared();
  const issue = (name: string, ...args: string[]) => json<IssuedJson>(ca.signing(['pki', 'issue', name, '--out', join(ca.root, name), '--json', ...args]));
  const long = issue('long', '--role', 'ops', '--role', 'billing', '--contact', 'ops@long.example');
  const short = issue('short', '--role', 'ops', '--ttl', '5m');
  const revoked = issue('revoked', '--role', 'ops', '--ttl', '5m');
  assert.equal(ca.signing(['pki', 'revoke', 'revoked']).code, 0);
  const server = json<IssuedJson>(ca.signing(['pki', 'server', 'web', '--dns', 'web.test.example', '--json']));

  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json']));
  for (const row of rows) assert.deepEqual(Object.keys(row).sort(), FIELDS);
  const byName = new Map(rows.map((r) => [r.name, r]));
  assert.deepEqual(byName.get('long'), {
    issuer: 'current',
    name: 'long',
    type: 'client',
    roles: ['ops', 'billing'],
    serial: long.serial,
    notBefore: long.notBefore,
    notAfter: long.notAfter,
    status: 'valid',
    fingerprint: long.fingerprint,
    contact: 'ops@long.example',
  });
  assert.equal(byName.get('short')?.contact, null, 'no --contact: null');
  assert.equal(byName.get('short')?.serial, short.serial);
  assert.equal(byName.get('revoked')?.status, 'revoked');
  assert.equal(byName.get('revoked')?.serial, revoked.serial);
  assert.equal(byName.get('web')?.type, 'server');
  assert.equal(byName.get('web')?.serial, server.serial);
  assert.deepEqual(rows.map((r) => r.name), [...rows.map((r) => r.name)].sort(), 'sorted by name');

  // --expiring: only valid certificates that end within the window
  const soon = json<ListRow[]>(ca.run(['pki', 'list', '--expiring', '1h', '--json']));
  assert.deepEqual(soon.map((r) => r.name), ['short']);
  const all = json<ListRow[]>(ca.run(['pki', 'list', '--expiring', '365d', '--json']));
  assert.deepEqual(all.map((r) => r.name), ['long', 'short', 'web']);

  const text = ca.run(['pki', 'list']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /^NAME\s+TYPE\s+ROLES\s+SERIAL\s+NOT BEFORE\s+NOT AFTER\s+STATUS\s+ISSUER\s+CONTACT\s+SHA-256$/m);
  assert.match(text.stdout, new RegExp(`^long\\s+client\\s+ops,billing\\s+${long.serial}\\s.*\\sops@long\\.example\\s`, 'm'));
});

test('list --expiring with a bad duration is a usage error', () => {
  const ca = shared();
  const r = ca.run(['pki', 'list', '--expiring', 'soon']);
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE_TTL');
});

test('issue --contact must be an e-mail address (usage error, nothing issued)', () => {
  const ca = shared();
  const r = ca.signing(['pki', 'issue', 'nocontact', '--role', 'ops', '--contact', 'not an address', '--out', join(ca.root, 'nocontact')]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE_CONTACT');
  assert.ok(!json<ListRow[]>(ca.run(['pki', 'list', '--json'])).some((x) => x.name === 'nocontact'));
});
