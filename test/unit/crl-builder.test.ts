/**
 * The CA's own CRL DER writer: the same to-be-signed bytes @peculiar/x509 produces for the same
 * input, a signature OpenSSL accepts, and a large list that is still one pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { x509 } from '../../src/pki/x509.ts';
import { createRoot, randomSerial, signCrl, type RevokedEntry } from '../../src/pki/certs.ts';
import { crlPem } from '../../src/pki/crl.ts';
import { generateKeyPair, signingAlgorithm, KEY_TYPES } from '../../src/pki/keys.ts';
import { revokedSerials } from '../../src/tls/material.ts';

/** The first element (the TBSCertList) of a DER CertificateList. */
function tbsOf(der: Uint8Array): Buffer {
  const outerLen = der[1] as number;
  const at = outerLen & 0x80 ? 2 + (outerLen & 0x7f) : 2;
  const len = der[at + 1] as number;
  let start = at + 2;
  let n = len;
  if (len & 0x80) {
    n = 0;
    for (let i = 0; i < (len & 0x7f); i++) n = n * 256 + (der[start + i] as number);
    start += len & 0x7f;
  }
  return Buffer.from(der.subarray(at, start + n));
}

// Every entry with a reason: for one without, the library writes an empty crlEntryExtensions
// SEQUENCE (RFC 5280 wants it absent then, SIZE (1..MAX)); ours leaves it out (checked below).
const ENTRIES: RevokedEntry[] = [
  { serial: '7f0011223344556677889900aabbccdd', revokedAt: new Date('2026-03-01T10:20:30.456Z'), reason: x509.X509CrlReason.keyCompromise },
  { serial: '00ff', revokedAt: new Date('2026-03-02T00:00:00Z'), reason: x509.X509CrlReason.affiliationChanged }, // a leading zero byte kept for the sign bit
  { serial: '0001', revokedAt: new Date('2026-03-03T00:00:00Z'), reason: x509.X509CrlReason.cessationOfOperation },
  { serial: '5a', revokedAt: new Date('2051-01-01T00:00:00Z'), reason: x509.X509CrlReason.superseded }, // GeneralizedTime
];
const NO_REASON: RevokedEntry[] = [
  { serial: '11', revokedAt: new Date('2026-03-04T00:00:00Z') },
  { serial: '12', revokedAt: new Date('2026-03-04T00:00:00Z'), reason: x509.X509CrlReason.unspecified },
];

for (const keyType of KEY_TYPES) {
  test(`${keyType}: the same TBSCertList bytes as @peculiar/x509, and openssl verifies the signature`, async (t) => {
    const keys = await generateKeyPair(keyType);
    const cert = await createRoot({ name: 'CRL Test', keys, keyType, lifetimeMs: 86_400_000, now: new Date('2026-01-01T00:00:00Z') });
    const issuer = { cert, key: keys.privateKey, keyType };
    const now = new Date('2026-04-01T12:00:00.789Z');
    const ours = signCrl({ issuer, number: 300, entries: ENTRIES, validityMs: 30 * 86_400_000, now });
    const plain = signCrl({ issuer, number: 301, entries: NO_REASON, validityMs: 30 * 86_400_000, now });

    const aki = (cert.getExtension(x509.SubjectKeyIdentifierExtension) as x509.SubjectKeyIdentifierExtension).keyId;
    const theirs = await x509.X509CrlGenerator.create({
      issuer: cert.subjectName,
      thisUpdate: ours.thisUpdate,
      nextUpdate: ours.nextUpdate,
      signingKey: keys.privateKey,
      signingAlgorithm: signingAlgorithm(keyType),
      extensions: [new x509.AuthorityKeyIdentifierExtension(aki), new x509.Extension('2.5.29.20', false, new Uint8Array([0x02, 0x02, 0x01, 0x2c]))],
      entries: ENTRIES.map((e) => ({ serialNumber: e.serial, revocationDate: e.revokedAt, ...(e.reason === undefined ? {} : { reason: e.reason }) })),
    });
    assert.equal(tbsOf(ours.der).toString('hex'), tbsOf(new Uint8Array(theirs.rawData)).toString('hex'));
    assert.equal(ours.count, ENTRIES.length);

    const parsed = new x509.X509Crl(new Uint8Array(ours.der));
    assert.equal(await parsed.verify({ publicKey: await cert.publicKey.export() }), true, 'the library verifies our signature');

    const dir = mkdtempSync(join(tmpdir(), 'broker-crl-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'ca.pem'), cert.toString('pem'));
    writeFileSync(join(dir, 'crl.pem'), crlPem(ours));
    const r = spawnSync('openssl', ['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'ca.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /verify OK/);
    assert.match(r.stdout, /X509v3 CRL Number: *\n\s+300/);
    assert.match(r.stdout, /Key Compromise/);
    writeFileSync(join(dir, 'plain.pem'), crlPem(plain));
    const p = spawnSync('openssl', ['crl', '-in', join(dir, 'plain.pem'), '-CAfile', join(dir, 'ca.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stderr, /verify OK/);
    assert.match(p.stdout, /Serial Number: 11/);
    assert.doesNotMatch(p.stdout, /CRL entry extensions/, 'no reason, no (empty) entry extensions');
  });
}

test('30,000 entries: every serial listed once; a serial listed twice is refused', async () => {
  const keys = await generateKeyPair('ec-p256');
  const cert = await createRoot({ name: 'CRL Big', keys, keyType: 'ec-p256', lifetimeMs: 86_400_000 });
  const issuer = { cert, key: keys.privateKey, keyType: 'ec-p256' as const };
  const entries = Array.from({ length: 30_000 }, (_, i) => ({ serial: randomSerial(), revokedAt: new Date(), reason: i % 2 ? x509.X509CrlReason.keyCompromise : undefined }));
  const crl = signCrl({ issuer, number: 1, entries, validityMs: 86_400_000 });
  const read = revokedSerials(crlPem(crl));
  assert.equal(read.revoked.size, 30_000);
  assert.deepEqual([...read.revoked].sort(), entries.map((e) => e.serial).sort());
  assert.throws(() => signCrl({ issuer, number: 2, entries: [...entries.slice(0, 3), entries[1] as RevokedEntry], validityMs: 86_400_000 }), /revoked twice/);
});
