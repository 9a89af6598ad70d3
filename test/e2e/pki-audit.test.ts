/**
 * The audit log through the CLI: every operation leaves one chained line, and
 * `broker pki audit verify` detects an edited, removed or inserted line and a cut-off end.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { auditEntries, json, sharedCa, type TestCa } from '../helpers/pki.ts';

const shared = sharedCa();

/** A CA with a few operations behind it: init, issue, issue, revoke, a failed issue. */
function busyCa(): TestCa {
  const ca = shared();
  if (auditEntries(ca).length === 1) {
    json(ca.signing(['pki', 'issue', 'alice', '--role', 'ops', '--out', join(ca.root, 'alice'), '--json']));
    json(ca.signing(['pki', 'issue', 'bob', '--role', 'billing', '--role', 'ops', '--out', join(ca.root, 'bob'), '--json']));
    json(ca.signing(['pki', 'revoke', 'alice', '--reason', 'superseded', '--json']));
    assert.equal(ca.signing(['pki', 'issue', 'bob', '--role', 'ops', '--out', join(ca.root, 'bob2')]).code, 1);
  }
  return ca;
}

/** Tampers with the log (and/or head) for one test and puts the originals back afterwards. */
function tamper(t: TestContext, ca: TestCa, edit: (lines: string[]) => string[], o: { head?: (head: string) => string | undefined } = {}): void {
  const log = ca.file('audit.log');
  const head = ca.file('audit.head');
  const goodLog = readFileSync(log, 'utf8');
  const goodHead = readFileSync(head, 'utf8');
  t.after(() => {
    writeFileSync(log, goodLog, { mode: 0o600 });
    writeFileSync(head, goodHead, { mode: 0o600 });
  });
  const lines = goodLog.split('\n').slice(0, -1);
  writeFileSync(log, `${edit([...lines]).join('\n')}\n`, { mode: 0o600 });
  if (o.head) {
    const h = o.head(goodHead);
    if (h === undefined) rmSync(head);
    else writeFileSync(head, h, { mode: 0o600 });
  }
}

function verifyFails(ca: TestCa, badLine: number, problem: RegExp): void {
  const r = ca.run(['pki', 'audit', 'verify', '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_AUDIT_TAMPERED');
  assert.match(r.stderr, new RegExp(`audit\\.log line ${badLine}:`));
  const report = JSON.parse(r.stdout) as { ok: boolean; badLine: number; problem: string };
  assert.equal(report.ok, false);
  assert.equal(report.badLine, badLine);
  assert.match(report.problem, problem);
}

test('every operation, failed ones included, is one chained line; verify says intact', () => {
  const ca = busyCa();
  const entries = auditEntries(ca);
  assert.deepEqual(entries.map((e) => [e.seq, e.op, e.outcome]), [
    [1, 'init', 'ok'],
    [2, 'issue', 'ok'],
    [3, 'issue', 'ok'],
    [4, 'revoke', 'ok'],
    [5, 'issue', 'error'],
  ]);
  assert.deepEqual(entries[2]?.roles, ['billing', 'ops']);
  assert.equal(entries[2]?.name, 'bob');
  assert.match(entries[2]?.serial ?? '', /^[0-9a-f]{32}$/);
  assert.equal(entries[3]?.detail, 'reason=superseded');
  assert.equal(entries[4]?.code, 'BRK_ERR_PKI_IDENTITY_EXISTS');
  const log = readFileSync(ca.file('audit.log'), 'utf8');
  assert.doesNotMatch(log, /PRIVATE KEY|BEGIN CERTIFICATE/, 'no key material or PEMs in the log');
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: 5 });
  const text = ca.run(['pki', 'audit', 'verify']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /audit log intact: 5 lines/);
});

test('an edited line is detected at the line after it', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => {
    lines[1] = (lines[1] as string).replace('"name":"alice"', '"name":"mallory"');
    return lines;
  });
  verifyFails(ca, 3, /previous line/);
});

test('an edited last line is detected through audit.head', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => {
    lines[4] = (lines[4] as string).replace('"outcome":"error"', '"outcome":"ok"');
    return lines;
  });
  verifyFails(ca, 5, /audit\.head/);
});

test('a deleted line is detected', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => lines.filter((_, i) => i !== 2));
  verifyFails(ca, 3, /sequence number 4 where 3/);
});

test('an inserted line is detected', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => {
    const forged = JSON.parse(lines[1] as string);
    lines.splice(2, 0, JSON.stringify({ ...forged, seq: 3, name: 'mallory' }));
    return lines;
  });
  verifyFails(ca, 3, /previous line|sequence/);
});

test('removing the last line is detected (the head still counts it)', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => lines.slice(0, -1));
  verifyFails(ca, 4, /ends at line 4 but audit\.head records 5/);
});

test('a deleted audit.head is detected', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => lines, { head: () => undefined });
  verifyFails(ca, 5, /audit\.head records 0/);
});

test('a garbled audit.head is refused with the same code', (t) => {
  const ca = busyCa();
  tamper(t, ca, (lines) => lines, { head: () => 'garbage\n' });
  const r = ca.run(['pki', 'audit', 'verify']);
  assert.equal(r.code, 1);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_AUDIT_TAMPERED');
});
