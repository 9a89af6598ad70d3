/**
 * Keeping the root offline, with the built CLI: an existing store is migrated in one command (the
 * root key gets its own passphrase), exported, and removed from the host; day-to-day issue, revoke
 * and crl then work with the issuing CA's passphrase alone and republish the pre-signed root CRL
 * unchanged (a real broker keeps accepting clients against it), while rotate fails with a clear
 * code until the root is imported back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openssl, tempDir } from '../helpers/cli.ts';
import { auditEntries, makeCa, snapshot, type TestCa } from '../helpers/pki.ts';
import { request, type Identity } from '../helpers/broker.ts';
import { plainUpstream, serve } from '../helpers/serve.ts';
import { eventually } from '../helpers/within.ts';

const ROOT_PASSPHRASE = 'root passphrase kept apart';
const DAY = 86_400_000;

function rootPassFile(dir: string): string {
  const file = join(dir, 'root.pass');
  writeFileSync(file, `${ROOT_PASSPHRASE}\n`, { mode: 0o600 });
  return file;
}

function ok(r: { code: number | null; stderr: string; stdout: string }): string {
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The nextUpdate of a PEM CRL, by openssl. */
function nextUpdate(file: string): number {
  const out = openssl(['crl', '-noout', '-nextupdate', '-in', file]).stdout;
  return Date.parse(out.replace(/^nextUpdate=/, '').trim());
}

/** openssl verify against the store as a broker trusts it: root + chain.pem + every CRL. */
function trusted(ca: TestCa, leaf: string): boolean {
  return openssl(['verify', '-CAfile', ca.file('ca.crt'), '-untrusted', ca.file('chain.pem'), '-crl_check_all', '-CRLfile', ca.file('crl.pem'), '-purpose', 'sslclient', leaf]).code === 0;
}

function issue(ca: TestCa, name: string): Identity {
  ok(ca.signing(['pki', 'issue', name, '--role', 'user', '--out', join(ca.root, name)]));
  return { cert: readFileSync(join(ca.root, name, `${name}.crt`), 'utf8'), key: readFileSync(join(ca.root, name, `${name}.key`), 'utf8'), serial: '' } as Identity;
}

