/**
 * `broker doctor --client` names the real cause (issue 15): a host-name mismatch against the
 * broker's own CA, a private CA checked without --ca, an expired server certificate, a
 * middlebox-like CA presenting a certificate for the right name, a revoked client certificate
 * (today's silent close, and the broker's HTTP 495 refusal body), the broker's own CRL expired;
 * and --resolve, --servername and --p12. The built CLI runs asynchronously against a real broker,
 * or a plain TLS server started here, on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type TlsOptions, type TLSSocket } from 'node:tls';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { errorCode, openssl, tempDir } from '../helpers/cli.ts';
import { within } from '../helpers/within.ts';
import { makePki, startBroker, startUpstream, type Identity, type TestPki } from '../helpers/broker.ts';
import { issueClient } from '../../src/pki/issue.ts';
import type { Finding } from '../../src/doctor/finding.ts';
import { assertProblem, checks, runDoctor, show, runningBroker, type Report } from '../helpers/doctor.ts';

const DAY = 86_400_000;

const doctor = (args: string[], cwd: string, env: Record<string, string> = {}): Promise<Report> =>
  runDoctor(['--client', ...args, '--timeout', '5s'], cwd, { NODE_EXTRA_CA_CERTS: undefined as unknown as string, ...env });

/** --cert/--key (and --ca when given) written to files in `dir`. */
function files(dir: string, tag: string, id: Identity, ca?: string): string[] {
  writeFileSync(join(dir, `${tag}.crt`), id.cert);
  writeFileSync(join(dir, `${tag}.key`), id.key, { mode: 0o600 });
  const out = ['--cert', join(dir, `${tag}.crt`), '--key', join(dir, `${tag}.key`)];
  if (ca) {
    writeFileSync(join(dir, `${tag}-ca.crt`), ca);
    out.push('--ca', join(dir, `${tag}-ca.crt`));
  }
  return out;
}


