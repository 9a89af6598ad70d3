/**
 * Crash safety of a store change, with the built CLI killed (SIGKILL, via the test-only
 * BROKER_FAULT hook) at each point of the commit: `pki audit verify` never says "tampered" — it is
 * clean or reports an interrupted change — the next command completes or discards it and gets a
 * fresh sequence number, and verify is clean after. Real tampering is still called tampering.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brokerAsync, errorCode, type CliResult } from '../helpers/cli.ts';
import { auditEntries, filesIn, json, makeCa, type ListRow, type TestCa } from '../helpers/pki.ts';

const issueArgs = (ca: TestCa, name: string) => ['pki', 'issue', name, '--role', 'ops', '--out', join(ca.root, 'out'), '--json', '--dir', ca.dir, '--passphrase-file', ca.pass];
const issue = (ca: TestCa, name: string, env: Record<string, string> = {}): Promise<CliResult> => brokerAsync(issueArgs(ca, name), { cwd: ca.root, env, timeoutMs: 120_000 });

interface Report { ok: boolean; lines: number; interrupted?: boolean; problem?: string }
function verify(ca: TestCa): { code: number | null; error: string | undefined; report: Report } {
  const r = ca.run(['pki', 'audit', 'verify', '--json']);
  return { code: r.code, error: errorCode(r.stderr), report: JSON.parse(r.stdout) as Report };
}

const storeTemps = (ca: TestCa) => [ca.dir, ca.file('ca'), ca.file('crl')].flatMap((d) => filesIn(d)).filter((f) => f.endsWith('.tmp'));

// [crash point, is the killed issue completed by the next command?]
const POINTS: Array<[string, boolean]> = [
  ['after-stage', false],
  ['after-journal', true],
  ['after-audit-append', true],
  ['mid-rename', true],
  ['after-publish', true],
];

// each waits ~15 s for the killed process's lock to go stale: run them side by side
describe('a store change killed at each point of its commit', { concurrency: POINTS.length }, () => {
for (const [point, completes] of POINTS) {
  test(`killed at ${point}: verify says ${completes ? 'interrupted' : 'intact'}, never tampered; the next issue gets a fresh sequence number`, async (t) => {
    const ca = makeCa(t);
    const killed = await issue(ca, 'killed', { BROKER_FAULT: point });
    assert.equal(killed.code, null, `the process was killed, not finished: ${killed.stderr}`);

    const after = verify(ca);
    assert.notEqual(after.error, 'BRK_ERR_PKI_AUDIT_TAMPERED', after.report.problem);
    if (completes) {
      assert.equal(after.code, 1);
      assert.equal(after.error, 'BRK_ERR_PKI_AUDIT_INTERRUPTED');
      assert.equal(after.report.interrupted, true);
      assert.match(after.report.problem ?? '', /"issue" change of process \d+ was interrupted/);
    } else {
      assert.equal(after.code, 0, after.report.problem);
    }

    // the next command (it waits for the dead process's lock to go stale) recovers first
    const next = await issue(ca, 'next');
    assert.equal(next.code, 0, next.stderr);
    const entries = auditEntries(ca);
    assert.deepEqual(entries.map((e) => e.seq), entries.map((_, i) => i + 1), 'no sequence number reused');
    assert.deepEqual(entries.map((e) => `${e.op} ${e.outcome} ${e.op === 'issue' ? e.name : ''}`.trim()), completes
      ? ['init ok', 'issue ok killed', 'recover ok', 'issue ok next']
      : ['init ok', 'issue ok next']);
    assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: entries.length });

    const names = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).map((r) => r.name).sort();
    assert.deepEqual(names, completes ? ['killed', 'next'] : ['next']);
    assert.equal(existsSync(ca.file('audit.pending')), false);
    assert.deepEqual(storeTemps(ca), [], 'no temp file left in the store');
    if (completes) assert.ok(existsSync(join(ca.root, 'out', 'killed.crt')) && existsSync(join(ca.root, 'out', 'killed.key')), 'the hand-out files were moved into place too');
  });
}
});

test('an interrupted change is completed by "pki audit recover"; tampering with the log meanwhile is still tampering', async (t) => {
  const ca = makeCa(t);
  assert.equal((await issue(ca, 'first')).code, 0);
  assert.equal((await issue(ca, 'killed', { BROKER_FAULT: 'after-audit-append' })).code, null);
  const log = ca.file('audit.log');
  const good = readFileSync(log, 'utf8');

  // an edited earlier line: tampered, interrupted change or not; and recovery refuses to build on it
  writeFileSync(log, good.replace('"name":"first"', '"name":"mallory"'));
  const edited = verify(ca);
  assert.equal(edited.error, 'BRK_ERR_PKI_AUDIT_TAMPERED');
  assert.notEqual(edited.report.interrupted, true);
  // the interrupted line itself edited: it no longer fits audit.pending
  writeFileSync(log, good.replace('"name":"killed"', '"name":"mallory"'));
  const forged = verify(ca);
  assert.equal(forged.error, 'BRK_ERR_PKI_AUDIT_TAMPERED');
  assert.match(forged.report.problem ?? '', /audit\.pending|audit\.head/);
  const refused = ca.run(['pki', 'audit', 'recover']);
  assert.equal(refused.code, 1);
  assert.equal(errorCode(refused.stderr), 'BRK_ERR_PKI_AUDIT_TAMPERED');

  writeFileSync(log, good);
  assert.equal(verify(ca).error, 'BRK_ERR_PKI_AUDIT_INTERRUPTED');
  const rec = ca.run(['pki', 'audit', 'recover']);
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /completed the interrupted "issue" change \(audit line 3/);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 4 });
  assert.deepEqual(json<ListRow[]>(ca.run(['pki', 'list', '--json'])).map((r) => r.name).sort(), ['first', 'killed']);
  assert.match(ca.run(['pki', 'audit', 'recover']).stdout, /nothing to recover/);
});

test('the state an older broker left (log one line past audit.head, no pending record) is reported as interrupted and repaired, not reused', async (t) => {
  const ca = makeCa(t);
  // what a kill between the append and the renames left before this fix: the line, and nothing else
  const saved = join(ca.root, 'saved');
  copyFileSync(ca.file('audit.head'), `${saved}.head`);
  copyFileSync(ca.file('inventory.json'), `${saved}.inventory`);
  assert.equal((await issue(ca, 'lost')).code, 0);
  copyFileSync(`${saved}.head`, ca.file('audit.head'));
  copyFileSync(`${saved}.inventory`, ca.file('inventory.json'));

  const before = verify(ca);
  assert.equal(before.error, 'BRK_ERR_PKI_AUDIT_INTERRUPTED', before.report.problem);
  assert.match(before.report.problem ?? '', /line 2 was appended but audit\.head was not updated/);

  const next = await issue(ca, 'next');
  assert.equal(next.code, 0, next.stderr);
  const entries = auditEntries(ca);
  assert.deepEqual(entries.map((e) => `${e.seq} ${e.op} ${e.op === 'issue' ? e.name : ''}`.trim()), ['1 init', '2 issue lost', '3 recover', '4 issue next']);
  assert.match(entries[2]?.detail ?? '', /accepted line 2/);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 4 });
});

test('an interrupted issue whose hand-out folder was removed meanwhile is still completed in the store, and the recover line says what was not restored', async (t) => {
  const ca = makeCa(t);
  assert.equal((await issue(ca, 'killed', { BROKER_FAULT: 'after-audit-append' })).code, null);
  rmSync(join(ca.root, 'out'), { recursive: true, force: true });
  const rec = await brokerAsync(['pki', 'audit', 'recover', '--dir', ca.dir], { cwd: ca.root, timeoutMs: 120_000 });
  assert.equal(rec.code, 0, rec.stderr);
  const entries = auditEntries(ca);
  assert.equal(entries.at(-1)?.op, 'recover');
  assert.match(entries.at(-1)?.detail ?? '', /not restored \(removed meanwhile\): .*killed\.crt/);
  assert.deepEqual(json<ListRow[]>(ca.run(['pki', 'list', '--json'])).map((r) => r.name), ['killed']);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 3 });
});
