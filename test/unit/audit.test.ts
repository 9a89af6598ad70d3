/** verifyAudit against a hash chain built with nextLine: intact, then each kind of tampering. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GENESIS, lineHash, nextLine, PENDING_FORMAT, verifyAudit, type AuditHead, type PendingRecord } from '../../src/pki/audit.ts';

/** A log of `n` lines and its head, as the store would write them. */
function chain(n: number): { lines: string[]; head: AuditHead } {
  let head: AuditHead = { seq: 0, hash: GENESIS };
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const next = nextLine(head, { op: 'issue', outcome: 'ok', name: `id-${i}`, serial: `${i}`.padStart(32, '0'), roles: ['ops'] }, new Date(Date.UTC(2026, 0, 1, 0, i)));
    lines.push(next.line);
    head = next.head;
  }
  return { lines, head };
}

const text = (lines: string[]) => lines.map((l) => `${l}\n`).join('');

test('nextLine chains each line to the hash of the one before, starting from the genesis hash', () => {
  const { lines, head } = chain(3);
  const entries = lines.map((l) => JSON.parse(l));
  assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3]);
  assert.equal(entries[0].prev, GENESIS);
  assert.equal(entries[1].prev, lineHash(lines[0] as string));
  assert.equal(entries[2].prev, lineHash(lines[1] as string));
  assert.deepEqual(head, { seq: 3, hash: lineHash(lines[2] as string) });
  assert.equal(entries[0].time, '2026-01-01T00:00:00.000Z');
  assert.deepEqual(Object.keys(entries[0]), ['seq', 'time', 'op', 'outcome', 'name', 'serial', 'roles', 'user', 'pid', 'prev']);
});

test('an error line carries the code; absent fields are null or []', () => {
  const { line } = nextLine({ seq: 0, hash: GENESIS }, { op: 'crl', outcome: 'error', code: 'BRK_ERR_PKI_BAD_PASSPHRASE' });
  const e = JSON.parse(line);
  assert.equal(e.code, 'BRK_ERR_PKI_BAD_PASSPHRASE');
  assert.equal(e.name, null);
  assert.equal(e.serial, null);
  assert.deepEqual(e.roles, []);
  assert.equal('detail' in e, false);
});

test('an intact log verifies, with or without its final newline', () => {
  const { lines, head } = chain(5);
  assert.deepEqual(verifyAudit(text(lines), head), { ok: true, lines: 5 });
  assert.deepEqual(verifyAudit(lines.join('\n'), head), { ok: true, lines: 5 });
});

test('an empty log verifies against the empty head only', () => {
  assert.deepEqual(verifyAudit('', { seq: 0, hash: GENESIS }), { ok: true, lines: 0 });
  const { head } = chain(1);
  assert.equal(verifyAudit('', head).ok, false);
});

// [what, tamper, first bad line, problem]
const TAMPERING: Array<[string, (lines: string[]) => string[], number, RegExp]> = [
  ['an edited field', (l) => l.with(1, (l[1] as string).replace('"name":"id-1"', '"name":"mallory"')), 3, /previous line/],
  ['an edited line with its seq and prev kept', (l) => l.with(2, (l[2] as string).replace('"roles":["ops"]', '"roles":["admin"]')), 4, /previous line/],
  ['an edited last line', (l) => l.with(4, (l[4] as string).replace('"outcome":"ok"', '"outcome":"error"')), 5, /audit\.head/],
  ['a deleted first line', (l) => l.slice(1), 1, /sequence number 2 where 1/],
  ['a deleted middle line', (l) => l.toSpliced(2, 1), 3, /sequence number 4 where 3/],
  ['an inserted copy of a line', (l) => l.toSpliced(2, 0, l[1] as string), 3, /sequence number 2 where 3/],
  ['an inserted line with the right seq', (l) => l.toSpliced(2, 0, (l[2] as string).replace('"name":"id-2"', '"name":"forged"')), 4, /sequence number 3 where 4/],
  ['swapped lines', (l) => l.toSpliced(1, 2, l[2] as string, l[1] as string), 2, /sequence number 3 where 2/],
  ['the last line removed', (l) => l.slice(0, -1), 4, /ends at line 4 but audit\.head records 5/],
  ['the last two lines removed', (l) => l.slice(0, -2), 3, /ends at line 3 but audit\.head records 5/],
  ['a line cut short', (l) => l.with(3, (l[3] as string).slice(0, 40)), 4, /not a JSON line/],
  ['a blank line inserted', (l) => l.toSpliced(2, 0, ''), 3, /not a JSON line/],
];

