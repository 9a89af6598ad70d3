/**
 * `broker pki init`: the CA profile (root, intermediate, key types), keys at rest, file modes,
 * the initial CRLs, the passphrase rules and never overwriting an existing CA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { broker, errorCode, openssl, tempDir } from '../helpers/cli.ts';
import { certField, certText, extension, json, makeCa, pemBlocks, sharedCa, snapshot, verifyLeaf, type IssuedJson, type TestCa } from '../helpers/pki.ts';

const defaultCa = sharedCa();

const mode = (file: string) => statSync(file).mode & 0o777;

test('the root CA is self-signed: CA:TRUE pathlen 1, keyCertSign + cRLSign, EC P-256 with ECDSA-SHA256', () => {
  const ca = defaultCa();
  const root = ca.file('ca', 'root.crt');
  const text = certText(root);
  assert.equal(certField(root, 'subject'), certField(root, 'issuer'));
  assert.equal(openssl(['verify', '-CAfile', root, root]).code, 0, 'root verifies against itself');
  assert.equal(extension(text, 'X509v3 Basic Constraints'), 'critical; CA:TRUE, pathlen:1');
  assert.equal(extension(text, 'X509v3 Key Usage'), 'critical; Certificate Sign, CRL Sign');
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(text, /NIST CURVE: P-256/);
  assert.equal(extension(text, 'X509v3 Subject Key Identifier'), extension(text, 'X509v3 Authority Key Identifier'));
  assert.equal(readFileSync(ca.file('ca.crt'), 'utf8'), readFileSync(root, 'utf8'), 'ca.crt is the root');
});

test('the intermediate is signed by the root: CA:TRUE pathlen 0, keyCertSign + cRLSign, AKI = root SKI', () => {
  const ca = defaultCa();
  const root = ca.file('ca', 'root.crt');
  const intermediate = ca.file('ca', 'intermediate.crt');
  const text = certText(intermediate);
  assert.equal(certField(intermediate, 'issuer'), certField(root, 'subject'));
  assert.notEqual(certField(intermediate, 'subject'), certField(root, 'subject'));
  assert.equal(openssl(['verify', '-CAfile', root, intermediate]).code, 0);
  assert.equal(extension(text, 'X509v3 Basic Constraints'), 'critical; CA:TRUE, pathlen:0');
  const ku = extension(text, 'X509v3 Key Usage') ?? '';
  assert.match(ku, /^critical; /);
  assert.match(ku, /Certificate Sign/);
  assert.match(ku, /CRL Sign/);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.equal(extension(text, 'X509v3 Authority Key Identifier'), extension(certText(root), 'X509v3 Subject Key Identifier'));
  assert.equal(readFileSync(ca.file('chain.pem'), 'utf8'), readFileSync(intermediate, 'utf8') + readFileSync(root, 'utf8'), 'chain.pem is intermediate then root');
});

test('CA keys are encrypted PKCS#8 that open with the passphrase only', () => {
  const ca = defaultCa();
  for (const key of [ca.file('ca', 'root.key'), ca.file('ca', 'intermediate.key')]) {
    const pem = readFileSync(key, 'utf8');
    assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    assert.doesNotMatch(pem, /BEGIN PRIVATE KEY|BEGIN EC PRIVATE KEY/);
    assert.equal(openssl(['pkey', '-in', key, '-passin', `file:${ca.pass}`, '-noout']).code, 0, `${key} opens with the passphrase`);
    assert.notEqual(openssl(['pkey', '-in', key, '-passin', 'pass:wrong', '-noout']).code, 0, `${key} does not open without it`);
    const asn1 = openssl(['asn1parse', '-in', key]).stdout;
    for (const alg of [':PBES2', ':PBKDF2', ':hmacWithSHA256', ':aes-256-cbc']) assert.ok(asn1.includes(alg), `${key} uses ${alg.slice(1)}`);
  }
  const inventory = JSON.parse(readFileSync(ca.file('inventory.json'), 'utf8'));
  assert.equal(inventory.ca.encrypted, true);
  assert.equal(inventory.ca.keyType, 'ec-p256');
  assert.equal(inventory.ca.trustDomain, 'test.example');
});

test('key files are 0600 and folders 0700', () => {
  const ca = defaultCa();
  json(ca.signing(['pki', 'server', 'web', '--dns', 'web.test.example', '--json']));
  for (const dir of [ca.dir, ca.file('ca'), ca.file('crl'), ca.file('servers')]) {
    assert.equal(mode(dir), 0o700, `${dir} is 0700`);
  }
  for (const key of [ca.file('ca', 'root.key'), ca.file('ca', 'intermediate.key'), ca.file('servers', 'web.key'), ca.file('inventory.json'), ca.file('audit.log')]) {
    assert.equal(mode(key), 0o600, `${key} is 0600`);
  }
  for (const pub of [ca.file('ca.crt'), ca.file('crl.pem'), ca.file('ca', 'root.crt')]) {
    assert.equal(mode(pub), 0o644, `${pub} is 0644`);
  }
});

test('the initial CRLs cover both CA levels and pass `openssl verify -crl_check_all`', () => {
  const ca = defaultCa();
  const crls = pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL');
  assert.equal(crls.length, 2);
  const issuers = crls.map((c) => openssl(['crl', '-noout', '-issuer'], { input: c }).stdout.trim());
  assert.deepEqual(issuers, ['issuer=CN = Broker CA Issuing CA', 'issuer=CN = Broker CA Root']);
  for (const c of crls) assert.match(openssl(['crl', '-noout', '-text'], { input: c }).stdout, /No Revoked Certificates/);
  const r = openssl(['verify', '-CAfile', ca.file('ca.crt'), '-crl_check_all', '-CRLfile', ca.file('crl.pem'), ca.file('ca', 'intermediate.crt')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

const KEY_TYPES: Array<{ keyType: string; sig: RegExp; key: RegExp }> = [
  { keyType: 'ec-p384', sig: /Signature Algorithm: ecdsa-with-SHA384/, key: /NIST CURVE: P-384/ },
  { keyType: 'rsa-3072', sig: /Signature Algorithm: sha256WithRSAEncryption/, key: /Public-Key: \(3072 bit\)/ },
];

for (const { keyType, sig, key } of KEY_TYPES) {
  test(`--key-type ${keyType}: CA and leaves use that key type and algorithm`, (t) => {
    const ca = makeCa(t, { initArgs: ['--key-type', keyType] });
    for (const cert of [ca.file('ca', 'root.crt'), ca.file('ca', 'intermediate.crt')]) {
      const text = certText(cert);
      assert.match(text, sig);
      assert.match(text, key);
    }
    const out = join(ca.root, 'out');
    const issued = json<IssuedJson>(ca.signing(['pki', 'issue', 'alice', '--role', 'ops', '--out', out, '--json']));
    const leaf = certText(issued.files.cert);
    assert.match(leaf, sig);
    assert.match(leaf, key);
    assert.equal(extension(leaf, 'X509v3 Key Usage'), 'critical; Digital Signature');
    const v = verifyLeaf(ca, issued.files.cert);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });
}

test('an unknown --key-type is a usage error (exit 2) and creates nothing', (t) => {
  const root = tempDir(t);
  const r = broker(['pki', 'init', '--no-passphrase', '--key-type', 'ed25519', '--dir', join(root, 'pki')], { cwd: root });
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_KEY_TYPE');
  assert.equal(existsSync(join(root, 'pki')), false);
});

test('without a passphrase in a non-interactive run, init refuses (exit 2) and creates nothing', (t) => {
  const root = tempDir(t);
  const r = broker(['pki', 'init', '--dir', join(root, 'pki')], { cwd: root });
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE_PASSPHRASE_REQUIRED');
  assert.match(r.stderr, /--no-passphrase/, 'the message says how to opt out');
  assert.equal(existsSync(join(root, 'pki')), false);
});

test('BROKER_CA_PASSPHRASE is accepted instead of --passphrase-file', (t) => {
  const root = tempDir(t);
  const dir = join(root, 'pki');
  const r = broker(['pki', 'init', '--dir', dir], { cwd: root, env: { BROKER_CA_PASSPHRASE: 'from the environment' } });
  assert.equal(r.code, 0, r.stderr);
  const key = join(dir, 'ca', 'intermediate.key');
  assert.equal(openssl(['pkey', '-in', key, '-passin', 'pass:from the environment', '-noout']).code, 0);
});

test('--no-passphrase warns loudly and stores the keys unencrypted', (t) => {
  const root = tempDir(t);
  const dir = join(root, 'pki');
  const r = broker(['pki', 'init', '--no-passphrase', '--dir', dir], { cwd: root });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^warning: .*UNENCRYPTED/m);
  for (const key of ['root.key', 'intermediate.key']) {
    assert.match(readFileSync(join(dir, 'ca', key), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(mode(join(dir, 'ca', key)), 0o600);
  }
  assert.equal(JSON.parse(readFileSync(join(dir, 'inventory.json'), 'utf8')).ca.encrypted, false);
  const issued = broker(['pki', 'issue', 'bob', '--role', 'ops', '--out', join(root, 'out'), '--dir', dir], { cwd: root });
  assert.equal(issued.code, 0, `issue needs no passphrase then: ${issued.stderr}`);
});

test('init never overwrites an existing CA, whatever the options', (t) => {
  const ca: TestCa = makeCa(t);
  const before = snapshot(ca.dir, { withAudit: true });
  const attempts = [
    ['--passphrase-file', ca.pass],
    ['--no-passphrase'],
    ['--passphrase-file', ca.pass, '--key-type', 'rsa-3072', '--name', 'Other CA'],
  ];
  for (const args of attempts) {
    const r = ca.run(['pki', 'init', ...args]);
    assert.equal(r.code, 1, `init ${args.join(' ')}: ${r.stderr}`);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_CA_EXISTS');
  }
  assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before, 'not one byte of the store changed');
});