/** A plain TLS server on 127.0.0.1; `answer` (when given) is written back after the first request head. */
async function tlsServer(t: TestContext, options: TlsOptions, answer?: string): Promise<number> {
  const sockets = new Set<TLSSocket>();
  const server = createTlsServer(options, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (answer && head.includes('\r\n\r\n')) s.end(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

function serverOf(pki: TestPki): { cert: string; key: string } {
  return { cert: readFileSync(pki.store.layout.serverCert('localhost'), 'utf8'), key: readFileSync(pki.store.layout.serverKey('localhost'), 'utf8') };
}

function refusal(status: number, body: Record<string, string>): string {
  const json = JSON.stringify(body);
  return `HTTP/1.1 ${status} SSL Certificate Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`;
}

test('doctor --client: a name the broker\'s certificate does not cover is a host-name mismatch naming the certificate\'s names and --servername (not a middlebox); --servername with one of them passes', async (t) => {
  const b = await runningBroker(t);
  const dir = tempDir(t);
  const id = files(dir, 'acme', await b.pki.issue('acme', ['partner']), b.pki.ca);
  const url = `https://broker.partner.test:${b.port}`;
  const resolve = ['--resolve', `broker.partner.test:${b.port}:127.0.0.1`];
  const r = await doctor(['--url', url, ...id, ...resolve, '--path', '/orders/7'], dir);
  const f = assertProblem(r, 'tls', /^host-name mismatch: the server certificate comes from the broker's CA \(--ca\) but does not name broker\.partner\.test; it names DNS:localhost, IP:127\.0\.0\.1/);
  assert.doesNotMatch(f.message, /middlebox/);
  assert.match(f.fix ?? '', /--servername localhost/);
  assert.match(r.findings.find((x) => x.check === 'dns')?.message ?? '', /^broker\.partner\.test is 127\.0\.0\.1 \(from --resolve/);
  assert.equal(b.upstream.seen.length, 0);

  const fixed = await doctor(['--url', url, ...id, ...resolve, '--servername', 'localhost', '--path', '/orders/7'], dir);
  assert.equal(fixed.code, 0, show(fixed));
  assert.deepEqual(checks(fixed), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'ok http']);
  assert.equal(b.upstream.seen.at(-1)?.url, '/orders/7');
});

test('doctor --client: without --ca the broker\'s private CA is unknown to the system roots: never "ok tls", says --ca is needed', async (t) => {
  const b = await runningBroker(t);
  const dir = tempDir(t);
  const r = await doctor(['--url', b.url, ...files(dir, 'acme', await b.pki.issue('acme', ['partner'])), '--path', '/orders/7'], dir);
  const f = assertProblem(r, 'tls', /^the server certificate was issued by "CN=Test CA Issuing CA", a CA this system does not trust \(.+\): the broker uses its own private CA/);
  assert.match(f.fix ?? '', /--ca ca\.crt/);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'fail tls']);
  assert.equal(b.upstream.seen.length, 0);
});

test('doctor --client: an expired server certificate from the broker\'s CA is named as expired, not as a middlebox', async (t) => {
  const pki = await makePki(t);
  const now = Date.now();
  const expired = await pki.custom({ name: 'localhost', kind: 'server', notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) });
  const port = await tlsServer(t, { cert: expired.cert, key: expired.key });
  const dir = tempDir(t);
  const r = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme', await pki.issue('acme', ['partner']), pki.ca)], dir);
  const f = assertProblem(r, 'tls', /^the broker's server certificate expired on .+ \(subject CN=localhost/);
  assert.doesNotMatch(f.message, /middlebox/);
  assert.match(f.fix ?? '', /tell the broker operator to renew the server certificate/);
});

/** A self-signed "inspection" root (O=Zscaler Inc.) and a certificate it made for localhost, as a TLS-inspecting proxy presents. */
function middleboxCa(dir: string): { cert: string; key: string } {
  const run = (args: string[]) => {
    const r = openssl(args, { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
  };
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mb-ca.key', '-out', 'mb-ca.crt', '-days', '2', '-subj', '/O=Zscaler Inc./CN=Zscaler Intermediate Root CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mb.key', '-out', 'mb.csr', '-subj', '/CN=localhost']);
  writeFileSync(join(dir, 'mb.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', 'mb.csr', '-CA', 'mb-ca.crt', '-CAkey', 'mb-ca.key', '-CAcreateserial', '-out', 'mb.crt', '-days', '1', '-extfile', 'mb.ext']);
  return { cert: readFileSync(join(dir, 'mb.crt'), 'utf8'), key: readFileSync(join(dir, 'mb.key'), 'utf8') };
}

test('doctor --client: a foreign CA presenting a certificate for the right name is a TLS-inspecting middlebox, with the vendor named from the issuer (with and without --ca)', async (t) => {
  const pki = await makePki(t);
  const dir = tempDir(t);
  const port = await tlsServer(t, middleboxCa(dir));
  const id = await pki.issue('acme', ['partner']);
  const r = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme', id, pki.ca)], dir);
  const f = assertProblem(r, 'tls', /^the server certificate was issued by "O=Zscaler Inc\., CN=Zscaler Intermediate Root CA" \(organisation Zscaler Inc\.\), not by the broker's CA \(.+\): a TLS-inspecting middlebox \(Zscaler\) is in the path/);
  assert.match(f.fix ?? '', /exempt the broker's host from TLS inspection/);
  const bare = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme2', id)], dir);
  assertProblem(bare, 'tls', /issued by "O=Zscaler Inc\., CN=Zscaler Intermediate Root CA" \(organisation Zscaler Inc\.\): a TLS-inspecting middlebox \(Zscaler\) is in the path/);
});

test('doctor --client: a revoked client certificate refused silently (tls.refusal: close) after the handshake is said so, without guessing the reason', async (t) => {
  // revoked before the broker starts: it loads the CRL that lists it
  const pki = await makePki(t);
  const id = await pki.issue('acme', ['partner']);
  await pki.revoke('acme');
  const upstream = await startUpstream(t);
  const b = { pki, upstream, ...(await startBroker(t, pki, { tls: { server: 'localhost', refusal: 'close' }, routes: [{ name: 'orders', path: '/orders', upstream: upstream.url, roles: ['partner'] }] })) };
  const dir = tempDir(t);
  const r = await doctor(['--url', b.url, ...files(dir, 'acme', id, b.pki.ca), '--path', '/orders/7'], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate after the handshake: it (reset|closed|ended) the connection.* without an answer, so the reason is not known on this side$/);
  assert.match(f.fix ?? '', /auth log/);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'fail certificate accepted']);
  assert.equal(b.upstream.seen.length, 0);
});

test('doctor --client: the broker\'s HTTP 495 refusal body (certificate revoked) is printed with its reason and hint', async (t) => {
  const pki = await makePki(t);
  const port = await tlsServer(t, serverOf(pki), refusal(495, { code: 'BRK_ERR_TLS_CLIENT_CERT_REVOKED', reason: 'certificate revoked', hint: 'ask the broker operator for a new certificate' }));
  const dir = tempDir(t);
  const r = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme', await pki.issue('acme', ['partner']), pki.ca)], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate: certificate revoked \(495 BRK_ERR_TLS_CLIENT_CERT_REVOKED\)$/);
  assert.equal(f.fix, 'ask the broker operator for a new certificate');
});

test('doctor --client: the broker\'s own CRL expired (HTTP 495 body) is "not your fault, tell the operator", never blamed on the partner\'s certificate', async (t) => {
  const pki = await makePki(t);
  const port = await tlsServer(t, serverOf(pki), refusal(495, { code: 'BRK_ERR_TLS_CRL_EXPIRED', reason: 'the broker\'s CRL has expired (not your fault)', hint: 'the operator publishes a fresh CRL (broker pki crl)' }));
  const dir = tempDir(t);
  const r = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme', await pki.issue('acme', ['partner']), pki.ca)], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate because of a problem on the broker's side: the broker's CRL has expired \(not your fault\) \(495 BRK_ERR_TLS_CRL_EXPIRED\); this is not your fault$/);
  assert.match(f.fix ?? '', /^tell the broker operator: the operator publishes a fresh CRL/);
});

test('doctor --client: a real broker whose own CRL expired while running: "not your fault, tell the operator", never blamed on the partner\'s certificate', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('acme', ['partner']);
  const { publishCrl } = await import('../../src/pki/revoke.ts');
  const crl = await publishCrl(pki.store, { nextUpdateMs: 3_000, force: true });
  const upstream = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'orders', path: '/orders', upstream: upstream.url, roles: ['partner'] }] });
  // bounded: the CRL's nextUpdate is at most 3 s away
  const wait = crl.nextUpdate.getTime() + 1_100 - Date.now();
  await new Promise((r) => setTimeout(r, Math.max(0, Math.min(wait, 5_000))));
  const dir = tempDir(t);
  const r = await doctor(['--url', b.url, ...files(dir, 'acme', id, pki.ca), '--path', '/orders/7'], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate because of a problem on the broker's side: the broker's CRL has expired \(not your fault\) \(495 BRK_ERR_TLS_CLIENT_CERT_REFUSED\); this is not your fault$/);
  assert.match(f.fix ?? '', /^tell the broker operator/);
  assert.equal(upstream.seen.length, 0);
});

