import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCrl, certSubject, pemBlocks } from '../../src/tls/crl-der.ts';
import { revokedSerials, subjectKey } from '../../src/tls/material.ts';

/** A CA and a CRL with `n` revoked serials, made by openssl (an index file, then `ca -gencrl`). */
function opensslCrl(dir: string, n: number, o: { number?: boolean } = {}): { ca: string; crl: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/O=Test/CN=Big CRL CA', '-days', '2']);
  const lines: string[] = [];
  for (let i = 1; i <= n; i++) lines.push(`R\t301231235959Z\t250101000000Z\t${(0x10000 + i).toString(16).toUpperCase().padStart(8, '0')}\tunknown\t/CN=x${i}`);
  writeFileSync(join(dir, 'index.txt'), lines.length ? `${lines.join('\n')}\n` : '');
  writeFileSync(join(dir, 'ca.cnf'), `[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\n${o.number === false ? '' : 'crlnumber=crlnumber\n'}default_md=sha256\ndefault_crl_days=7\n`);
  writeFileSync(join(dir, 'crlnumber'), 'A1B2C3D4E5F60718293A\n');
  run(['ca', '-config', 'ca.cnf', '-gencrl', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-out', 'crl.pem']);
  return { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), crl: readFileSync(join(dir, 'crl.pem'), 'utf8') };
}

test('a CRL with 100,000 revoked serials is read without recursion: every serial, the issuer and nextUpdate', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crl-der-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { ca, crl } = opensslCrl(dir, 100_000);
  const facts = readCrl(pemBlocks(crl, 'X509 CRL')[0] as Buffer);
  assert.equal(facts.serials.length, 100_000);
  assert.equal(facts.serials[0], '010001');
  assert.equal(facts.serials.at(-1), (0x10000 + 100_000).toString(16).padStart(6, '0'));
  assert.ok(facts.nextUpdate && facts.nextUpdate.getTime() > Date.now());
  assert.ok(Math.abs(facts.thisUpdate.getTime() - Date.now()) < 3_600_000, `thisUpdate ${facts.thisUpdate.toISOString()} is about now`);
  assert.equal(facts.number, 0xa1b2c3d4e5f60718293an, 'the CRL number, 80 bits wide');
  const caDer = pemBlocks(ca, 'CERTIFICATE')[0] as Buffer;
  assert.ok(facts.issuer.equals(certSubject(caDer)), 'the CRL issuer is the CA subject, byte for byte');
  const r = revokedSerials(crl);
  assert.equal(r.revoked.size, 100_000);
  assert.ok(r.issuers.has(subjectKey(caDer)));
  assert.equal(r.count, 1);
});

test('an empty CRL has no serials, and its number is read after the (absent) list', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crl-der-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { crl } = opensslCrl(dir, 0);
  const facts = readCrl(pemBlocks(crl, 'X509 CRL')[0] as Buffer);
  assert.deepEqual(facts.serials, []);
  assert.equal(facts.number, 0xa1b2c3d4e5f60718293an);
});

test('a CRL without a cRLNumber extension has no number', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crl-der-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { crl } = opensslCrl(dir, 2, { number: false });
  const facts = readCrl(pemBlocks(crl, 'X509 CRL')[0] as Buffer);
  assert.equal(facts.number, undefined);
  assert.equal(facts.serials.length, 2);
});

test('a truncated CRL is an error, not a wrong answer', () => {
  assert.throws(() => readCrl(Buffer.from([0x30, 0x82, 0x10, 0x00, 0x30])), /truncated DER/);
});
