/** `broker pki renew`: a new key and certificate with the same roles (or SANs) while the old one stays valid. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { certField, certText, extension, json, publicKeyOf, sharedCa, verifyLeaf, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const shared = sharedCa();

test('renew gives a new key and certificate with the same roles; the old one stays valid', () => {
  const ca = shared();
  const old = json<IssuedJson>(ca.signing(['pki', 'issue', 'acme', '--role', 'billing', '--role', 'ops', '--out', join(ca.root, 'v1'), '--json']));
  const neu = json<IssuedJson>(ca.signing(['pki', 'renew', 'acme', '--out', join(ca.root, 'v2'), '--json']));

  assert.equal(neu.source, 'renew');
  assert.deepEqual(neu.roles, ['billing', 'ops']);
  assert.notEqual(neu.serial, old.serial);
  assert.equal(certField(neu.files.cert, 'subject'), certField(old.files.cert, 'subject'));
  assert.notEqual(publicKeyOf(neu.files.cert, 'x509'), publicKeyOf(old.files.cert, 'x509'), 'a new key');
  assert.equal(publicKeyOf(neu.files.key as string, 'pkey'), publicKeyOf(neu.files.cert, 'x509'));

  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).filter((r) => r.name === 'acme');
  assert.deepEqual(rows.map((r) => [r.serial, r.status]).sort(), [[old.serial, 'valid'], [neu.serial, 'valid']].sort());
  for (const cert of [old.files.cert, neu.files.cert]) {
    const v = verifyLeaf(ca, cert);
    assert.equal(v.code, 0, `${cert}: ${v.stdout}${v.stderr}`);
  }
});

test('renewing a server certificate keeps its SANs and replaces servers/NAME.crt; the old one stays valid', () => {
  const ca = shared();
  const old = json<IssuedJson>(ca.signing(['pki', 'server', 'edge', '--dns', 'edge.test.example', '--ip', '10.0.0.1', '--json']));
  const oldCopy = join(ca.root, 'edge-old.crt');
  writeFileSync(oldCopy, readFileSync(old.files.cert));
  const neu = json<IssuedJson>(ca.signing(['pki', 'renew', 'edge', '--json']));
  assert.equal(neu.type, 'server');
  assert.equal(neu.files.cert, ca.file('servers', 'edge.crt'));
  assert.equal(certField(neu.files.cert, 'serial').toLowerCase(), neu.serial);
  assert.equal(extension(certText(neu.files.cert), 'X509v3 Subject Alternative Name'), 'DNS:edge.test.example, IP Address:10.0.0.1');
  assert.equal(publicKeyOf(ca.file('servers', 'edge.key'), 'pkey'), publicKeyOf(neu.files.cert, 'x509'));
  assert.notEqual(publicKeyOf(neu.files.cert, 'x509'), publicKeyOf(oldCopy, 'x509'));
  for (const cert of [oldCopy, neu.files.cert]) assert.equal(verifyLeaf(ca, cert, { purpose: 'sslserver' }).code, 0);
  // no copy of the server key lands in the current folder (it did before the fix), so renewing again works
  assert.deepEqual(readdirSync(ca.root).filter((f) => f.startsWith('edge.')), []);
  const again = json<IssuedJson>(ca.signing(['pki', 'renew', 'edge', '--json']));
  assert.equal(again.files.cert, ca.file('servers', 'edge.crt'));
  // an explicit --out still writes a copy, as `server --out` does
  const copy = json<IssuedJson>(ca.signing(['pki', 'renew', 'edge', '--out', join(ca.root, 'edge-copy'), '--json']));
  assert.equal(copy.files.cert, join(ca.root, 'edge-copy', 'edge.crt'));
  assert.equal(readFileSync(copy.files.key as string, 'utf8'), readFileSync(ca.file('servers', 'edge.key'), 'utf8'));
});

test('a client renewal without --out hands out into the current folder, like issue', () => {
  const ca = shared();
  json(ca.signing(['pki', 'issue', 'here', '--role', 'ops', '--out', join(ca.root, 'here-v1'), '--json']));
  const r = json<IssuedJson>(ca.signing(['pki', 'renew', 'here', '--json']));
  assert.equal(r.files.cert, 'here.crt');
  assert.equal(publicKeyOf(join(ca.root, 'here.key'), 'pkey'), publicKeyOf(join(ca.root, 'here.crt'), 'x509'));
});

test('renew keeps the lifetime it is given', () => {
  const ca = shared();
  json(ca.signing(['pki', 'issue', 'short', '--role', 'ops', '--out', join(ca.root, 's1'), '--json']));
  const r = json<IssuedJson>(ca.signing(['pki', 'renew', 'short', '--ttl', '12h', '--out', join(ca.root, 's2'), '--json']));
  assert.equal((Date.parse(r.notAfter) - Date.parse(r.notBefore)) / 1000, 12 * 3600 + 60);
});

test('renew of an unknown or fully revoked name is refused', () => {
  const ca = shared();
  const unknown = ca.signing(['pki', 'renew', 'nobody', '--out', join(ca.root, 'n')]);
  assert.equal(unknown.code, 1);
  assert.equal(errorCode(unknown.stderr), 'BRK_ERR_PKI_IDENTITY_NOT_FOUND');
  json(ca.signing(['pki', 'issue', 'gone', '--role', 'ops', '--out', join(ca.root, 'g'), '--json']));
  assert.equal(ca.signing(['pki', 'revoke', 'gone']).code, 0);
  const revoked = ca.signing(['pki', 'renew', 'gone', '--out', join(ca.root, 'g2')]);
  assert.equal(revoked.code, 1);
  assert.equal(errorCode(revoked.stderr), 'BRK_ERR_PKI_IDENTITY_NOT_FOUND');
});
