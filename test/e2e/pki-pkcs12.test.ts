/** `broker pki issue --p12`: the PKCS#12 opens in OpenSSL 3 (no -legacy) and in the JDK's keytool. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openssl } from '../helpers/cli.ts';
import { json, pemBlocks, publicKeyOf, sharedCa, type IssuedJson } from '../helpers/pki.ts';

const shared = sharedCa();
const KEYTOOL = spawnSync('keytool', ['-help'], { stdio: 'ignore' }).error === undefined;

function issueP12(name: string, passwordFile?: string): IssuedJson {
  const ca = shared();
  const args = ['pki', 'issue', name, '--role', 'ops', '--role', 'billing', '--p12', '--out', join(ca.root, name), '--json'];
  return json<IssuedJson>(ca.signing(passwordFile ? [...args, '--password-file', passwordFile] : args));
}

test('the PKCS#12 opens in openssl with its password: key, leaf, intermediate and root', () => {
  const ca = shared();
  const pw = join(ca.root, 'p12.pass');
  writeFileSync(pw, 'hand-over secret\n', { mode: 0o600 });
  const r = issueP12('p12-openssl', pw);
  const p12 = r.files.p12 as string;
  assert.equal(statSync(p12).mode & 0o777, 0o600);
  assert.equal(r.files.p12Password, undefined, 'a given password is not written anywhere');

  const info = openssl(['pkcs12', '-in', p12, '-passin', `file:${pw}`, '-info', '-nodes']);
  assert.equal(info.code, 0, info.stderr);
  const all = info.stdout + info.stderr;
  assert.match(all, /MAC: sha256/);
  assert.match(all, /AES-256-CBC/);
  assert.match(all, /friendlyName: p12-openssl/);
  assert.equal(pemBlocks(info.stdout, 'PRIVATE KEY').length, 1);
  const certs = pemBlocks(info.stdout, 'CERTIFICATE');
  assert.equal(certs.length, 3);
  const expected = [...pemBlocks(readFileSync(r.files.cert, 'utf8'), 'CERTIFICATE'), readFileSync(ca.file('ca', 'root.crt'), 'utf8')];
  assert.deepEqual(certs.map((c) => c.trim()), expected.map((c) => c.trim()), 'leaf, intermediate, root');

  const keyFile = join(ca.root, 'from-p12.key');
  writeFileSync(keyFile, pemBlocks(info.stdout, 'PRIVATE KEY')[0] as string, { mode: 0o600 });
  assert.equal(publicKeyOf(keyFile, 'pkey'), publicKeyOf(r.files.cert, 'x509'), 'the key matches the certificate');
  assert.equal(readFileSync(keyFile, 'utf8'), readFileSync(r.files.key as string, 'utf8'), 'the same key as NAME.key');

  const wrong = openssl(['pkcs12', '-in', p12, '-passin', 'pass:not the password', '-info', '-nodes']);
  assert.notEqual(wrong.code, 0, 'a wrong password does not open it');
});

test('without a password, one is generated and written to NAME.p12.pass (0600)', () => {
  const r = issueP12('p12-generated');
  const pass = r.files.p12Password as string;
  assert.ok(pass.endsWith('p12-generated.p12.pass'));
  assert.equal(statSync(pass).mode & 0o777, 0o600);
  assert.match(readFileSync(pass, 'utf8'), /^[A-Za-z2-9]{24}\n$/);
  const info = openssl(['pkcs12', '-in', r.files.p12 as string, '-passin', `file:${pass}`, '-nokeys']);
  assert.equal(info.code, 0, info.stderr);
});

test('the PKCS#12 opens in keytool: alias NAME, a private key entry with a 3-certificate chain', (t) => {
  if (!KEYTOOL) return t.skip('keytool is not installed');
  const ca = shared();
  const pw = join(ca.root, 'keytool.pass');
  writeFileSync(pw, 'keytool secret\n', { mode: 0o600 });
  const r = issueP12('p12-keytool', pw);
  const kt = spawnSync('keytool', ['-list', '-v', '-storetype', 'PKCS12', '-keystore', r.files.p12 as string, '-storepass:file', pw], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(kt.status, 0, kt.stdout + kt.stderr);
  assert.match(kt.stdout, /Alias name: p12-keytool/);
  assert.match(kt.stdout, /Entry type: PrivateKeyEntry/);
  assert.match(kt.stdout, /Certificate chain length: 3/);
  assert.match(kt.stdout, /Owner: CN=p12-keytool, OU=billing, OU=ops/);
  assert.match(kt.stdout, /Owner: CN=Broker CA Root/);
});
