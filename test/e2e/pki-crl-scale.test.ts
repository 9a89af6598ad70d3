/**
 * A store with 30,000 revoked certificates: `broker pki revoke` rebuilds the CRL (30,001 serials)
 * while a `broker pki issue` started during the revoke waits for the lock, and both succeed.
 * (The CRL build was quadratic: about 40 s at this size, long enough for the lock to go stale,
 * the issue to take it over and the revoke to die with an uncaught ECOMPROMISED.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { brokerAsync } from '../helpers/cli.ts';
import { eventually } from '../helpers/within.ts';
import { json, makeCa, pemBlocks, type IssuedJson, type TestCa } from '../helpers/pki.ts';
import { CaStore } from '../../src/pki/store.ts';
import { randomSerial } from '../../src/pki/certs.ts';
import { revokedSerials } from '../../src/tls/material.ts';

const N = 30_000;

/** Adds `n` revoked client records to the inventory in one audited change, in process (seconds, not hours of signing). */
async function seedRevoked(ca: TestCa, n: number): Promise<void> {
  const store = CaStore.open(ca.dir);
  await store.mutate('test-seed', undefined, async (ctx) => {
    const issuer = ctx.inventory.ca.intermediate.serial;
    const at = new Date().toISOString();
    for (let i = 0; i < n; i++) {
      ctx.inventory.certs.push({
        name: `seed-${i}`, type: 'client', roles: ['seed'], serial: randomSerial(), notBefore: at, notAfter: new Date(Date.now() + 86_400_000).toISOString(),
        fingerprint: randomBytes(32).toString('hex'), source: 'issue', issuer, revokedAt: at, reason: 'superseded',
      });
    }
    return { result: undefined, audit: { detail: `seeded=${n}` } };
  });
}

test(`revoke in a store with ${N.toLocaleString('en-US')} revoked entries, with an issue started meanwhile: both succeed`, async (t) => {
  const ca = makeCa(t, { noPassphrase: true });
  json<IssuedJson>(ca.run(['pki', 'issue', 'victim', '--role', 'ops', '--out', join(ca.root, 'victim'), '--json']));
  await seedRevoked(ca, N);

  const revoke = brokerAsync(['pki', 'revoke', 'victim', '--reason', 'keyCompromise', '--json', '--dir', ca.dir], { cwd: ca.root, timeoutMs: 180_000 });
  // the issue starts while the revoke holds the store lock
  await eventually(() => existsSync(ca.file('.lock')), 'the revoke takes the store lock', 30_000, 5);
  const issue = brokerAsync(['pki', 'issue', 'newcomer', '--role', 'ops', '--out', join(ca.root, 'newcomer'), '--json', '--dir', ca.dir], { cwd: ca.root, timeoutMs: 180_000 });
  const [r, i] = await Promise.all([revoke, issue]);
  assert.equal(r.code, 0, `revoke: ${r.stderr}`);
  assert.equal(i.code, 0, `issue: ${i.stderr}`);

  const bundle = readFileSync(ca.file('crl.pem'), 'utf8');
  const [intermediate] = pemBlocks(bundle, 'X509 CRL');
  const listed = revokedSerials(intermediate as string).revoked;
  assert.equal(listed.size, N + 1, 'the issuing CA CRL lists the 30,000 seeded serials and the victim');
  const victim = JSON.parse(r.stdout) as Array<{ serial: string }>;
  assert.ok(listed.has(victim[0]?.serial as string), 'the victim is listed');

  const audit = readFileSync(ca.file('audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { op: string; outcome: string });
  assert.deepEqual(audit.map((e) => `${e.op} ${e.outcome}`).sort(), ['init ok', 'issue ok', 'issue ok', 'revoke ok', 'test-seed ok']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 5 });
});