test('migrate, export, remove: issue/revoke/crl work with the root removed from the host, rotate asks for it, import brings it back', async (t) => {
  const ca = makeCa(t);
  const rootPass = rootPassFile(ca.root);
  const root = ['--root-passphrase-file', rootPass];
  ok(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']));
  const before = issue(ca, 'before');

  // one command: the root key is re-encrypted under its own passphrase
  ok(ca.signing(['pki', 'root', 'migrate', ...root, '--root-crl-validity', '200d']));
  assert.equal(openssl(['pkey', '-in', ca.file('ca', 'root.key'), '-passin', `file:${rootPass}`, '-noout']).code, 0, 'the root key opens with the root passphrase');
  assert.notEqual(openssl(['pkey', '-in', ca.file('ca', 'root.key'), '-passin', `file:${ca.pass}`, '-noout']).code, 0, 'and no longer with the issuing CA\'s');
  assert.equal(openssl(['pkey', '-in', ca.file('ca', 'intermediate.key'), '-passin', `file:${ca.pass}`, '-noout']).code, 0);
  const again = ca.signing(['pki', 'root', 'migrate', ...root]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /BRK_ERR_PKI_ROOT_MIGRATED/);

  // export pre-signs the root CRL for the period the root will be away
  const exp = join(tempDir(t), 'root-export');
  ok(ca.signing(['pki', 'root', 'export', '--out', exp, ...root, '--root-crl-validity', '365d']));
  const presigned = nextUpdate(ca.file('crl', 'root.crl'));
  assert.ok(presigned > Date.now() + 360 * DAY && presigned < Date.now() + 366 * DAY, `root CRL nextUpdate ${new Date(presigned).toISOString()} is 365 days out`);

  // remove refuses without --yes, and with a wrong root passphrase, and changes nothing then
  const unchanged = snapshot(ca.dir);
  const noYes = ca.run(['pki', 'root', 'remove', '--from', exp, ...root]);
  assert.equal(noYes.code, 2, noYes.stderr);
  const wrong = join(ca.root, 'wrong.pass');
  writeFileSync(wrong, 'not it\n');
  const badPass = ca.run(['pki', 'root', 'remove', '--from', exp, '--yes', '--root-passphrase-file', wrong]);
  assert.equal(badPass.code, 1);
  assert.match(badPass.stderr, /BRK_ERR_PKI_BAD_ROOT_PASSPHRASE/);
  const notExport = ca.run(['pki', 'root', 'remove', '--from', ca.root, '--yes', ...root]);
  assert.match(notExport.stderr, /BRK_ERR_PKI_ROOT_EXPORT_INVALID/);
  assert.deepEqual(snapshot(ca.dir), unchanged);

  ok(ca.run(['pki', 'root', 'remove', '--from', exp, '--yes', ...root]));
  assert.ok(!existsSync(ca.file('ca', 'root.key')), 'the root key is gone from the host');
  assert.ok(existsSync(ca.file('ca', 'root.crt')) && existsSync(ca.file('crl', 'root.crl')), 'what the broker needs stays');
  const status = JSON.parse(ok(ca.run(['pki', 'root', 'status', '--json']))) as { ownPassphrase: boolean; onHost: boolean; rootCrlNextUpdate: string };
  assert.deepEqual([status.ownPassphrase, status.onHost, Date.parse(status.rootCrlNextUpdate)], [true, false, presigned]);

  // a real broker on this store, started with the root already gone
  const up = await plainUpstream(t);
  const b = await serve(t, ca.root, ['listen: { host: 127.0.0.1, port: 0 }', 'admin: { port: 0 }', 'pki: { dir: ./pki }', 'tls: { server: localhost }', 'routes:', `  - { name: api, path: /api, upstream: "${up}", roles: [user] }`, ''].join('\n'));
  const caPem = readFileSync(ca.file('ca.crt'), 'utf8');
  const status200 = (id: Identity) => request(b.port, { id, ca: caPem, path: '/api/x' }).then((r) => r.status, (e: Error) => e.message);
  assert.equal(await status200(before), 200);

  // day-to-day: the issuing CA's passphrase only; the pre-signed root CRL is republished as it is
  const rootCrl = readFileSync(ca.file('crl', 'root.crl'), 'utf8');
  const after = issue(ca, 'after');
  ok(ca.signing(['pki', 'revoke', 'before', '--reason', 'keyCompromise']));
  ok(ca.signing(['pki', 'crl']));
  assert.equal(readFileSync(ca.file('crl', 'root.crl'), 'utf8'), rootCrl);
  assert.ok(readFileSync(ca.file('crl.pem'), 'utf8').endsWith(rootCrl), 'the bundle carries the pre-signed root CRL');
  assert.ok(trusted(ca, join(ca.root, 'after', 'after.crt')));
  assert.ok(!trusted(ca, join(ca.root, 'before', 'before.crt')), 'the revoked certificate is refused');

  // the running broker takes the new CRL bundle (the root's unchanged): the revoked identity is out, the new one in
  b.child.kill('SIGHUP');
  await eventually(async () => (await status200(before)) !== 200, 'the revoked identity refused after the reload', 20_000, 200);
  assert.equal(await status200(after), 200);
  assert.doesNotMatch(b.out.stderr, /BRK_ERR_TLS_CRL_ROLLBACK/);
  await b.stop();

  // root operations ask for the root: a clear code, nothing changed
  const beforeRotate = snapshot(ca.dir);
  for (const args of [['pki', 'rotate', 'intermediate', ...root], ['pki', 'rotate', 'root', ...root], ['pki', 'root', 'crl', ...root]]) {
    const r = ca.signing(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /BRK_ERR_PKI_ROOT_OFFLINE/);
    assert.match(r.stderr, /pki root import --from/);
  }
  assert.deepEqual(snapshot(ca.dir), beforeRotate);

  // brought back: rotate needs the root passphrase, and re-signs the root CRL
  ok(ca.run(['pki', 'root', 'import', '--from', exp, ...root]));
  const noRootPass = ca.signing(['pki', 'rotate', 'intermediate']);
  assert.equal(noRootPass.code, 2);
  assert.match(noRootPass.stderr, /BRK_ERR_USAGE_ROOT_PASSPHRASE_REQUIRED/);
  ok(ca.signing(['pki', 'rotate', 'intermediate', ...root]));
  assert.notEqual(readFileSync(ca.file('crl', 'root.crl'), 'utf8'), rootCrl, 'a root operation re-signs the root CRL');
  assert.ok(trusted(ca, join(ca.root, 'after', 'after.crt')), 'still trusted during the overlap');

  const ops = auditEntries(ca).filter((e) => e.op.startsWith('root-') && e.outcome === 'ok').map((e) => e.op);
  assert.deepEqual(ops, ['root-migrate', 'root-export', 'root-remove', 'root-import']);
  assert.ok(auditEntries(ca).some((e) => e.op === 'rotate-intermediate' && e.outcome === 'error' && e.code === 'BRK_ERR_PKI_ROOT_OFFLINE'));
  ok(ca.run(['pki', 'audit', 'verify']));
});

test('init with the root\'s own passphrase: issue never touches the root CRL (nextUpdate from --root-crl-validity); rotate root keeps the root passphrase', (t) => {
  const dir = tempDir(t);
  const rootPass = rootPassFile(dir);
  const ca = makeCa(t, { root: dir, initArgs: ['--root-passphrase-file', rootPass, '--root-crl-validity', '90d'] });
  const root = ['--root-passphrase-file', rootPass];
  const rootCrl = readFileSync(ca.file('crl', 'root.crl'), 'utf8');
  const at = nextUpdate(ca.file('crl', 'root.crl'));
  assert.ok(at > Date.now() + 89 * DAY && at < Date.now() + 91 * DAY);
  assert.notEqual(openssl(['pkey', '-in', ca.file('ca', 'root.key'), '-passin', `file:${ca.pass}`, '-noout']).code, 0, 'the root is not under the issuing CA\'s passphrase');
  issue(ca, 'alice');
  ok(ca.signing(['pki', 'revoke', 'alice']));
  assert.equal(readFileSync(ca.file('crl', 'root.crl'), 'utf8'), rootCrl);

  ok(ca.signing(['pki', 'rotate', 'root', '--overlap', '30d', ...root]));
  assert.equal(openssl(['pkey', '-in', ca.file('ca', 'root.key'), '-passin', `file:${rootPass}`, '-noout']).code, 0, 'the new root key is under the root passphrase');
  // both roots' CRLs (new and previous) are republished unchanged by day-to-day commands
  const rootCrls = () => Object.entries(snapshot(ca.dir)).filter(([f]) => /^crl\/root/.test(f));
  const signed = rootCrls();
  assert.equal(signed.length, 2, 'a CRL for each root during the overlap');
  issue(ca, 'bob');
  ok(ca.signing(['pki', 'crl']));
  ok(ca.signing(['pki', 'revoke', 'bob']));
  assert.deepEqual(rootCrls(), signed);
  assert.ok(!trusted(ca, join(ca.root, 'bob', 'bob.crt')));
  issue(ca, 'carol');
  assert.ok(trusted(ca, join(ca.root, 'carol', 'carol.crt')));
});

test('root remove killed at any point of its commit: the keys are never lost, the store verifies, and running it again finishes the job', (t) => {
  const dir = tempDir(t);
  const rootPass = rootPassFile(dir);
  const ca = makeCa(t, { root: dir, initArgs: ['--root-passphrase-file', rootPass] });
  const root = ['--root-passphrase-file', rootPass];
  const exp = join(dir, 'export');
  ok(ca.signing(['pki', 'root', 'export', '--out', exp, ...root]));
  for (const point of ['after-journal', 'mid-rename', 'after-publish']) {
    const killed = ca.run(['pki', 'root', 'remove', '--from', exp, '--yes', ...root], { env: { BROKER_FAULT: point } });
    assert.equal(killed.code, null, `${point}: killed (${killed.stderr})`);
    assert.ok(existsSync(ca.file('ca', 'root.key')), `${point}: the root key is still on the host`);
    ok(ca.run(['pki', 'audit', 'recover']));
    ok(ca.run(['pki', 'audit', 'verify']));
  }
  ok(ca.run(['pki', 'root', 'remove', '--from', exp, '--yes', ...root]));
  assert.ok(!existsSync(ca.file('ca', 'root.key')));
  ok(ca.run(['pki', 'audit', 'verify']));
});
