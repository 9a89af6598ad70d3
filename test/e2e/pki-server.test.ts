/** `broker pki server`: the broker's own certificate, kept in the store with SANs from --dns/--ip. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { certField, certText, extension, json, publicKeyOf, sharedCa, snapshot, verifyLeaf, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const shared = sharedCa();

test('a server certificate: EKU serverAuth, SANs from --dns/--ip, kept as servers/NAME.crt + .key', () => {
  const ca = shared();
  const r = json<IssuedJson>(ca.signing(['pki', 'server', 'edge', '--dns', 'broker.test.example', '--dns', '*.svc.test.example', '--ip', '127.0.0.1', '--ip', '::1', '--json']));
  assert.equal(r.files.cert, ca.file('servers', 'edge.crt'));
  assert.equal(r.files.key, ca.file('servers', 'edge.key'));
  assert.equal(r.type, 'server');
  assert.deepEqual(r.roles, []);
  const text = certText(r.files.cert);
  assert.equal(certField(r.files.cert, 'subject'), 'CN = edge');
  assert.equal(extension(text, 'X509v3 Extended Key Usage'), 'TLS Web Server Authentication');
  assert.equal(extension(text, 'X509v3 Key Usage'), 'critical; Digital Signature');
  assert.equal(extension(text, 'X509v3 Subject Alternative Name'), 'DNS:broker.test.example, DNS:*.svc.test.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  assert.equal(statSync(ca.file('servers', 'edge.key')).mode & 0o777, 0o600);
  assert.equal(statSync(ca.file('servers')).mode & 0o777, 0o700);
  assert.equal(publicKeyOf(ca.file('servers', 'edge.key'), 'pkey'), publicKeyOf(r.files.cert, 'x509'));
  const ok = verifyLeaf(ca, r.files.cert, { purpose: 'sslserver' });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.notEqual(verifyLeaf(ca, r.files.cert, { purpose: 'sslclient' }).code, 0, 'not usable as a client certificate');
  const row = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((x) => x.name === 'edge');
  assert.equal(row?.type, 'server');
  assert.equal(row?.status, 'valid');
});

test('--out also writes a copy for another host', () => {
  const ca = shared();
  const out = join(ca.root, 'copy');
  const r = json<IssuedJson>(ca.signing(['pki', 'server', 'copied', '--dns', 'copied.test.example', '--out', out, '--json']));
  assert.equal(r.files.cert, join(out, 'copied.crt'));
  assert.equal(readFileSync(join(out, 'copied.crt'), 'utf8'), readFileSync(ca.file('servers', 'copied.crt'), 'utf8'));
  assert.equal(readFileSync(join(out, 'copied.key'), 'utf8'), readFileSync(ca.file('servers', 'copied.key'), 'utf8'));
});

const BAD_SANS: Array<[string, string[]]> = [
  ['no SAN at all', []],
  ['a DNS name with a space', ['--dns', 'not a host']],
  ['an IP that is not one', ['--ip', '300.1.2.3']],
];

for (const [what, args] of BAD_SANS) {
  test(`server refuses ${what} (exit 2, nothing changed)`, () => {
    const ca = shared();
    const before = snapshot(ca.dir, { withAudit: true });
    const r = ca.signing(['pki', 'server', 'bad', ...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_SAN_INVALID');
    assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before);
  });
}

test('a second server certificate for a valid NAME is refused', () => {
  const ca = shared();
  json(ca.signing(['pki', 'server', 'once', '--dns', 'once.test.example', '--json']));
  const r = ca.signing(['pki', 'server', 'once', '--dns', 'once.test.example']);
  assert.equal(r.code, 1);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_IDENTITY_EXISTS');
});
