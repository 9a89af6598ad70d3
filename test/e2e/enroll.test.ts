/**
 * Enrolment and renewal end to end: `broker pki invite` and `broker enroll` / `broker renew` run as
 * the built CLI against a broker (real TLS, listenCertOptional) with enrollment.enabled. The key
 * exists only on the partner's side; a token works once, not after expiry or revocation, not when
 * altered, and not against a broker holding another CA (nothing is posted then); renewal keeps
 * the identity and roles whatever the CSR asks, is refused for revoked and expired certificates
 * and before renewAfter, and replaces the files atomically (left intact on a refusal).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { brokerAsync, errorCode, openssl, tempDir } from '../helpers/cli.ts';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { createInvitation, parseToken, formatToken } from '../../src/pki/invitations.ts';
import { generateKeyPair, signingAlgorithm } from '../../src/pki/keys.ts';
import { x509 } from '../../src/pki/x509.ts';
import { validateConfig } from '../../src/config/index.ts';

const PASS = 'enrol horse battery staple';
const OPTIONAL = { listenCertOptional: { host: '127.0.0.1', port: 0 } };

interface Setup {
  pki: TestPki;
  b: RunningBroker;
  opt: number;
  work: string;
  upSeen: () => number;
}

async function setup(t: TestContext, enrollment: Record<string, unknown> = {}): Promise<Setup> {
  const pki = await makePki(t, { passphrase: PASS });
  const work = tempDir(t, 'broker-enroll-');
  const passFile = join(work, 'ca.pass');
  writeFileSync(passFile, `${PASS}\n`, { mode: 0o600 });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    ...OPTIONAL,
    routes: [{ name: 'billing', path: '/billing', upstream: up.url, roles: ['billing'] }],
    enrollment: { enabled: true, passphraseFile: passFile, renewAfter: 0, ...enrollment },
  });
  return { pki, b, opt: (b.broker.optionalServer?.address() as AddressInfo).port, work, upSeen: () => up.seen.length };
}

async function invite(s: Setup, name: string, roles: string[], extra: string[] = []): Promise<string> {
  const r = await brokerAsync(['pki', 'invite', name, ...roles.flatMap((x) => ['--role', x]), '--dir', s.pki.dir, '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { token: string }).token;
}

function enroll(s: Setup, token: string, out: string, extra: string[] = []) {
  return brokerAsync(['enroll', '--url', `https://127.0.0.1:${s.opt}`, '--token', token, '--out', out, '--json', ...extra]);
}

function renewCli(s: Setup, cert: string, key: string, extra: string[] = []) {
  return brokerAsync(['renew', '--url', `https://127.0.0.1:${s.b.port}`, '--cert', cert, '--key', key, '--json', ...extra]);
}

/** Every file of the store, concatenated. */
function storeText(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

function idOf(dir: string, name: string): Identity {
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8'), serial: '' };
}

function subjectOf(pem: string): string {
  return new X509Certificate(pem).subject;
}

function lifecyclePosts(s: Setup, sub: string): number {
  return s.b.logs.of('access').filter((l) => l.path === `/.well-known/broker/${sub}`).length;
}

test('invite → enroll: a working client whose key exists only on the partner side; the token works once', async (t) => {
  const s = await setup(t);
  const token = await invite(s, 'acme', ['billing', 'reports'], ['--contact', 'ops@acme.example']);
  const out = join(s.work, 'acme');
  const r = await enroll(s, token, out, ['--key-type', 'ec-p384']);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { name: string; roles: string[]; serial: string; files: { cert: string; key: string; ca: string } };
  assert.equal(res.name, 'acme');
  assert.deepEqual(res.roles, ['billing', 'reports']);
  assert.equal(statSync(res.files.key).mode & 0o777, 0o600);
  const chain = readFileSync(res.files.cert, 'utf8');
  assert.equal((chain.match(/BEGIN CERTIFICATE/g) ?? []).length, 2, 'NAME.crt holds leaf + issuing CA');
  const leaf = new X509Certificate(chain);
  assert.match(leaf.subject, /CN=acme/);
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1', 'the key type the partner chose');
  const days = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 29.9 && days <= 30.01, `default enrolled lifetime is 30 days, got ${days}`);

  // the enrolled certificate gets through the broker
  const ok = await request(s.b.port, { id: idOf(out, 'acme'), ca: s.pki.ca, path: '/billing/x' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(s.upSeen(), 1);

  // the key never existed on the broker side: not in the store, not in the audit log; the inventory records no key
  const keyPem = readFileSync(res.files.key, 'utf8');
  const keyBody = keyPem.split('\n').slice(1, 3).join('');
  assert.ok(!storeText(s.pki.dir).includes(keyBody), 'the partner key appears nowhere in the store');
  const inv = JSON.parse(readFileSync(join(s.pki.dir, 'inventory.json'), 'utf8')) as { certs: Array<Record<string, unknown>> };
  const rec = inv.certs.find((c) => c.serial === res.serial) as Record<string, unknown>;
  assert.equal(rec.source, 'enroll');
  assert.equal(rec.contact, 'ops@acme.example', 'the invitation\'s contact travels to the identity');
  assert.deepEqual(Object.keys(rec).filter((k) => /key/i.test(k)), []);
  assert.ok(!existsSync(join(s.pki.dir, 'servers', 'acme.key')));
  const audit = readFileSync(join(s.pki.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = audit.find((l) => l.op === 'enroll' && l.outcome === 'ok');
  assert.equal(line?.name, 'acme');
  assert.equal(line?.serial, res.serial);
  const brokerAudit = s.b.logs.of('audit').find((l) => l.event === 'enroll');
  assert.equal(brokerAudit?.principal, 'acme');
  assert.equal(brokerAudit?.serial, res.serial);
  assert.ok(!JSON.stringify(s.b.logs.lines).includes(keyBody), 'no log line carries the key');

  // once: the second use is refused with its code, and nothing is written
  const again = await enroll(s, token, join(s.work, 'again'));
  assert.equal(again.code, 1);
  assert.equal(errorCode(again.stderr), 'BRK_ERR_ENROLL_TOKEN_USED', again.stderr);
  assert.ok(!existsSync(join(s.work, 'again', 'acme.crt')));
});

test('a token is refused after expiry, after --revoke, and when altered; a wrong pinned CA sends nothing', async (t) => {
  const s = await setup(t);
  // expired: written with a past creation time through the store API
  const expired = await createInvitation(s.pki.store, { name: 'late', roles: ['billing'], expiresMs: 3_600_000, certTtlMs: 86_400_000, now: new Date(Date.now() - 2 * 3_600_000) });
  const e = await enroll(s, expired.token, join(s.work, 'late'));
  assert.equal(errorCode(e.stderr), 'BRK_ERR_ENROLL_TOKEN_EXPIRED', e.stderr);

  const revoked = await invite(s, 'gone', ['billing']);
  const rv = await brokerAsync(['pki', 'invite', '--revoke', parseToken(revoked).id, '--dir', s.pki.dir]);
  assert.equal(rv.code, 0, rv.stderr);
  const r = await enroll(s, revoked, join(s.work, 'gone'));
  assert.equal(errorCode(r.stderr), 'BRK_ERR_ENROLL_TOKEN_REVOKED', r.stderr);

  const good = await invite(s, 'tamper', ['billing']);
  const p = parseToken(good);
  const flipped = `${p.secret[0] === 'A' ? 'B' : 'A'}${p.secret.slice(1)}`;
  const tampered = formatToken({ ...p, secret: flipped });
  const tr = await enroll(s, tampered, join(s.work, 'tamper'));
  assert.equal(errorCode(tr.stderr), 'BRK_ERR_ENROLL_TOKEN_INVALID', tr.stderr);
  const mangled = await enroll(s, `${good.slice(0, 20)}!${good.slice(21)}`, join(s.work, 'tamper'));
  assert.equal(errorCode(mangled.stderr), 'BRK_ERR_ENROLL_TOKEN_INVALID', mangled.stderr);
  // the untampered token still works: the failures did not use it up
  assert.equal((await enroll(s, good, join(s.work, 'tamper'))).code, 0);

  const pinned = await invite(s, 'pinned', ['billing']);
  const other = formatToken({ ...parseToken(pinned), ca: createHash('sha256').update('another CA').digest('hex') });
  const before = lifecyclePosts(s, 'enroll');
  const m = await enroll(s, other, join(s.work, 'pinned'));
  assert.equal(m.code, 1);
  assert.equal(errorCode(m.stderr), 'BRK_ERR_ENROLL_CA_MISMATCH', m.stderr);
  assert.equal(lifecyclePosts(s, 'enroll'), before, 'no enrolment request reached the broker');
  assert.ok(lifecyclePosts(s, 'ca') > 0);
  assert.ok(!existsSync(join(s.work, 'pinned')));
  // and the invitation is still open
  assert.equal((await enroll(s, pinned, join(s.work, 'pinned'))).code, 0);
});

test('renew: same identity and roles whatever the CSR asks; the CLI replaces the files; the new certificate works', async (t) => {
  const s = await setup(t);
  const out = join(s.work, 'acme');
  assert.equal((await enroll(s, await invite(s, 'acme', ['billing']), out)).code, 0);
  const cert = join(out, 'acme.crt');
  const key = join(out, 'acme.key');
  const oldCert = readFileSync(cert, 'utf8');
  const oldKey = readFileSync(key, 'utf8');

  // a hand-made CSR asking for another name and roles
  const keys = await generateKeyPair('ec-p256');
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=admin, OU=superuser, OU=billing-admin', keys, signingAlgorithm: signingAlgorithm('ec-p256') });
  const res = await request(s.b.port, { id: idOf(out, 'acme'), ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/renew', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ csr: csr.toString('pem') }) });
  assert.equal(res.status, 200, res.text);
  const body = res.json() as { name: string; roles: string[]; certificate: string };
  assert.equal(body.name, 'acme');
  assert.deepEqual(body.roles, ['billing']);
  const subject = subjectOf(body.certificate);
  assert.match(subject, /CN=acme/);
  assert.doesNotMatch(subject, /admin|superuser/);

  // the CLI: new key, files replaced in place, the new pair works
  const r = await renewCli(s, cert, key);
  assert.equal(r.code, 0, r.stderr);
  const newCert = readFileSync(cert, 'utf8');
  const newKey = readFileSync(key, 'utf8');
  assert.notEqual(newCert, oldCert);
  assert.notEqual(newKey, oldKey);
  assert.ok(new X509Certificate(newCert).checkPrivateKey((await import('node:crypto')).createPrivateKey(newKey)), 'the files are a pair');
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), [], 'no temp files left');
  const ok = await request(s.b.port, { id: idOf(out, 'acme'), ca: s.pki.ca, path: '/billing/y' });
  assert.equal(ok.status, 200, ok.text);
  const audit = readFileSync(join(s.pki.dir, 'audit.log'), 'utf8');
  assert.match(audit, /"op":"renew-mtls","outcome":"ok","name":"acme"/);
});

test('renew is refused for a revoked certificate, an expired one, and before renewAfter; the old files stay intact', async (t) => {
  const s = await setup(t);
  const snapshot = (dir: string) => readdirSync(dir).map((f) => `${f}:${readFileSync(join(dir, f), 'latin1')}`).join('\n');

  // revoked (the broker reloads the CRL)
  const rdir = join(s.work, 'rev');
  assert.equal((await enroll(s, await invite(s, 'rev', ['billing']), rdir)).code, 0);
  const before = snapshot(rdir);
  const rvk = await brokerAsync(['pki', 'revoke', 'rev', '--dir', s.pki.dir], { env: { BROKER_CA_PASSPHRASE: PASS } });
  assert.equal(rvk.code, 0, rvk.stderr);
  await s.b.broker.reload();
  const r1 = await renewCli(s, join(rdir, 'rev.crt'), join(rdir, 'rev.key'));
  assert.equal(r1.code, 1);
  assert.equal(errorCode(r1.stderr), 'BRK_ERR_TLS_CLIENT_CERT_REFUSED', r1.stderr);
  assert.match(r1.stderr, /revoked/);
  assert.equal(snapshot(rdir), before, 'files intact after a refusal');

  // expired: a certificate of this CA whose notAfter has passed
  const old = await s.pki.custom({ name: 'old', roles: ['billing'], notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
  const edir = join(s.work, 'exp');
  (await import('node:fs')).mkdirSync(edir);
  writeFileSync(join(edir, 'old.crt'), old.cert);
  writeFileSync(join(edir, 'old.key'), old.key, { mode: 0o600 });
  writeFileSync(join(edir, 'ca.crt'), s.pki.ca);
  const r2 = await renewCli(s, join(edir, 'old.crt'), join(edir, 'old.key'));
  assert.equal(errorCode(r2.stderr), 'BRK_ERR_TLS_CLIENT_CERT_REFUSED', r2.stderr);
  assert.match(r2.stderr, /expired/);
  assert.equal(readFileSync(join(edir, 'old.crt'), 'utf8'), old.cert);

  // outside the window: a broker with renewAfter 0.66 and a fresh certificate
  const w = await setup(t, { renewAfter: 0.66 });
  const wdir = join(w.work, 'fresh');
  assert.equal((await enroll(w, await invite(w, 'fresh', ['billing']), wdir)).code, 0);
  const wbefore = snapshot(wdir);
  const r3 = await renewCli(w, join(wdir, 'fresh.crt'), join(wdir, 'fresh.key'));
  assert.equal(r3.code, 1);
  assert.equal(errorCode(r3.stderr), 'BRK_ERR_ENROLL_TOO_EARLY', r3.stderr);
  assert.match(r3.stderr, /retry after \d+ s \(20\d\d-/, 'the partner learns when the window opens');
  assert.doesNotMatch(readFileSync(join(w.pki.dir, 'audit.log'), 'utf8'), /renew-mtls/, 'an early ask takes no store lock and writes no PKI audit line');
  assert.equal(snapshot(wdir), wbefore, 'files intact after a refusal');
});

test('endpoints answer only where they belong; enrollment needs listenCertOptional; off, the paths are ordinary', async (t) => {
  const s = await setup(t);
  const id = await s.pki.issue('holder', ['billing']);
  const enrolWithCert = await request(s.b.port, { id, ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/enroll', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(enrolWithCert.status, 403);
  assert.equal(enrolWithCert.json().code, 'BRK_ERR_ENROLL_LISTENER');
  const renewAnon = await request(s.opt, { ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/renew', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(renewAnon.json().code, 'BRK_ERR_ENROLL_LISTENER');
  const badCsr = await request(s.b.port, { id, ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/renew', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' }) });
  assert.equal(badCsr.status, 400);
  assert.equal(badCsr.json().code, 'BRK_ERR_ENROLL_CSR_INVALID');
  const ca = await request(s.opt, { ca: s.pki.ca, path: '/.well-known/broker/ca' });
  assert.equal(ca.status, 200);
  assert.ok(ca.text.includes(s.pki.ca.trim().split('\n')[1] as string), 'the CA bundle holds the root');

  const { problems } = validateConfig({ listen: { port: 0 }, tls: { server: 'localhost' }, pki: { dir: s.pki.dir }, enrollment: { enabled: true } }, s.pki.dir);
  assert.ok(problems.some((p) => /enrollment\.enabled: .*listenCertOptional/.test(p)), problems.join('\n'));

  const pki = await makePki(t);
  const off = await startBroker(t, pki, { ...OPTIONAL, routes: [] });
  const port = (off.broker.optionalServer?.address() as AddressInfo).port;
  const anon = await request(port, { ca: pki.ca, path: '/.well-known/broker/ca' });
  assert.equal(anon.json().code, 'BRK_ERR_AUTH_REQUIRED');
  const withCert = await request(off.port, { id: await pki.issue('x', ['billing']), ca: pki.ca, method: 'POST', path: '/.well-known/broker/renew', body: '{}' });
  assert.equal(withCert.json().code, 'BRK_ERR_HTTP_NOT_FOUND');
  const cli = await brokerAsync(['enroll', '--url', `https://127.0.0.1:${port}`, '--token', await invite({ pki } as Setup, 'y', ['billing']), '--out', tempDir(t)]);
  assert.equal(errorCode(cli.stderr), 'BRK_ERR_ENROLL_NOT_ENABLED', cli.stderr);
});

test('enrolment attempts are limited per client address, and refused ones count toward bans', async (t) => {
  const s = await setup(t, { rateLimit: { rate: 1, per: '1h', burst: 3 } });
  const post = () => request(s.opt, { ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'brk1.nope', csr: 'x' }) });
  const codes: string[] = [];
  for (let i = 0; i < 4; i++) codes.push(String((await post()).json().code));
  assert.deepEqual(codes, ['BRK_ERR_ENROLL_TOKEN_INVALID', 'BRK_ERR_ENROLL_TOKEN_INVALID', 'BRK_ERR_ENROLL_TOKEN_INVALID', 'BRK_ERR_ENROLL_RATE_LIMITED']);

  const pki = await makePki(t);
  const b = await startBroker(t, pki, { ...OPTIONAL, routes: [], enrollment: { enabled: true }, bans: { enabled: true, deniedRequests: 3, window: '1m', duration: '10m' } });
  const port = (b.broker.optionalServer?.address() as AddressInfo).port;
  for (let i = 0; i < 3; i++) {
    const r = await request(port, { ca: pki.ca, method: 'POST', path: '/.well-known/broker/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'brk1.nope', csr: 'x' }) });
    assert.equal(r.status, 403);
  }
  await assert.rejects(request(port, { ca: pki.ca, path: '/.well-known/broker/ca' }), 'the address is banned after three refused enrolments');
});

test('two enrolments racing with one token: exactly one certificate; --p12 writes a PKCS#12 of the local key', async (t) => {
  const s = await setup(t);
  const token = await invite(s, 'racer', ['billing']);
  const csr = async () => {
    const keys = await generateKeyPair('ec-p256');
    return (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=racer', keys, signingAlgorithm: signingAlgorithm('ec-p256') })).toString('pem');
  };
  const post = async () => request(s.opt, { ca: s.pki.ca, method: 'POST', path: '/.well-known/broker/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, csr: await csr() }) });
  const answers = await Promise.all([post(), post(), post()]);
  assert.deepEqual(answers.map((a) => a.status).sort(), [200, 403, 403]);
  assert.deepEqual(answers.filter((a) => a.status === 403).map((a) => a.json().code), ['BRK_ERR_ENROLL_TOKEN_USED', 'BRK_ERR_ENROLL_TOKEN_USED']);
  const inv = JSON.parse(readFileSync(join(s.pki.dir, 'inventory.json'), 'utf8')) as { certs: Array<{ name: string }> };
  assert.equal(inv.certs.filter((c) => c.name === 'racer').length, 1);

  const out = join(s.work, 'p12');
  const r = await brokerAsync(['enroll', '--url', `https://127.0.0.1:${s.opt}`, '--token', await invite(s, 'pkcs', ['billing']), '--out', out, '--p12', '--json'], { env: { BROKER_P12_PASSWORD: 'p12-secret-pass' } });
  assert.equal(r.code, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { p12: string; key: string } }).files;
  assert.equal(statSync(files.p12).mode & 0o777, 0o600);
  const info = openssl(['pkcs12', '-in', files.p12, '-passin', 'pass:p12-secret-pass', '-nodes']);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /subject=.*CN\s*=\s*pkcs/);
  const keyInP12 = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(info.stdout)?.[0];
  assert.equal(keyInP12?.replace(/\s/g, ''), readFileSync(files.key, 'utf8').replace(/\s/g, ''), 'the PKCS#12 holds the key made here');
});
