/**
 * The store lock lost while its holder works: a `pki revoke` stalled (its event loop blocked, so
 * its heartbeat stops, via the test-only BROKER_FAULT=block-before-commit) past the lock's stale
 * time has its lock taken over by a `pki issue`; when it resumes it stops at the commit point with
 * BRK_ERR_PKI_LOCK_LOST, changes nothing, and its failure is audited. Also when the lock folder
 * is simply removed under it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brokerAsync, errorCode } from '../helpers/cli.ts';
import { eventually } from '../helpers/within.ts';
import { auditEntries, filesIn, json, makeCa, pemBlocks, type IssuedJson, type ListRow, type TestCa } from '../helpers/pki.ts';
import { revokedSerials } from '../../src/tls/material.ts';

function stalledRevoke(ca: TestCa, name: string) {
  const resume = join(ca.root, 'resume');
  const result = brokerAsync(['pki', 'revoke', name, '--dir', ca.dir, '--passphrase-file', ca.pass], {
    cwd: ca.root,
    env: { BROKER_FAULT: 'block-before-commit', BROKER_FAULT_RESUME: resume },
    timeoutMs: 180_000,
  });
  return { result, blocked: () => eventually(() => existsSync(`${resume}.blocked`), 'the revoke reaches its commit point and stalls', 60_000), resume: () => writeFileSync(resume, '') };
}

function assertNotRevoked(ca: TestCa, victim: IssuedJson): void {
  const row = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((r) => r.name === 'victim');
  assert.equal(row?.status, 'valid', 'the revocation was not applied');
  const crl = pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL')[0] as string;
  assert.equal(revokedSerials(crl).revoked.has(victim.serial), false, 'the CRL does not list it');
  assert.deepEqual([ca.dir, ca.file('ca'), ca.file('crl')].flatMap((d) => filesIn(d)).filter((f) => f.endsWith('.tmp')), [], 'no staged file left');
  assert.equal(existsSync(ca.file('audit.pending')), false);
}

test('a revoke stalled past the stale time loses its lock to an issue: coded error, nothing applied, failure audited, the issue succeeds', async (t) => {
  const ca = makeCa(t);
  const victim = json<IssuedJson>(ca.signing(['pki', 'issue', 'victim', '--role', 'ops', '--out', join(ca.root, 'victim'), '--json']));
  const revoke = stalledRevoke(ca, 'victim');
  await revoke.blocked();
  // takes the lock over once the stalled holder's heartbeat is 15 s old
  const issue = await brokerAsync(['pki', 'issue', 'newcomer', '--role', 'ops', '--out', join(ca.root, 'newcomer'), '--json', '--dir', ca.dir, '--passphrase-file', ca.pass], { cwd: ca.root, timeoutMs: 120_000 });
  assert.equal(issue.code, 0, issue.stderr);
  revoke.resume();
  const r = await revoke.result;
  assert.equal(r.code, 1, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_LOCK_LOST', r.stderr);
  assert.doesNotMatch(r.stderr, /ECOMPROMISED|at .*lockfile/, 'a coded error, not an uncaught one');

  assertNotRevoked(ca, victim);
  const entries = auditEntries(ca);
  assert.deepEqual(entries.map((e) => `${e.op} ${e.outcome}${e.code ? ` ${e.code}` : ''}`), ['init ok', 'issue ok', 'issue ok', 'revoke error BRK_ERR_PKI_LOCK_LOST']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 4 });
  assert.equal(existsSync(ca.file('.lock')), false, 'the lock is released');
  // and the revoke goes through when run again
  assert.equal(ca.signing(['pki', 'revoke', 'victim']).code, 0);
});

test('a lock folder removed under a running revoke: BRK_ERR_PKI_LOCK_LOST at the commit point, nothing applied', async (t) => {
  const ca = makeCa(t);
  const victim = json<IssuedJson>(ca.signing(['pki', 'issue', 'victim', '--role', 'ops', '--out', join(ca.root, 'victim'), '--json']));
  const revoke = stalledRevoke(ca, 'victim');
  await revoke.blocked();
  rmSync(ca.file('.lock'), { recursive: true, force: true });
  revoke.resume();
  const r = await revoke.result;
  assert.equal(r.code, 1, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_LOCK_LOST', r.stderr);
  assert.match(r.stderr, /nothing of this change was written/);
  assertNotRevoked(ca, victim);
  assert.deepEqual(auditEntries(ca).map((e) => `${e.op} ${e.outcome}${e.code ? ` ${e.code}` : ''}`), ['init ok', 'issue ok', 'revoke error BRK_ERR_PKI_LOCK_LOST']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 3 });
});

test('a revoke stalled until its heartbeat is old enough to be taken over stops at the commit point even if nobody took it yet', async (t) => {
  const ca = makeCa(t);
  const victim = json<IssuedJson>(ca.signing(['pki', 'issue', 'victim', '--role', 'ops', '--out', join(ca.root, 'victim'), '--json']));
  const revoke = stalledRevoke(ca, 'victim');
  await revoke.blocked();
  // the holder trusts its lock while the heartbeat is under 12 s old (others take it at 15 s)
  await eventually(() => Date.now() - statSync(ca.file('.lock')).mtimeMs > 12_500, 'the stalled holder\'s heartbeat ages', 30_000, 100);
  revoke.resume();
  const r = await revoke.result;
  assert.equal(r.code, 1, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_LOCK_LOST', r.stderr);
  assert.match(r.stderr, /heartbeat is \d+\.\d s old/);
  assertNotRevoked(ca, victim);
  assert.deepEqual(auditEntries(ca).map((e) => `${e.op} ${e.outcome}${e.code ? ` ${e.code}` : ''}`), ['init ok', 'issue ok', 'revoke error BRK_ERR_PKI_LOCK_LOST']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 3 });
});
