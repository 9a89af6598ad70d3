/**
 * Rotation flows with the built CLI: the server certificate (plan, dry run, replacement), the
 * names of a running broker's certificate changed in place, the issuing CA with an overlap (old
 * and new both trusted, then the old one retired), and renewing
 * everything that expires within a window.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { openssl } from '../helpers/cli.ts';
import { serve } from '../helpers/serve.ts';
import { eventually } from '../helpers/within.ts';
import { json, makeCa, pemBlocks, snapshot, type ListRow, type TestCa } from '../helpers/pki.ts';
import { readCrl } from '../../src/tls/crl-der.ts';

/** Each issuing CA's CRL number in the store's bundle, by issuer (hex of its DER Name). */
function crlNumbers(ca: TestCa): Map<string, bigint | undefined> {
  const out = new Map<string, bigint | undefined>();
  for (const b of pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL')) {
    const f = readCrl(Buffer.from(b.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
    out.set(f.issuer.toString('hex'), f.number);
  }
  return out;
}


/** openssl verify against the store as a broker would trust it: root + chain.pem + every CRL. */
function trusted(ca: TestCa, leaf: string): boolean {
  return openssl(['verify', '-CAfile', ca.file('ca.crt'), '-untrusted', ca.file('chain.pem'), '-crl_check_all', '-CRLfile', ca.file('crl.pem'), '-purpose', 'sslclient', leaf]).code === 0;
}

const leafFile = (ca: TestCa, name: string) => join(ca.root, name, `${name}.crt`);

function issue(ca: TestCa, name: string, ttl = '90d'): void {
  const r = ca.signing(['pki', 'issue', name, '--role', 'r', '--ttl', ttl, '--out', join(ca.root, name)]);
  assert.equal(r.code, 0, r.stderr);
}

test('rotate intermediate: plan and dry run change nothing; then old and new issuing CAs are both trusted until the overlap ends, and the old one is retired', (t) => {
  const ca = makeCa(t);
  issue(ca, 'before');
  const dry = ca.run(['pki', 'rotate', 'intermediate', '--overlap', '7d', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /plan: rotate the issuing CA/);
  assert.match(dry.stdout, /1 valid certificate from the old one must be renewed before then: before/);
  assert.match(dry.stdout, /dry run: nothing changed/);
  const untouched = snapshot(ca.dir);
  assert.deepEqual(snapshot(ca.dir), untouched);

  const oldChain = readFileSync(ca.file('chain.pem'), 'utf8');
  const numbersBefore = crlNumbers(ca);
  const r = ca.signing(['pki', 'rotate', 'intermediate', '--overlap', '7d', '--json']);
  assert.equal(r.code, 0, r.stderr);
  // every CA that had a CRL before goes on numbering upwards (RFC 5280 5.2.3; brokers refuse a lower number)
  const numbersAfter = crlNumbers(ca);
  for (const [issuer, n] of numbersBefore) assert.ok((numbersAfter.get(issuer) ?? -1n) > (n ?? -1n), `CRL number of ${issuer.slice(0, 24)}… went from ${n} to ${numbersAfter.get(issuer)}`);
  const rot = json<{ serial: string; previous: string; retireAt: string }>(r);
  assert.notEqual(rot.serial, rot.previous);
  issue(ca, 'after');

  // both issuing CAs are in the chain and each has its CRL in the bundle (plus the root's)
  assert.equal(pemBlocks(readFileSync(ca.file('chain.pem'), 'utf8'), 'CERTIFICATE').length, 3);
  assert.equal(pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL').length, 3);
  assert.notEqual(readFileSync(ca.file('chain.pem'), 'utf8'), oldChain);
  assert.ok(trusted(ca, leafFile(ca, 'before')), 'a certificate from the old issuing CA works during the overlap');
  assert.ok(trusted(ca, leafFile(ca, 'after')), 'a certificate from the new issuing CA works');
  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json']));
  assert.equal(rows.find((x) => x.name === 'before')?.issuer, 'previous');
  assert.equal(rows.find((x) => x.name === 'after')?.issuer, 'current');

  // revoking a certificate of the old issuing CA lands in that CA's CRL
  issue(ca, 'old-revoked');
  assert.equal(ca.signing(['pki', 'rotate', 'intermediate', '--overlap', '1s']).code, 0);
  // ('old-revoked' came from the second issuing CA, which the rotation just made "previous" for 1s)
  assert.equal(ca.signing(['pki', 'revoke', 'old-revoked']).code, 0);
  assert.ok(!trusted(ca, leafFile(ca, 'old-revoked')), 'revoked during the overlap');

  // after the 1 s overlap, publishing the CRLs retires the second issuing CA: its certificates stop working
  const deadline = Date.now() + 10_000;
  let retired = false;
  while (!retired && Date.now() < deadline) {
    assert.equal(ca.signing(['pki', 'crl']).code, 0);
    retired = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((x) => x.name === 'after')?.issuer === 'retired';
  }
  assert.ok(retired, 'the issuing CA whose overlap ended is retired');
  assert.ok(!trusted(ca, leafFile(ca, 'after')), 'a retired issuing CA is no longer trusted');
  assert.ok(trusted(ca, leafFile(ca, 'before')), 'the first issuing CA is still within its 7-day overlap');
  const rootCrl = openssl(['crl', '-in', ca.file('crl', 'root.crl'), '-noout', '-text']).stdout;
  assert.match(rootCrl, new RegExp(rot.serial.toUpperCase()), 'the retired issuing CA is listed in the root CRL');
  assert.match(rootCrl, /Superseded/);
  assert.equal(ca.run(['pki', 'audit', 'verify']).code, 0);
});

test('rotate server: plan, dry run, then a new key and certificate with the same SANs in the store', (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'edge', '--dns', 'edge.test', '--ip', '127.0.0.1']).code, 0);
  const before = readFileSync(ca.file('servers', 'edge.crt'), 'utf8');
  const dry = ca.run(['pki', 'rotate', 'server', 'edge', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /DNS:edge\.test, IP:127\.0\.0\.1/);
  assert.equal(readFileSync(ca.file('servers', 'edge.crt'), 'utf8'), before);
  const r = ca.signing(['pki', 'rotate', 'server', 'edge']);
  assert.equal(r.code, 0, r.stderr);
  const after = readFileSync(ca.file('servers', 'edge.crt'), 'utf8');
  assert.notEqual(after, before);
  const text = openssl(['x509', '-in', ca.file('servers', 'edge.crt'), '-noout', '-ext', 'subjectAltName']).stdout;
  assert.match(text, /DNS:edge\.test/);
  assert.match(text, /IP Address:127\.0\.0\.1/);
  const key = openssl(['pkey', '-in', ca.file('servers', 'edge.key'), '-pubout']).stdout;
  assert.equal(openssl(['x509', '-in', ca.file('servers', 'edge.crt'), '-noout', '-pubkey']).stdout, key, 'the new key matches the new certificate');
  assert.equal(ca.run(['pki', 'rotate', 'server', 'nosuch']).code, 1);
});

/** The certificate a broker on 127.0.0.1:PORT presents for SERVERNAME (verified against the store's ca.crt). */
function served(port: number, ca: TestCa, servername: string): Promise<PeerCertificate & { authorizationError?: Error }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca: readFileSync(ca.file('ca.crt')), rejectUnauthorized: false }, () => {
      const cert = s.getPeerCertificate();
      const authorizationError = s.authorized ? undefined : (s.authorizationError ?? new Error('not authorized'));
      s.destroy();
      resolve({ ...cert, ...(authorizationError ? { authorizationError } : {}) });
    });
    s.setTimeout(5_000, () => s.destroy(new Error('TLS handshake timed out')));
    s.once('error', reject);
  });
}

