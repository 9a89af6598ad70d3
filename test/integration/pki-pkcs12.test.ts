/**
 * toPkcs12 against the real consumers: the OpenSSL 3 CLI (without -legacy) and the JDK's keytool.
 * The test mints its own root / intermediate / leaf chain with the openssl CLI in a temp dir.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isBrokerError } from '../../src/errors.ts';
import { toPkcs12, type Pkcs12Input } from '../../src/pki/pkcs12.ts';

const HAVE_KEYTOOL = spawnSync('keytool', ['-help'], { stdio: 'ignore' }).error === undefined;

type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

interface Chain {
  key: KeyObject;
  keyPkcs8Der: Buffer;
  chainDer: Buffer[]; // leaf, intermediate, root
}

function newKey(type: KeyType): KeyObject {
  switch (type) {
    case 'ec-p256': return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384': return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa-2048': return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }
}

function pemToDers(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

/** Root and intermediate are EC P-256; the leaf key has the given type. */
function mintChain(dir: string, leafType: KeyType): Chain {
  const sub = fs.mkdtempSync(path.join(dir, `${leafType}-`));
  const file = (name: string) => path.join(sub, name);
  const writeKey = (name: string, key: KeyObject) =>
    fs.writeFileSync(file(name), key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  const req = (args: string[]) => execFileSync('openssl', ['req', '-x509', '-new', '-days', '2', ...args], { stdio: 'pipe' });

  const leafKey = newKey(leafType);
  writeKey('root.key', newKey('ec-p256'));
  writeKey('int.key', newKey('ec-p256'));
  writeKey('leaf.key', leafKey);
  const ca = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  req(['-key', file('root.key'), '-subj', '/CN=PKCS12 Test Root', ...ca, '-out', file('root.pem')]);
  req(['-key', file('int.key'), '-CA', file('root.pem'), '-CAkey', file('root.key'), '-subj', '/CN=PKCS12 Test Intermediate', ...ca, '-out', file('int.pem')]);
  req(['-key', file('leaf.key'), '-CA', file('int.pem'), '-CAkey', file('int.key'), '-subj', `/CN=leaf ${leafType}`,
    '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'extendedKeyUsage=clientAuth', '-out', file('leaf.pem')]);

  const certDer = (name: string) => pemToDers(fs.readFileSync(file(name), 'utf8'), 'CERTIFICATE')[0]!;
  return {
    key: leafKey,
    keyPkcs8Der: leafKey.export({ format: 'der', type: 'pkcs8' }),
    chainDer: [certDer('leaf.pem'), certDer('int.pem'), certDer('root.pem')],
  };
}

let fileCounter = 0;
/** Writes the PFX and the password file (no trailing newline; both tools read the first line). */
function writePfx(dir: string, pfx: Buffer, password: string): { p12: string; pw: string } {
  const n = ++fileCounter;
  const p12 = path.join(dir, `id-${n}.p12`);
  const pw = path.join(dir, `id-${n}.pw`);
  fs.writeFileSync(p12, pfx);
  fs.writeFileSync(pw, password, { mode: 0o600 });
  return { p12, pw };
}

function writePassword(dir: string, password: string): string {
  const pw = path.join(dir, `other-${++fileCounter}.pw`);
  fs.writeFileSync(pw, password, { mode: 0o600 });
  return pw;
}

function openssl(p12: string, pw: string, ...args: string[]) {
  return spawnSync('openssl', ['pkcs12', '-in', p12, '-passin', `file:${pw}`, ...args], { encoding: 'utf8' });
}

function keytool(p12: string, pw: string) {
  // English output and a UTF-8 password file, whatever the machine's locale (JDK 17 still uses it by default).
  return spawnSync('keytool', ['-J-Duser.language=en', '-J-Dfile.encoding=UTF-8', '-list', '-v', '-storetype', 'PKCS12',
    '-keystore', p12, '-storepass:file', pw], { encoding: 'utf8' });
}

const sha1Hex = (der: Buffer) => createHash('sha1').update(der).digest('hex');

/** Everything OpenSSL 3 (no -legacy) can tell about the file: algorithms, bags, attributes, certs and key. */
function assertOpensslReads(p12: string, pw: string, chain: Chain, friendlyName: string | undefined): void {
  const info = openssl(p12, pw, '-info', '-nodes');
  assert.equal(info.status, 0, `openssl -info failed:\n${info.stderr}`);
  // OpenSSL accepts a MAC keyed with a mis-encoded (UTF-8 instead of BMPString) password, but warns.
  assert.doesNotMatch(info.stderr, /broken algorithm/i);
  const mac = /^MAC: sha256, Iteration (\d+)$/m.exec(info.stderr);
  assert.ok(mac, `no HMAC-SHA256 MAC in:\n${info.stderr}`);
  assert.ok(Number(mac[1]) >= 2048);
  const pbes2 = 'PBES2, PBKDF2, AES-256-CBC, Iteration (\\d+), PRF hmacWithSHA256';
  const certsEnc = new RegExp(`^PKCS7 Encrypted data: ${pbes2}$`, 'm').exec(info.stderr);
  const keyEnc = new RegExp(`^Shrouded Keybag: ${pbes2}$`, 'm').exec(info.stderr);
  assert.ok(certsEnc, `certificates are not in PBES2/AES-256 EncryptedData:\n${info.stderr}`);
  assert.ok(keyEnc, `key is not in a PBES2/AES-256 shrouded key bag:\n${info.stderr}`);
  assert.ok(Number(certsEnc[1]) >= 2048 && Number(keyEnc[1]) >= 2048);
  assert.equal(info.stderr.match(/^Certificate bag$/gm)?.length, 3);
  assert.equal(info.stderr.match(/^Shrouded Keybag/gm)?.length, 1);

  // localKeyId (SHA-1 of the leaf) on exactly the key bag and the leaf's cert bag.
  const keyIds = [...info.stdout.matchAll(/localKeyID: ([0-9A-F ]+)/g)].map((m) => m[1]!.replace(/ /g, '').toLowerCase());
  assert.deepEqual(keyIds, [sha1Hex(chain.chainDer[0]!), sha1Hex(chain.chainDer[0]!)]);
  const names = [...info.stdout.matchAll(/friendlyName: (.*)$/gm)].map((m) => m[1]);
  // OpenSSL 3.0 prints BMPStrings lossily (one byte per character), so only ASCII names are compared here.
  assert.deepEqual(names, friendlyName === undefined ? [] : [friendlyName, friendlyName]);

  const certs = openssl(p12, pw, '-nokeys');
  assert.equal(certs.status, 0, certs.stderr);
  assert.deepEqual(pemToDers(certs.stdout, 'CERTIFICATE'), chain.chainDer, 'chain did not round-trip in order');

  const keyOut = openssl(p12, pw, '-nocerts', '-nodes');
  assert.equal(keyOut.status, 0, keyOut.stderr);
  const keyDers = pemToDers(keyOut.stdout, 'PRIVATE KEY');
  assert.equal(keyDers.length, 1);
  assert.deepEqual(keyDers[0], chain.keyPkcs8Der, 'key did not round-trip byte for byte');
  const key = createPrivateKey({ key: keyDers[0]!, format: 'der', type: 'pkcs8' });
  assert.ok(key.equals(chain.key));
  assert.ok(new X509Certificate(chain.chainDer[0]!).checkPrivateKey(key), 'key does not match the leaf certificate');
}

function assertKeytoolLists(p12: string, pw: string, chain: Chain, friendlyName: string | undefined): void {
  const out = keytool(p12, pw);
  assert.equal(out.status, 0, `keytool failed:\n${out.stdout}\n${out.stderr}`);
  assert.match(out.stdout, /Your keystore contains 1 entry/);
  assert.equal(out.stdout.match(/^Entry type: PrivateKeyEntry$/gm)?.length, 1);
  assert.match(out.stdout, /^Certificate chain length: 3$/m);
  if (friendlyName !== undefined) assert.match(out.stdout, new RegExp(`^Alias name: ${friendlyName}$`, 'm'));
  const fingerprints = [...out.stdout.matchAll(/^\s+SHA256: ([0-9A-F:]+)$/gm)].map((m) => m[1]);
  assert.deepEqual(fingerprints, chain.chainDer.map((d) => new X509Certificate(d).fingerprint256), 'keytool chain differs');
}

test('toPkcs12 output opens in OpenSSL 3 (no -legacy) and keytool', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-pkcs12-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const keytoolCase = (t: TestContext, name: string, fn: (st: TestContext) => void) =>
    t.test(name, (st) => {
      if (!HAVE_KEYTOOL) {
        st.skip('keytool not installed');
        return;
      }
      fn(st);
    });

  const keyCases: { type: KeyType; friendlyName: string | undefined }[] = [
    { type: 'ec-p256', friendlyName: 'alice' },
    { type: 'ec-p384', friendlyName: 'bob.example-01' },
    { type: 'rsa-2048', friendlyName: undefined },
  ];
  for (const { type, friendlyName } of keyCases) {
    await t.test(`${type} leaf key, friendlyName ${friendlyName ?? 'absent'}`, async (t) => {
      const chain = mintChain(dir, type);
      const password = `Correct horse ${type} battery staple!`;
      const input: Pkcs12Input = { keyPkcs8Der: chain.keyPkcs8Der, chainDer: chain.chainDer, password };
      if (friendlyName !== undefined) input.friendlyName = friendlyName;
      const { p12, pw } = writePfx(dir, toPkcs12(input), password);
      const wrong = writePassword(dir, `${password}?`);

      await t.test('openssl reads key, 3 certs in order, attributes and modern algorithms', () => {
        assertOpensslReads(p12, pw, chain, friendlyName);
      });
      await t.test('openssl refuses a wrong password', () => {
        const out = openssl(p12, wrong, '-info', '-noout');
        assert.notEqual(out.status, 0);
        assert.match(out.stderr, /Mac verify error/);
      });
      await keytoolCase(t, 'keytool lists one PrivateKeyEntry with the 3-certificate chain', () => {
        assertKeytoolLists(p12, pw, chain, friendlyName);
      });
      await keytoolCase(t, 'keytool refuses a wrong password', () => {
        const out = keytool(p12, wrong);
        assert.notEqual(out.status, 0);
        assert.match(out.stdout + out.stderr, /password was incorrect/);
      });
    });
  }

  const passwords = [
    { label: 'non-ASCII password (BMP)', password: 'pässwörd-✓' },
    { label: 'non-ASCII password outside the BMP (surrogate pairs)', password: 'κλειδί-🔑' },
  ];
  for (const { label, password } of passwords) {
    await t.test(label, async (t) => {
      const chain = mintChain(dir, 'ec-p256');
      const { p12, pw } = writePfx(dir, toPkcs12({ ...chain, password, friendlyName: 'carol' }), password);

      await t.test('openssl reads it: PBES2 got UTF-8, the MAC KDF got UTF-16', () => {
        assertOpensslReads(p12, pw, chain, 'carol');
      });
      await t.test('openssl refuses look-alike passwords (NFD form, ASCII folding)', () => {
        for (const other of [password.normalize('NFD'), password.normalize('NFKD').replace(/[^\x20-\x7e]/g, '')]) {
          if (other === password) continue;
          const out = openssl(p12, writePassword(dir, other), '-info', '-noout');
          assert.notEqual(out.status, 0, `accepted ${JSON.stringify(other)}`);
          assert.match(out.stderr, /Mac verify error/);
        }
      });
      await keytoolCase(t, 'keytool opens it, or hits the known JDK non-ASCII PBE limitation', (st) => {
        const out = keytool(p12, pw);
        if (out.status === 0) {
          assertKeytoolLists(p12, pw, chain, 'carol');
          return;
        }
        // JDK 17 cannot use a non-ASCII password with PBES2 at all (OpenSSL-made files included):
        // "getSecretKey failed: Password is not ASCII". Any other failure would be ours.
        assert.match(out.stdout + out.stderr, /Password is not ASCII/, `unexpected keytool failure:\n${out.stdout}\n${out.stderr}`);
        st.diagnostic('this JDK refuses non-ASCII PBES2 passwords ("Password is not ASCII"); only OpenSSL checked the file');
      });
    });
  }

  await t.test('friendlyName is a BMPString, visible in the (unencrypted) key bag attributes', () => {
    const chain = mintChain(dir, 'ec-p256');
    const name = 'dörte-✓';
    const pfx = toPkcs12({ ...chain, password: 'pw', friendlyName: name });
    const utf16be = Buffer.from(name, 'utf16le').swap16();
    assert.ok(pfx.includes(Buffer.concat([Buffer.from([0x1e, utf16be.length]), utf16be])));
    if (HAVE_KEYTOOL) {
      const { p12, pw } = writePfx(dir, pfx, 'pw');
      assert.match(keytool(p12, pw).stdout, new RegExp(`^Alias name: ${name}$`, 'm'));
    }
  });

  await t.test('salts and IVs are fresh for every export', () => {
    const chain = mintChain(dir, 'ec-p256');
    const input = { ...chain, password: 'same' };
    assert.notDeepEqual(toPkcs12(input), toPkcs12(input));
  });

  await t.test('bad input is refused with BRK_ERR_PKI_CRYPTO', () => {
    const chain = mintChain(dir, 'ec-p256');
    const other = mintChain(dir, 'ec-p256');
    const good: Pkcs12Input = { keyPkcs8Der: chain.keyPkcs8Der, chainDer: chain.chainDer, password: 'pw' };
    const refused = (input: Pkcs12Input, message: RegExp) =>
      assert.throws(() => toPkcs12(input), (err) => isBrokerError(err, 'BRK_ERR_PKI_CRYPTO') && message.test(err.message));
    refused({ ...good, password: '' }, /non-empty password/);
    refused({ ...good, password: 'half a surrogate \ud83d' }, /not valid Unicode/);
    refused({ ...good, chainDer: [] }, /at least the leaf/);
    refused({ ...good, chainDer: [...chain.chainDer].reverse() }, /not leaf-first/);
    refused({ ...good, chainDer: [chain.chainDer[0]!, Buffer.from('not a certificate')] }, /not valid DER/);
    refused({ ...good, keyPkcs8Der: other.keyPkcs8Der }, /does not match the leaf/);
    refused({ ...good, keyPkcs8Der: Buffer.from('not a key') }, /not unencrypted PKCS#8/);
  });
});