test('doctor --client: --p12 (password from BROKER_P12_PASSWORD) works like --cert/--key; a wrong password fails "certificate"', async (t) => {
  const b = await runningBroker(t);
  const dir = tempDir(t);
  const issued = await issueClient(b.pki.store, { name: 'acme-p12', roles: ['partner'], ttlMs: DAY, outDir: join(dir, 'out'), p12Password: 'p12 secret' });
  writeFileSync(join(dir, 'ca.crt'), b.pki.ca);
  const args = ['--url', b.url, '--p12', issued.files.p12 as string, '--ca', join(dir, 'ca.crt'), '--path', '/orders/7'];
  const r = await doctor(args, dir, { BROKER_P12_PASSWORD: 'p12 secret' });
  assert.equal(r.code, 0, show(r));
  assert.match(r.findings[0]?.message ?? '', /CN=acme-p12/);
  assert.equal(b.upstream.seen.at(-1)?.url, '/orders/7');
  const wrong = await doctor(args, dir, { BROKER_P12_PASSWORD: 'not it' });
  assertProblem(wrong, 'certificate', /wrong PKCS#12 password|not a usable PKCS#12/);
});

test('doctor --client: a real TLS alert certificate_revoked (openssl s_server checking the CRL) is named as a revoked certificate with its fix', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('acme', ['partner']);
  await pki.revoke('acme');
  const dir = tempDir(t);
  const server = serverOf(pki);
  writeFileSync(join(dir, 'server.crt'), server.cert);
  writeFileSync(join(dir, 'server.key'), server.key, { mode: 0o600 });
  writeFileSync(join(dir, 'root.crt'), pki.ca);
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const proc = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', 'server.crt', '-key', 'server.key', '-cert_chain', pki.store.layout.intermediateCert, '-CAfile', 'root.crt', '-Verify', '2', '-crl_check', '-verify_return_error', '-CRL', pki.store.layout.intermediateCrl, '-www'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.after(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  let out = '';
  await within(new Promise<void>((resolve, reject) => {
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ACCEPT')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`openssl s_server exited with ${code}`)));
  }), 15_000, 'openssl s_server ready');
  const r = await doctor(['--url', `https://localhost:${port}`, ...files(dir, 'acme', id, pki.ca)], dir);
  const failed = r.findings.filter((f) => f.status === 'fail');
  assert.equal(r.code, 3, show(r));
  assert.equal(failed.length, 1, show(r));
  assert.match((failed[0] as Finding).message, /^the broker says your certificate is revoked \(alert certificate_revoked\)$/, show(r));
  assert.equal((failed[0] as Finding).fix, 'ask the broker operator for a new certificate');
});
