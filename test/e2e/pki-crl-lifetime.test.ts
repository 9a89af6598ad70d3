/**
 * CRL lifetimes (issue 19): `pki crl --next-update` applies to that publication only, anything
 * under an hour needs --force (here and at `pki init --crl-next-update`), the store's default is
 * shown by `pki list`, and a short lifetime an older `pki crl` left in the store is ignored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode, openssl } from '../helpers/cli.ts';
import { json, makeCa, pemBlocks, secondsBetween, snapshot, type TestCa } from '../helpers/pki.ts';

/** Seconds from thisUpdate to nextUpdate of every CRL in the store's bundle (thisUpdate is backdated a minute). */
function lifetimes(ca: TestCa): number[] {
  return pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL').map((pem) => {
    const r = openssl(['crl', '-noout', '-lastupdate', '-nextupdate'], { input: pem });
    assert.equal(r.code, 0, r.stderr);
    const field = (name: string) => new RegExp(`${name}=(.+)`).exec(r.stdout)?.[1] as string;
    return secondsBetween(field('lastUpdate'), field('nextUpdate')) - 60;
  });
}

const DAY = 86_400;

test('pki crl --next-update under an hour is refused (20s, 1m, 59m) and changes nothing; 1h is accepted', (t) => {
  const ca = makeCa(t);
  const before = snapshot(ca.dir, { withAudit: true });
  for (const d of ['20s', '1m', '59m']) {
    const r = ca.signing(['pki', 'crl', '--next-update', d]);
    assert.equal(r.code, 2, `--next-update ${d}: ${r.stderr}`);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_CRL_TOO_SHORT');
    assert.match(r.stderr, /under 1 hour/);
    assert.match(r.stderr, /--force/);
  }
  assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before, 'a refused lifetime writes nothing, not even an audit line');
  assert.equal(ca.signing(['pki', 'crl', '--next-update', '1h']).code, 0);
  assert.deepEqual(lifetimes(ca), [3_600, 3_600]);
});

test('pki crl --next-update 20s --force publishes a 20 s CRL once: the next crl and revoke publish the store default again', (t) => {
  const ca = makeCa(t);
  const r = json<{ nextUpdate: string }>(ca.signing(['pki', 'crl', '--next-update', '20s', '--force', '--json']));
  assert.ok(Date.parse(r.nextUpdate) - Date.now() <= 20_000);
  assert.deepEqual(lifetimes(ca), [20, 20]);

  assert.equal(ca.signing(['pki', 'crl']).code, 0);
  assert.deepEqual(lifetimes(ca), [30 * DAY, 30 * DAY], 'a later crl does not keep the 20 s');

  assert.equal(ca.signing(['pki', 'crl', '--next-update', '20s', '--force']).code, 0);
  assert.equal(ca.signing(['pki', 'issue', 'later', '--role', 'ops', '--out', join(ca.root, 'later')]).code, 0);
  assert.equal(ca.signing(['pki', 'revoke', 'later']).code, 0);
  assert.deepEqual(lifetimes(ca), [30 * DAY, 30 * DAY], 'revoke does not keep the 20 s either');

  const list = ca.run(['pki', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^CRL lifetime: 30d /m);
});

test('pki init --crl-next-update sets the store default, shown by pki list; under an hour it needs --force', (t) => {
  const week = makeCa(t, { initArgs: ['--crl-next-update', '7d'] });
  assert.deepEqual(lifetimes(week), [7 * DAY, 7 * DAY]);
  assert.equal(week.signing(['pki', 'crl', '--next-update', '2d']).code, 0);
  assert.equal(week.signing(['pki', 'crl']).code, 0);
  assert.deepEqual(lifetimes(week), [7 * DAY, 7 * DAY]);
  assert.match(week.run(['pki', 'list']).stdout, /^CRL lifetime: 1w /m, 'formatted as the shortest exact unit');

  assert.throws(() => makeCa(t, { initArgs: ['--crl-next-update', '30m'] }), /BRK_ERR_PKI_CRL_TOO_SHORT/);
  const forced = makeCa(t, { initArgs: ['--crl-next-update', '30m', '--force'] });
  assert.deepEqual(lifetimes(forced), [1_800, 1_800]);
  assert.equal(forced.signing(['pki', 'crl']).code, 0);
  assert.deepEqual(lifetimes(forced), [1_800, 1_800], 'a forced init default is the store default');
  const list = forced.run(['pki', 'list']);
  assert.match(list.stdout, /^CRL lifetime: 30m /m);
  assert.doesNotMatch(list.stdout, /ignored/);
});

test('a store where an older pki crl --next-update left 20 s: the value is ignored with a warning, CRLs get 30 days', (t) => {
  const ca = makeCa(t);
  // what "broker pki crl --next-update 20s" wrote into the inventory before issue 19
  const file = ca.file('inventory.json');
  const inv = JSON.parse(readFileSync(file, 'utf8')) as { ca: { crlValidityMs: number } };
  inv.ca.crlValidityMs = 20_000;
  writeFileSync(file, JSON.stringify(inv, null, 2));

  const list = ca.run(['pki', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^CRL lifetime: 30d .*the stored 20s is under 1 hour and ignored/m);

  const r = ca.signing(['pki', 'crl']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning.*CRL lifetime 20s .*ignored/i);
  assert.deepEqual(lifetimes(ca), [30 * DAY, 30 * DAY]);

  assert.equal(ca.signing(['pki', 'issue', 'old', '--role', 'ops', '--out', join(ca.root, 'old')]).code, 0);
  const rv = ca.signing(['pki', 'revoke', 'old']);
  assert.equal(rv.code, 0, rv.stderr);
  assert.match(rv.stderr, /ignored/);
  assert.deepEqual(lifetimes(ca), [30 * DAY, 30 * DAY]);
});
