/**
 * How `broker pki` fails: exit codes (0 ok, 1 runtime, 2 usage) with `error BRK_ERR_…:` on stderr,
 * and for every runtime failure — wrong passphrase, corrupt or missing inventory, an unreadable CA
 * file, a full disk — a coded error with the store left exactly as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, rmdirSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { broker, errorCode, tempDir } from '../helpers/cli.ts';
import { auditEntries, filesIn, json, makeCa, sharedCa, snapshot, type TestCa } from '../helpers/pki.ts';

const shared = sharedCa();

/** Runs `args`, expects exit `code` with `brkCode` on stderr, and the store (audit aside) unchanged. */
function failsCleanly(ca: TestCa, args: string[], code: number, brkCode: string, o: { env?: Record<string, string | undefined> } = {}): string {
  const before = snapshot(ca.dir);
  const r = ca.run(args, o);
  assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(errorCode(r.stderr), brkCode, r.stderr);
  assert.equal(r.stdout, '', 'nothing on stdout');
  assert.deepEqual(snapshot(ca.dir), before, 'the store is unchanged');
  return r.stderr;
}

/** The newest audit line records the failure with its code. */
function lastAuditIsError(ca: TestCa, op: string, code: string): void {
  const last = auditEntries(ca).at(-1);
  assert.equal(last?.op, op);
  assert.equal(last?.outcome, 'error');
  assert.equal(last?.code, code);
}

/** `broker pki audit verify` finds the chain intact, failure lines included. */
function auditIntact(ca: TestCa): void {
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: auditEntries(ca).length });
}

const USAGE: Array<[string, string[], string]> = [
  ['an unknown command', ['pki', 'frobnicate'], 'BRK_ERR_USAGE'],
  ['an unknown top-level command', ['frobnicate'], 'BRK_ERR_USAGE'],
  ['an unknown option', ['pki', 'issue', 'x', '--role', 'ops', '--colour'], 'BRK_ERR_USAGE'],
  ['a bad --ttl', ['pki', 'issue', 'x', '--role', 'ops', '--ttl', '5x'], 'BRK_ERR_USAGE_TTL'],
  ['a composite --ttl', ['pki', 'issue', 'x', '--role', 'ops', '--ttl', '1h30m'], 'BRK_ERR_USAGE_TTL'],
  ['a zero --ttl', ['pki', 'issue', 'x', '--role', 'ops', '--ttl', '0d'], 'BRK_ERR_USAGE_TTL'],
  ['a --ttl under a minute', ['pki', 'issue', 'x', '--role', 'ops', '--ttl', '500ms'], 'BRK_ERR_USAGE_TTL'],
  ['a bad role', ['pki', 'issue', 'x', '--role', 'has space'], 'BRK_ERR_USAGE_ROLE'],
  ['a missing --role', ['pki', 'issue', 'x'], 'BRK_ERR_USAGE'],
  ['a bad name', ['pki', 'issue', '../etc/passwd', '--role', 'ops'], 'BRK_ERR_USAGE_NAME'],
  ['a missing name', ['pki', 'issue', '--role', 'ops'], 'BRK_ERR_USAGE'],
];