for (const [what, edit, badLine, problem] of TAMPERING) {
  test(`tampering is detected: ${what}`, () => {
    const { lines, head } = chain(5);
    const report = verifyAudit(text(edit([...lines])), head);
    assert.equal(report.ok, false);
    assert.equal(report.badLine, badLine, report.problem);
    assert.match(report.problem ?? '', problem);
  });
}

test('a head that does not match an intact log is detected (head rewritten or from elsewhere)', () => {
  const { lines, head } = chain(5);
  assert.equal(verifyAudit(text(lines), { seq: 5, hash: GENESIS }).ok, false);
  assert.equal(verifyAudit(text(lines), { seq: 6, hash: head.hash }).ok, false);
  assert.equal(verifyAudit(text(lines), { seq: 0, hash: GENESIS }).ok, false, 'a deleted head reads as the empty head');
});

test('truncating the log and rewriting the head to match is NOT detectable: the documented limit', () => {
  const { lines } = chain(5);
  const kept = lines.slice(0, 3);
  const forgedHead = { seq: 3, hash: lineHash(kept[2] as string) };
  assert.deepEqual(verifyAudit(text(kept), forgedHead), { ok: true, lines: 3 });
});

/** A log of `n` committed lines, and the pending record of the change that makes line n + 1. */
function interrupted(n: number): { lines: string[]; head: AuditHead; pending: PendingRecord } {
  const { lines, head } = chain(n);
  const next = nextLine(head, { op: 'issue', outcome: 'ok', name: 'cut-off' });
  return { lines, head, pending: { format: PENDING_FORMAT, op: 'issue', pid: 4242, prev: head, line: next.line, head: next.head, files: [] } };
}

// [what a crash left, log text, audit.head] — each is "interrupted", never tampering
const CRASHES: Array<[string, (x: ReturnType<typeof interrupted>) => [string, AuditHead]]> = [
  ['the pending record written, the line not appended', (x) => [text(x.lines), x.head]],
  ['the append cut short', (x) => [text(x.lines) + x.pending.line.slice(0, 30), x.head]],
  ['the line appended, files and head not in place', (x) => [text([...x.lines, x.pending.line]), x.head]],
  ['the line appended and the head written, the record not yet removed', (x) => [text([...x.lines, x.pending.line]), x.pending.head]],
];

for (const [what, state] of CRASHES) {
  test(`a crash is reported as interrupted, not tampering: ${what}`, () => {
    const x = interrupted(4);
    const [log, head] = state(x);
    const r = verifyAudit(log, head, x.pending);
    assert.equal(r.ok, false);
    assert.equal(r.interrupted, true, r.problem);
    assert.match(r.problem ?? '', /"issue" change of process 4242 was interrupted/);
  });
}

// [what, log text, audit.head] with a pending record present — still tampering
const TAMPERED_WITH_PENDING: Array<[string, (x: ReturnType<typeof interrupted>) => [string, AuditHead], RegExp]> = [
  ['an earlier line edited', (x) => [text(x.lines.with(1, (x.lines[1] as string).replace('id-1', 'mallory'))), x.head], /previous line/],
  ['the appended line edited', (x) => [text([...x.lines, x.pending.line.replace('cut-off', 'mallory')]), x.head], /audit\.pending/],
  ['the last committed line removed', (x) => [text(x.lines.slice(0, -1)), x.head], /audit\.pending/],
  ['a line appended past the pending one', (x) => [text([...x.lines, x.pending.line, nextLine(x.pending.head, { op: 'crl', outcome: 'ok' }).line]), x.pending.head], /audit\.pending/],
  ['a partial line that is not a prefix of the pending one', (x) => [text(x.lines) + '{"seq":5,"forged"', x.head], /not a JSON line/],
];

for (const [what, state, problem] of TAMPERED_WITH_PENDING) {
  test(`tampering is still tampering with a pending record present: ${what}`, () => {
    const x = interrupted(4);
    const [log, head] = state(x);
    const r = verifyAudit(log, head, x.pending);
    assert.equal(r.ok, false);
    assert.notEqual(r.interrupted, true);
    assert.match(r.problem ?? '', problem);
  });
}

test('without a pending record, exactly one whole chained line past the head is an interrupted change (older brokers); more is tampering', () => {
  const { lines, head } = chain(5);
  const ahead = verifyAudit(text(lines), { seq: 4, hash: lineHash(lines[3] as string) });
  assert.equal(ahead.interrupted, true);
  assert.match(ahead.problem ?? '', /line 5 was appended but audit\.head was not updated/);
  const twoAhead = verifyAudit(text(lines), { seq: 3, hash: lineHash(lines[2] as string) });
  assert.equal(twoAhead.interrupted, undefined);
  assert.equal(twoAhead.ok, false);
  assert.deepEqual(verifyAudit(text(lines), head), { ok: true, lines: 5 });
});
