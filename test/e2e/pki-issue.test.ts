/**
 * `broker pki issue`: the client certificate profile, the hand-out files, lifetimes, serials, and
 * refusing a name that already has a valid certificate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { auditEntries, certField, certText, extension, json, pemBlocks, publicKeyOf, secondsBetween, sharedCa, snapshot, verifyLeaf, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const shared = sharedCa();
const DAY = 86_400;

function issue(name: string, ...args: string[]): IssuedJson {
  const ca = shared();
  return json<IssuedJson>(ca.signing(['pki', 'issue', name, '--out', join(ca.root, 'out', name), '--json', ...args]));
}

test('a client certificate: CN=NAME, one OU per role, SPIFFE URI SAN, EKU clientAuth only, digitalSignature only', () => {
  const ca = shared();
  const r = issue('acme-billing', '--role', 'billing', '--role', 'reports');
  const text = certText(r.files.cert);
  assert.equal(certField(r.files.cert, 'subject'), 'OU = billing, OU = reports, CN = acme-billing');
  assert.equal(certField(r.files.cert, 'issuer'), 'CN = Broker CA Issuing CA');
  assert.equal(extension(text, 'X509v3 Subject Alternative Name'), 'URI:spiffe://test.example/client/acme-billing');
  assert.equal(extension(text, 'X509v3 Extended Key Usage'), 'TLS Web Client Authentication');
  assert.equal(extension(text, 'X509v3 Key Usage'), 'critical; Digital Signature');
  assert.equal(extension(text, 'X509v3 Basic Constraints'), 'critical; CA:FALSE');
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(text, /NIST CURVE: P-256/);
  assert.match(extension(text, 'X509v3 Subject Key Identifier') ?? '', /^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
  assert.equal(extension(text, 'X509v3 Authority Key Identifier'), extension(certText(ca.file('ca', 'intermediate.crt')), 'X509v3 Subject Key Identifier'));
  assert.deepEqual(r.roles, ['billing', 'reports']);
  assert.equal(r.type, 'client');
  assert.equal(r.serial, certField(r.files.cert, 'serial').toLowerCase());
  const v = verifyLeaf(ca, r.files.cert);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.equal(verifyLeaf(ca, r.files.cert, { purpose: 'sslserver' }).code === 0, false, 'not usable as a server certificate');
});

test('the hand-out: NAME.crt is leaf + issuing CA, NAME.key (0600) matches it, ca.crt is the root', () => {
  const ca = shared();
  const r = issue('handout-check', '--role', 'ops');
  assert.equal(r.files.key, join(ca.root, 'out', 'handout-check', 'handout-check.key'));
  const bundle = pemBlocks(readFileSync(r.files.cert, 'utf8'), 'CERTIFICATE');
  assert.equal(bundle.length, 2);
  assert.equal(bundle[1], readFileSync(ca.file('ca', 'intermediate.crt'), 'utf8'));
  assert.equal(readFileSync(r.files.ca, 'utf8'), readFileSync(ca.file('ca', 'root.crt'), 'utf8'));
  const key = r.files.key as string;
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.match(readFileSync(key, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(publicKeyOf(key, 'pkey'), publicKeyOf(r.files.cert, 'x509'));
  const inventory = JSON.parse(readFileSync(ca.file('inventory.json'), 'utf8'));
  assert.ok(!JSON.stringify(inventory).includes('PRIVATE KEY'), 'the CA keeps no copy of the key');
});

test('the default lifetime is 90 days (plus the one-minute backdating)', () => {
  const r = issue('default-ttl', '--role', 'ops');
  const start = certField(r.files.cert, 'startdate');
  const end = certField(r.files.cert, 'enddate');
  assert.equal(secondsBetween(start, end), 90 * DAY + 60);
  assert.equal(Date.parse(start), Date.parse(r.notBefore));
  assert.equal(Date.parse(end), Date.parse(r.notAfter));
});

test('--ttl 5m gives a five-minute certificate', () => {
  const r = issue('short-lived', '--role', 'ops', '--ttl', '5m');
  assert.equal(secondsBetween(certField(r.files.cert, 'startdate'), certField(r.files.cert, 'enddate')), 5 * 60 + 60);
});

test('a --ttl beyond the issuing CA\'s own lifetime stops at its notAfter', () => {
  const ca = shared();
  const r = issue('too-long', '--role', 'ops', '--ttl', '50y');
  assert.equal(certField(r.files.cert, 'enddate'), certField(ca.file('ca', 'intermediate.crt'), 'enddate'));
  assert.equal(verifyLeaf(ca, r.files.cert).code, 0);
});

test('serials are positive, at least 64 bits, and unique', () => {
  const ca = shared();
  for (let i = 0; i < 5; i++) issue(`serial-${i}`, '--role', 'ops');
  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json']));
  const serials = rows.map((r) => r.serial);
  assert.ok(serials.length >= 5);
  assert.equal(new Set(serials).size, serials.length, 'no serial repeats');
  for (const s of serials) {
    assert.match(s, /^[0-9a-f]+$/);
    assert.ok(s.length >= 16, `${s} has at least 64 bits`);
    assert.ok(parseInt(s.slice(0, 2), 16) < 0x80, `${s} is positive as a DER INTEGER (top bit clear)`);
    assert.ok(/[1-9a-f]/.test(s.slice(0, 2)), `${s} has no leading zero byte`);
  }
});

test('issue refuses a name that already has a valid certificate, and changes nothing', () => {
  const ca = shared();
  issue('taken', '--role', 'ops');
  const before = snapshot(ca.dir);
  const r = ca.signing(['pki', 'issue', 'taken', '--role', 'admin', '--out', join(ca.root, 'out', 'taken-again')]);
  assert.equal(r.code, 1);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_IDENTITY_EXISTS');
  assert.match(r.stderr, /renew/, 'the message says what to do instead');
  assert.deepEqual(snapshot(ca.dir), before);
  const last = auditEntries(ca).at(-1);
  assert.equal(last?.op, 'issue');
  assert.equal(last?.outcome, 'error');
  assert.equal(last?.code, 'BRK_ERR_PKI_IDENTITY_EXISTS');
});

test('a revoked name can be issued again', () => {
  const ca = shared();
  const first = issue('reissued', '--role', 'ops');
  assert.equal(ca.signing(['pki', 'revoke', 'reissued']).code, 0);
  const second = json<IssuedJson>(ca.signing(['pki', 'issue', 'reissued', '--role', 'ops', '--out', join(ca.root, 'out', 'reissued-2'), '--json']));
  assert.notEqual(second.serial, first.serial);
});

test('repeated and duplicate roles collapse to one OU each, in the order given', () => {
  const r = issue('dedupe', '--role', 'b', '--role', 'a', '--role', 'b');
  assert.equal(certField(r.files.cert, 'subject'), 'OU = b, OU = a, CN = dedupe');
});