for (const [what, args, code] of USAGE) {
  test(`usage error: ${what} → exit 2, ${code}, nothing touched`, () => {
    const ca = shared();
    const before = snapshot(ca.dir, { withAudit: true });
    const r = ca.signing(args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^error ${code}: .+\\(.+\\)$`, 'm'), 'error CODE: message (what to do)');
    assert.equal(errorCode(r.stderr), code);
    assert.equal(r.stdout, '');
    assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before, 'usage errors do not even reach the audit log');
  });
}

test('exit 0 for help and version', () => {
  for (const args of [['--help'], ['pki', '--help'], ['pki', 'issue', '--help'], ['--version']]) {
    const r = broker(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '');
  }
  assert.match(broker(['pki', 'issue', '--help']).stdout, /Examples:\n\s+\$ broker pki issue /);
});

test('no CA in the folder: BRK_ERR_PKI_CA_NOT_FOUND (exit 1) saying to run init', (t) => {
  const root = tempDir(t);
  const r = broker(['pki', 'list', '--dir', join(root, 'nothing-here')], { cwd: root });
  assert.equal(r.code, 1);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_CA_NOT_FOUND');
  assert.match(r.stderr, /broker pki init/);
});

test('a wrong passphrase: BRK_ERR_PKI_BAD_PASSPHRASE for every signing command, nothing changed, failure audited', () => {
  const ca = shared();
  const wrong = join(ca.root, 'wrong.pass');
  writeFileSync(wrong, 'not the passphrase\n', { mode: 0o600 });
  json(ca.signing(['pki', 'issue', 'victim', '--role', 'ops', '--out', join(ca.root, 'victim'), '--json']));
  const out = join(ca.root, 'never');
  const commands: Array<[string, string[]]> = [
    ['issue', ['pki', 'issue', 'intruder', '--role', 'ops', '--out', out]],
    ['server', ['pki', 'server', 'intruder', '--dns', 'intruder.test.example']],
    ['revoke', ['pki', 'revoke', 'victim']],
    ['renew', ['pki', 'renew', 'victim', '--out', out]],
    ['crl', ['pki', 'crl']],
  ];
  for (const [op, args] of commands) {
    const stderr = failsCleanly(ca, [...args, '--passphrase-file', wrong], 1, 'BRK_ERR_PKI_BAD_PASSPHRASE');
    assert.match(stderr, /cannot decrypt .*\.key/);
    lastAuditIsError(ca, op, 'BRK_ERR_PKI_BAD_PASSPHRASE');
  }
  assert.deepEqual(filesIn(out), [], 'no hand-out files either');
  // BROKER_CA_PASSPHRASE is checked the same way
  failsCleanly(ca, ['pki', 'crl'], 1, 'BRK_ERR_PKI_BAD_PASSPHRASE', { env: { BROKER_CA_PASSPHRASE: 'nope' } });
  auditIntact(ca);
});

test('an encrypted store and no passphrase in a non-interactive run: exit 2, nothing changed', () => {
  const ca = shared();
  failsCleanly(ca, ['pki', 'issue', 'nopass', '--role', 'ops', '--out', join(ca.root, 'nopass')], 2, 'BRK_ERR_USAGE_PASSPHRASE_REQUIRED');
  lastAuditIsError(ca, 'issue', 'BRK_ERR_USAGE_PASSPHRASE_REQUIRED');
});

const CORRUPTIONS: Array<[string, (inv: string) => string]> = [
  ['cut short', (inv) => inv.slice(0, Math.floor(inv.length / 2))],
  ['not the inventory format', (inv) => inv.replace('"broker-pki/1"', '"broker-pki/0"')],
  ['a certificate entry with a bad serial', (inv) => inv.replace(/"serial": "[0-9a-f]+",\n(\s+"notBefore")/, '"serial": "not-hex",\n$1')],
  ['an empty file', () => ''],
];

for (const [what, corrupt] of CORRUPTIONS) {
  test(`a corrupt inventory (${what}): BRK_ERR_PKI_INVENTORY_CORRUPT, nothing changed, failure audited`, (t) => {
    const ca = shared();
    const file = ca.file('inventory.json');
    if (!JSON.parse(readFileSync(file, 'utf8')).certs.length) json(ca.signing(['pki', 'issue', 'someone', '--role', 'ops', '--out', join(ca.root, 'someone'), '--json']));
    const good = readFileSync(file, 'utf8');
    t.after(() => writeFileSync(file, good, { mode: 0o600 }));
    const bad = corrupt(good);
    assert.notEqual(bad, good, 'the corruption applies');
    writeFileSync(file, bad, { mode: 0o600 });

    const stderr = failsCleanly(ca, ['pki', 'issue', 'another', '--role', 'ops', '--out', join(ca.root, 'another'), '--passphrase-file', ca.pass], 1, 'BRK_ERR_PKI_INVENTORY_CORRUPT');
    assert.match(stderr, /inventory\.json/);
    assert.equal(readFileSync(file, 'utf8'), bad, 'the corrupt file is left for the operator to inspect');
    lastAuditIsError(ca, 'issue', 'BRK_ERR_PKI_INVENTORY_CORRUPT');
    failsCleanly(ca, ['pki', 'list'], 1, 'BRK_ERR_PKI_INVENTORY_CORRUPT');
    auditIntact(ca);
    assert.deepEqual(filesIn(join(ca.root, 'another')), []);
  });
}

test('a missing inventory: BRK_ERR_PKI_INVENTORY_MISSING, nothing written', (t) => {
  const ca = makeCa(t);
  rmSync(ca.file('inventory.json'));
  const before = snapshot(ca.dir, { withAudit: true });
  const r = ca.signing(['pki', 'issue', 'x', '--role', 'ops', '--out', join(ca.root, 'x')]);
  assert.equal(r.code, 1);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_INVENTORY_MISSING');
  assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before);
});

const UNREADABLE: Array<[string, string[], (path: string) => void]> = [
  ['ca/intermediate.key replaced by a folder', ['ca', 'intermediate.key'], (p) => mkdirSync(p)],
  ['ca/root.crt missing', ['ca', 'root.crt'], () => {}],
];

for (const [what, parts, replace] of UNREADABLE) {
  test(`an unreadable CA file (${what}): BRK_ERR_PKI_FILE_READ naming the file, nothing changed`, (t) => {
    const ca = shared();
    const file = ca.file(...parts);
    const saved = `${file}.saved`;
    renameSync(file, saved);
    t.after(() => {
      rmSync(file, { recursive: true, force: true });
      renameSync(saved, file);
    });
    replace(file);
    const stderr = failsCleanly(ca, ['pki', 'issue', 'unlucky', '--role', 'ops', '--out', join(ca.root, 'unlucky'), '--passphrase-file', ca.pass], 1, 'BRK_ERR_PKI_FILE_READ');
    assert.ok(stderr.includes(file), `the message names ${file}: ${stderr}`);
    lastAuditIsError(ca, 'issue', 'BRK_ERR_PKI_FILE_READ');
  });
}

test('a full disk: BRK_ERR_PKI_FILE_WRITE, the store unchanged, and it works again once there is room', (t) => {
  if (process.getuid?.() !== 0) return t.skip('mounting a small tmpfs needs root');
  const base = mkdtempSync(join(tmpdir(), 'broker-full-'));
  const disk = join(base, 'disk');
  mkdirSync(disk);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', disk], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    rmSync(base, { recursive: true, force: true });
    return t.skip(`cannot mount a tmpfs: ${mounted.stderr.trim() || mounted.error?.message}`);
  }
  t.after(() => {
    if (spawnSync('umount', [disk]).status !== 0) spawnSync('umount', ['-l', disk]);
    rmdirSync(disk);
    rmSync(base, { recursive: true, force: true });
  });

  const ca = makeCa(t, { root: disk });
  const out = join(base, 'handout');
  // fill the disk: 64 KiB at a time, at most 8 MiB worth of tries for a 512 KiB disk
  const filler = join(disk, 'filler');
  const fd = openSync(filler, 'w');
  let full = false;
  try {
    const chunk = Buffer.alloc(64 * 1024, 0xa5);
    for (let i = 0; i < 128 && !full; i++) {
      try {
        writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        full = true;
      }
    }
  } finally {
    closeSync(fd);
  }
  assert.ok(full, 'the disk filled up');

  const before = snapshot(ca.dir, { withAudit: true });
  const r = ca.signing(['pki', 'issue', 'squeezed', '--role', 'ops', '--out', out]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_FILE_WRITE');
  assert.match(r.stderr, /ENOSPC/);
  assert.ok(r.stderr.includes(ca.dir), `the message names the file it could not write: ${r.stderr}`);
  const after = snapshot(ca.dir, { withAudit: true });
  const withoutAudit = (s: Record<string, string>) => Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'audit.log' && k !== 'audit.head'));
  assert.deepEqual(withoutAudit(after), withoutAudit(before), 'every store file as it was, and no temp file left');
  assert.deepEqual(filesIn(out), [], 'no hand-out file was published');

  rmSync(filler);
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: auditEntries(ca).length }, 'the audit log was not left half-written');
  const again = ca.signing(['pki', 'issue', 'squeezed', '--role', 'ops', '--out', out, '--json']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(filesIn(out), ['ca.crt', 'squeezed.crt', 'squeezed.key']);
});
