/**
 * `broker pki revoke` and `broker pki crl`: `openssl verify` with the CRLs accepts a certificate
 * and rejects it after revoke; the CRL set covers every CA level; --out and --next-update (that
 * publication only; test/e2e/pki-crl-lifetime.test.ts has the lifetime rules).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode, openssl } from '../helpers/cli.ts';
import { certField, json, pemBlocks, secondsBetween, sharedCa, snapshot, verifyLeaf, type IssuedJson, type ListRow } from '../helpers/pki.ts';

const shared = sharedCa();

function issue(name: string): IssuedJson {
  const ca = shared();
  return json<IssuedJson>(ca.signing(['pki', 'issue', name, '--role', 'ops', '--out', join(ca.root, 'out', name), '--json']));
}

/** Each CRL of a PEM bundle as `openssl crl -text`. */
function crlTexts(file: string): string[] {
  return pemBlocks(readFileSync(file, 'utf8'), 'X509 CRL').map((pem) => {
    const r = openssl(['crl', '-noout', '-text'], { input: pem });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  });
}

function crlNumber(text: string): number {
  return Number(/X509v3 CRL Number: *\n\s+(\d+)/.exec(text)?.[1]);
}

test('openssl verify with the CRLs accepts an issued client certificate and rejects it after revoke', () => {
  const ca = shared();
  const cert = issue('alice').files.cert;
  const before = verifyLeaf(ca, cert);
  assert.equal(before.code, 0, before.stdout + before.stderr);
  assert.match(before.stdout, /: OK$/m);

  const r = ca.signing(['pki', 'revoke', 'alice', '--reason', 'keyCompromise', '--json']);
  const revoked = json<Array<{ name: string; serial: string; reason: string; revokedAt: string }>>(r);
  assert.equal(revoked.length, 1);
  assert.equal(revoked[0]?.reason, 'keyCompromise');

  const after = verifyLeaf(ca, cert);
  assert.notEqual(after.code, 0);
  assert.match(after.stdout + after.stderr, /certificate revoked/);

  const [intermediate] = crlTexts(ca.file('crl.pem'));
  assert.match(intermediate as string, new RegExp(`Serial Number: ${certField(cert, 'serial')}`, 'i'));
  assert.match(intermediate as string, /Key Compromise/);
  const row = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((x) => x.name === 'alice');
  assert.equal(row?.status, 'revoked');
});

test('revoke by serial revokes that one certificate; the other stays good', () => {
  const ca = shared();
  const a = issue('by-serial-a');
  const b = issue('by-serial-b');
  // colons and upper case as openssl prints serials are accepted too
  const serialAsPrinted = a.serial.toUpperCase().match(/../g)?.join(':') as string;
  assert.equal(ca.signing(['pki', 'revoke', serialAsPrinted]).code, 0);
  assert.notEqual(verifyLeaf(ca, a.files.cert).code, 0);
  assert.equal(verifyLeaf(ca, b.files.cert).code, 0);
});

test('revoking twice, or something unknown, is refused and changes nothing', () => {
  const ca = shared();
  issue('twice');
  assert.equal(ca.signing(['pki', 'revoke', 'twice']).code, 0);
  const before = snapshot(ca.dir);
  const again = ca.signing(['pki', 'revoke', 'twice']);
  assert.equal(again.code, 1);
  assert.equal(errorCode(again.stderr), 'BRK_ERR_PKI_ALREADY_REVOKED');
  const unknown = ca.signing(['pki', 'revoke', 'no-such-name']);
  assert.equal(unknown.code, 1);
  assert.equal(errorCode(unknown.stderr), 'BRK_ERR_PKI_IDENTITY_NOT_FOUND');
  const reason = ca.signing(['pki', 'revoke', 'twice', '--reason', 'bored']);
  assert.equal(reason.code, 2);
  assert.equal(errorCode(reason.stderr), 'BRK_ERR_USAGE');
  assert.deepEqual(snapshot(ca.dir), before);
});

