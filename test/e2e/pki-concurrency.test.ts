/**
 * `broker pki issue` processes started at once against one store: each one succeeds or fails
 * with a coded error, and every success is in the inventory with its own serial — nothing lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { brokerAsync, errorCode } from '../helpers/cli.ts';
import { auditEntries, certField, filesIn, json, makeCa, verifyLeaf, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const N = 20;

test(`${N} issue processes at once: all succeed, ${N} distinct serials, nothing lost`, async (t) => {
  const ca = makeCa(t);
  const out = join(ca.root, 'handout');
  const names = Array.from({ length: N }, (_, i) => `client-${String(i).padStart(2, '0')}`);
  const results = await Promise.all(
    names.map((name) => brokerAsync(['pki', 'issue', name, '--role', 'ops', '--out', out, '--json', '--dir', ca.dir, '--passphrase-file', ca.pass], { cwd: ca.root })),
  );

  // each failed cleanly if it failed at all...
  for (const [i, r] of results.entries()) {
    if (r.code !== 0) {
      assert.equal(r.code, 1, `${names[i]}: ${r.stderr}`);
      assert.match(errorCode(r.stderr) ?? '', /^BRK_ERR_PKI_/, `${names[i]} failed with a coded error: ${r.stderr}`);
    }
  }
  // ...and under the lock none had to
  assert.deepEqual(results.map((r) => r.code), names.map(() => 0), results.map((r) => r.stderr).join(''));

  const issued = results.map((r) => JSON.parse(r.stdout) as IssuedJson);
  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json']));
  assert.equal(rows.length, N, 'one inventory entry per process');
  assert.equal(new Set(rows.map((r) => r.serial)).size, N, `${N} distinct serials`);
  assert.deepEqual(rows.map((r) => `${r.name} ${r.serial}`).sort(), issued.map((r) => `${r.name} ${r.serial}`).sort(), 'what each process printed is what the inventory holds');

  for (const r of issued) {
    assert.equal(certField(r.files.cert, 'serial').toLowerCase(), r.serial, `${r.name}.crt on disk is the one recorded`);
  }
  assert.deepEqual(filesIn(out), ['ca.crt', ...names.flatMap((n) => [`${n}.crt`, `${n}.key`])].sort(), 'every hand-out file, no temp file left');
  assert.deepEqual(filesIn(ca.dir).filter((f) => f.endsWith('.tmp')), []);
  const v = verifyLeaf(ca, join(out, `${names[N - 1]}.crt`));
  assert.equal(v.code, 0, v.stdout + v.stderr);

  // the CRLs and the audit chain survived too
  const audit = auditEntries(ca);
  assert.deepEqual(audit.map((e) => e.seq), Array.from({ length: N + 1 }, (_, i) => i + 1));
  assert.deepEqual(audit.filter((e) => e.op === 'issue' && e.outcome === 'ok').map((e) => e.serial).sort(), issued.map((r) => r.serial).sort());
  const verify = ca.run(['pki', 'audit', 'verify', '--json']);
  assert.deepEqual(json(verify), { ok: true, lines: N + 1 });
  assert.ok(readFileSync(ca.file('crl.pem'), 'utf8').includes('BEGIN X509 CRL'));
});

test('5 processes issuing the same name at once: exactly one wins, the others fail cleanly', async (t) => {
  const ca = makeCa(t);
  const results = await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      brokerAsync(['pki', 'issue', 'contested', '--role', 'ops', '--out', join(ca.root, `out-${i}`), '--json', '--dir', ca.dir, '--passphrase-file', ca.pass], { cwd: ca.root }),
    ),
  );
  const winners = results.filter((r) => r.code === 0);
  assert.equal(winners.length, 1, results.map((r) => r.stderr).join(''));
  for (const r of results.filter((x) => x.code !== 0)) {
    assert.equal(r.code, 1);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_IDENTITY_EXISTS');
  }
  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json']));
  assert.deepEqual(rows.map((r) => r.serial), [(JSON.parse(winners[0]?.stdout as string) as IssuedJson).serial]);
  const audit = auditEntries(ca);
  assert.deepEqual(audit.map((e) => `${e.op} ${e.outcome}`).sort(), ['init ok', 'issue error', 'issue error', 'issue error', 'issue error', 'issue ok']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 6 });
});