test('rotate server --dns/--ip: a running broker serves the new names after its reload, and the old certificate is revoked (superseded)', async (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']).code, 0);
  const old = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((r) => r.name === 'localhost' && r.type === 'server');
  // the probes below present no client certificate: each is a refused handshake, so no bans here
  const config = ['listen: { host: 127.0.0.1, port: 0 }', 'admin: { enabled: false }', 'bans: { enabled: false }', 'pki: { dir: ./pki }', 'tls: { server: localhost }', 'routes:', '  - { name: r, path: /r, upstream: "http://127.0.0.1:9", roles: [r] }', ''].join('\n');
  const b = await serve(t, ca.root, config);
  const before = await served(b.port, ca, 'localhost');
  assert.equal(before.subjectaltname, 'DNS:localhost, IP Address:127.0.0.1');

  const dry = ca.run(['pki', 'rotate', 'server', 'localhost', '--dns', 'broker.test', '--ip', '127.0.0.1', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /new key and certificate for DNS:broker\.test, IP:127\.0\.0\.1, valid .* \(now DNS:localhost, IP:127\.0\.0\.1\)/);
  assert.match(dry.stdout, /is revoked \(superseded\)/);
  const r = ca.signing(['pki', 'rotate', 'server', 'localhost', '--dns', 'broker.test', '--ip', '127.0.0.1']);
  assert.equal(r.code, 0, r.stderr);

  // the running broker picks the new certificate up by itself (file watching); a TLS client sees the new names
  let now = before;
  await eventually(async () => (now = await served(b.port, ca, 'broker.test')).serialNumber !== before.serialNumber, 'the broker serves the rotated certificate', 15_000);
  assert.equal(now.subjectaltname, 'DNS:broker.test, IP Address:127.0.0.1', 'the names given replace the old ones (localhost is gone)');
  assert.equal(now.authorizationError, undefined, 'the new chain verifies against ca.crt');

  const rows = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).filter((x) => x.name === 'localhost');
  assert.equal(rows.find((x) => x.serial === old?.serial)?.status, 'revoked', 'the old certificate is revoked after the swap');
  assert.match(openssl(['crl', '-in', ca.file('crl.pem'), '-noout', '-text']).stdout, /Superseded/);
  assert.equal(rows.filter((x) => x.status === 'valid').length, 1);
  assert.equal(ca.run(['pki', 'rotate', 'server', 'localhost', '--dns', 'not a name']).code, 2, 'an invalid name is a usage error');
});