test('the CRL set covers every CA level: -crl_check_all passes with crl.pem, fails with the issuing CA\'s CRL alone', () => {
  const ca = shared();
  const cert = issue('levels').files.cert;
  const issuers = pemBlocks(readFileSync(ca.file('crl.pem'), 'utf8'), 'X509 CRL').map((pem) => openssl(['crl', '-noout', '-issuer'], { input: pem }).stdout.trim());
  assert.deepEqual(issuers, ['issuer=CN = Broker CA Issuing CA', 'issuer=CN = Broker CA Root']);
  assert.equal(verifyLeaf(ca, cert).code, 0);
  const partial = verifyLeaf(ca, cert, { crlFile: ca.file('crl', 'intermediate.crl') });
  assert.notEqual(partial.code, 0, 'without the root\'s CRL, -crl_check_all cannot check the intermediate');
  assert.match(partial.stdout + partial.stderr, /unable to get certificate CRL/);
  assert.equal(readFileSync(ca.file('crl.pem'), 'utf8'), readFileSync(ca.file('crl', 'intermediate.crl'), 'utf8') + readFileSync(ca.file('crl', 'root.crl'), 'utf8'));
});

test('crl --out FILE writes both CRL levels in one PEM; --next-update sets nextUpdate of that publication only', () => {
  const ca = shared();
  const numbersBefore = crlTexts(ca.file('crl.pem')).map(crlNumber);
  const out = join(ca.root, 'published', 'crl.pem');
  const r = json<{ files: string[]; nextUpdate: string; revoked: number }>(ca.signing(['pki', 'crl', '--out', out, '--next-update', '7d', '--json']));
  assert.ok(r.files.includes(out));
  assert.equal(readFileSync(out, 'utf8'), readFileSync(ca.file('crl.pem'), 'utf8'));

  const texts = crlTexts(out);
  assert.equal(texts.length, 2);
  assert.match(texts[0] as string, /Issuer: CN = Broker CA Issuing CA/);
  assert.match(texts[1] as string, /Issuer: CN = Broker CA Root/);
  // each level verifies against its own CA certificate
  const pems = pemBlocks(readFileSync(out, 'utf8'), 'X509 CRL');
  for (const [pem, caCert] of [[pems[0], ca.file('ca', 'intermediate.crt')], [pems[1], ca.file('ca', 'root.crt')]] as const) {
    const v = openssl(['crl', '-noout', '-CAfile', caCert], { input: pem });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stderr + v.stdout, /verify OK/);
  }
  for (const text of texts) {
    const last = /Last Update: (.+)/.exec(text)?.[1] as string;
    const next = /Next Update: (.+)/.exec(text)?.[1] as string;
    assert.equal(secondsBetween(last, next), 7 * 86_400 + 60, 'nextUpdate is 7 days out (thisUpdate is backdated a minute)');
  }
  assert.deepEqual(texts.map(crlNumber), numbersBefore.map((n) => n + 1), 'CRL numbers go up');
  assert.equal(Date.parse(r.nextUpdate), Date.parse(/Next Update: (.+)/.exec(texts[0] as string)?.[1] as string));

  // later CRLs (revoke republishes them) go back to the store's default, 30 days (issue 19)
  issue('later');
  assert.equal(ca.signing(['pki', 'revoke', 'later']).code, 0);
  for (const text of crlTexts(ca.file('crl.pem'))) {
    assert.equal(secondsBetween(/Last Update: (.+)/.exec(text)?.[1] as string, /Next Update: (.+)/.exec(text)?.[1] as string), 30 * 86_400 + 60);
  }
});

test('crl --next-update with a bad duration is a usage error and changes nothing', () => {
  const ca = shared();
  const before = snapshot(ca.dir, { withAudit: true });
  const r = ca.signing(['pki', 'crl', '--next-update', 'weekly']);
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE_TTL');
  assert.deepEqual(snapshot(ca.dir, { withAudit: true }), before);
});
