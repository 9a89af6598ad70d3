/**
 * `broker pki sign`: a third party's CSR is certified with the broker's subject, SAN and
 * extensions, whatever the CSR asked for; only its public key is used.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode, openssl } from '../helpers/cli.ts';
import { auditEntries, certField, certText, extension, json, publicKeyOf, sharedCa, snapshot, verifyLeaf, type IssuedJson } from '../helpers/pki.ts';

const shared = sharedCa();

/** A CSR made with openssl that asks for much more than the broker gives. */
function greedyCsr(dir: string, name: string, o: { der?: boolean; curve?: string } = {}): string {
  const csr = join(dir, `${name}.csr`);
  const r = openssl([
    'req', '-new', '-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${o.curve ?? 'P-256'}`, '-nodes', '-keyout', join(dir, `${name}.key`),
    '-subj', '/O=Evil Corp/OU=admin/CN=root-of-everything',
    '-addext', 'subjectAltName=DNS:evil.example,URI:spiffe://test.example/client/admin',
    '-addext', 'extendedKeyUsage=serverAuth,codeSigning',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign',
    ...(o.der ? ['-outform', 'DER'] : []),
    '-out', csr,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return csr;
}

test('a CSR signed by `sign` gets the broker\'s subject, SAN and extensions, not the CSR\'s', () => {
  const ca = shared();
  const csr = greedyCsr(ca.root, 'globex');
  const out = join(ca.root, 'out-globex');
  const r = json<IssuedJson>(ca.signing(['pki', 'sign', csr, '--name', 'globex', '--role', 'orders', '--out', out, '--json']));
  const text = certText(r.files.cert);
  assert.equal(certField(r.files.cert, 'subject'), 'OU = orders, CN = globex');
  assert.equal(extension(text, 'X509v3 Subject Alternative Name'), 'URI:spiffe://test.example/client/globex');
  assert.equal(extension(text, 'X509v3 Extended Key Usage'), 'TLS Web Client Authentication');
  assert.equal(extension(text, 'X509v3 Basic Constraints'), 'critical; CA:FALSE');
  assert.equal(extension(text, 'X509v3 Key Usage'), 'critical; Digital Signature');
  assert.doesNotMatch(text, /Evil|admin|evil\.example|root-of-everything/);
  assert.equal(publicKeyOf(r.files.cert, 'x509'), publicKeyOf(csr, 'req'), 'the CSR\'s key is certified');
  assert.equal(r.source, 'sign');
  assert.equal(r.files.key, undefined);
  assert.equal(existsSync(join(out, 'globex.key')), false, 'no key is made or written');
  const v = verifyLeaf(ca, r.files.cert);
  assert.equal(v.code, 0, v.stdout + v.stderr);
});

test('a DER CSR with a P-384 key is accepted too', () => {
  const ca = shared();
  const csr = greedyCsr(ca.root, 'initech', { der: true, curve: 'P-384' });
  const r = json<IssuedJson>(ca.signing(['pki', 'sign', csr, '--name', 'initech', '--role', 'orders', '--out', join(ca.root, 'out-initech'), '--json']));
  assert.match(certText(r.files.cert), /NIST CURVE: P-384/);
  assert.equal(certField(r.files.cert, 'subject'), 'OU = orders, CN = initech');
});

test('a CSR whose signature does not verify, or that is not a CSR, is refused and changes nothing', () => {
  const ca = shared();
  const good = readFileSync(greedyCsr(ca.root, 'tampered'), 'utf8');
  const b64 = good.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const der = Buffer.from(b64, 'base64');
  der[der.length - 5] = (der[der.length - 5] as number) ^ 0x01; // a bit of the signature
  const tampered = join(ca.root, 'tampered-bad.csr');
  writeFileSync(tampered, `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`);
  const garbage = join(ca.root, 'garbage.csr');
  writeFileSync(garbage, 'this is not a certificate request\n');

  const before = snapshot(ca.dir, { withAudit: true });
  for (const [csr, why] of [[tampered, /signature .* does not verify/], [garbage, /is not a PKCS#10 certificate request/]] as const) {
    const r = ca.signing(['pki', 'sign', csr, '--name', 'mallory', '--role', 'orders', '--out', join(ca.root, 'out-mallory')]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_CSR_INVALID');
    assert.match(r.stderr, why);
  }
  assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before);
  assert.ok(!auditEntries(ca).some((e) => e.name === 'mallory'));
});

test('sign needs --name and --role (exit 2)', () => {
  const ca = shared();
  const csr = greedyCsr(ca.root, 'incomplete');
  for (const args of [['--role', 'orders'], ['--name', 'incomplete']]) {
    const r = ca.signing(['pki', 'sign', csr, ...args]);
    assert.equal(r.code, 2);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE');
  }
});