test('renew --expiring renews exactly the identities inside the window, with progress', (t) => {
  const ca = makeCa(t);
  issue(ca, 'soon', '10d');
  issue(ca, 'later', '200d');
  const r = ca.signing(['pki', 'renew', '--expiring', '30d', '--out', join(ca.root, 'renewed'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[1\/1\] renewing client soon/);
  const done = json<Array<{ name: string }>>(r);
  assert.deepEqual(done.map((d) => d.name), ['soon']);
  assert.ok(trusted(ca, join(ca.root, 'renewed', 'soon', 'soon.crt')));
  const again = ca.signing(['pki', 'renew', '--expiring', '30d']);
  assert.match(again.stdout, /nothing expires within 30d/);
  assert.equal(ca.run(['pki', 'renew']).code, 2, 'NAME or --expiring is required');
});

test('rotate root: during the overlap both roots are trusted and server chains reach the old root; afterwards the old root is retired and chains end at the new one', (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'edge', '--dns', 'localhost']).code, 0);
  issue(ca, 'old-client');
  const oldRoot = join(ca.root, 'old-root.crt');
  writeFileSync(oldRoot, readFileSync(ca.file('ca.crt')));
  const dry = ca.run(['pki', 'rotate', 'root', '--overlap', '30d', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /plan: root rollover/);
  assert.match(dry.stdout, /dry run: nothing changed/);
  assert.equal(readFileSync(ca.file('ca.crt'), 'utf8'), readFileSync(oldRoot, 'utf8'));

  const r = ca.signing(['pki', 'rotate', 'root', '--overlap', '2s', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rot = json<{ root: string; previousRoot: string }>(r);
  const newRoot = join(ca.root, 'new-root.crt');
  writeFileSync(newRoot, readFileSync(ca.file('ca', 'root.crt')));
  assert.match(openssl(['x509', '-in', newRoot, '-noout', '-subject']).stdout, /Root G2/);
  issue(ca, 'new-client');
  assert.equal(ca.signing(['pki', 'rotate', 'server', 'edge']).code, 0);
  assert.equal(pemBlocks(readFileSync(ca.file('ca.crt'), 'utf8'), 'CERTIFICATE').length, 2, 'ca.crt holds both roots during the overlap');
  assert.ok(trusted(ca, leafFile(ca, 'old-client')));
  assert.ok(trusted(ca, leafFile(ca, 'new-client')));
  const serverVerify = (anchor: string) => openssl(['verify', '-CAfile', anchor, '-untrusted', ca.file('servers', 'edge.crt'), '-purpose', 'sslserver', ca.file('servers', 'edge.crt')]).code === 0;
  assert.ok(serverVerify(oldRoot), 'a partner that still trusts only the old root verifies the new server certificate');
  assert.ok(serverVerify(ca.file('ca.crt')));

  const deadline = Date.now() + 15_000;
  let retired = false;
  while (!retired && Date.now() < deadline) {
    assert.equal(ca.signing(['pki', 'crl']).code, 0);
    retired = pemBlocks(readFileSync(ca.file('ca.crt'), 'utf8'), 'CERTIFICATE').length === 1;
  }
  assert.ok(retired, 'the old root is retired after the overlap');
  assert.ok(serverVerify(newRoot), 'after the overlap the server chain ends at the new root');
  assert.ok(!trusted(ca, leafFile(ca, 'old-client')), 'certificates under the old root stop working');
  assert.ok(trusted(ca, leafFile(ca, 'new-client')));
  assert.notEqual(rot.root, rot.previousRoot);
  assert.equal(ca.run(['pki', 'audit', 'verify']).code, 0);
});
