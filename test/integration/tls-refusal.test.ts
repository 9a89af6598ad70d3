/**
 * tls.refusal http (the default): a client whose presented certificate fails verification completes
 * the handshake and its first request is answered 495 with the reason in words (curl and Node's
 * https client print it), then the connection is closed; nothing reaches an upstream, the auth log
 * records the presented certificate's fields. tls.refusal close keeps the silent close.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';

const DAY = 86_400_000;
const ago = (days: number) => new Date(Date.now() - days * DAY);
const route = (upstream: string) => ({ routes: [{ name: 'r', path: '/r', upstream, roles: ['app'] }] });

const cases: Array<{ name: string; reason: string; words: string; make(pki: TestPki, t: TestContext): Promise<Identity> }> = [
  {
    name: 'a revoked certificate',
    reason: 'revoked',
    words: 'certificate revoked',
    make: async (pki) => {
      const id = await pki.issue('app', ['app']);
      await pki.revoke(id.serial);
      return id;
    },
  },
  { name: 'a certificate from another CA', reason: 'unknown CA', words: 'unknown CA', make: async (_pki, t) => (await makePki(t)).issue('app', ['app']) },
  { name: 'an expired certificate', reason: 'expired', words: 'certificate expired', make: (pki) => pki.custom({ name: 'app', roles: ['app'], notBefore: ago(10), notAfter: ago(1) }) },
  { name: 'a certificate not yet valid', reason: 'not yet valid', words: 'certificate not yet valid', make: (pki) => pki.custom({ name: 'app', roles: ['app'], notBefore: ago(-1), notAfter: ago(-10) }) },
  { name: 'a serverAuth-only certificate', reason: 'wrong key usage', words: 'wrong key usage', make: (pki) => pki.custom({ name: 'app', roles: ['app'], kind: 'server', notBefore: ago(1), notAfter: ago(-1) }) },
];

/** openssl s_client, asynchronously (the broker runs in this process): what it printed once the broker closed. */
function sClient(args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    p.stderr.resume();
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`openssl s_client: no close within 20 s; printed ${JSON.stringify(out)}`));
    }, 20_000);
    p.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    p.stdin.end(input);
  });
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }));
  });
}

function leafOf(pem: string): X509Certificate {
  return new X509Certificate(pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0]);
}

async function refusedLines(b: RunningBroker, n: number): Promise<Array<Record<string, unknown>>> {
  await b.logs.waitFor(() => b.logs.of('auth').filter((l) => l.outcome === 'refused').length >= n);
  return b.logs.of('auth').filter((l) => l.outcome === 'refused');
}

for (const c of cases) {
  test(`tls.refusal http: ${c.name} gets 495 "${c.words}" (Node https and curl), the auth log has the presented certificate, nothing is forwarded`, async (t) => {
    const pki = await makePki(t);
    const id = await c.make(pki, t);
    const up = await startUpstream(t);
    const b = await startBroker(t, pki, route(up.url));

    // Node's https client
    const res = await request(b.port, { id, ca: pki.ca, path: '/r/x' });
    assert.equal(res.status, 495, res.text);
    assert.equal(res.headers.connection, 'close');
    const body = res.json();
    assert.equal(body.code, 'BRK_ERR_TLS_CLIENT_CERT_REFUSED');
    assert.equal(body.statusCode, 495);
    assert.equal(body.reason, c.words);
    assert.equal(typeof body.hint, 'string');

    // curl: -k for the server (the client side is what is tested); the body is printed
    const dir = tempDir(t, 'refusal-curl-');
    writeFileSync(join(dir, 'c.pem'), id.cert);
    writeFileSync(join(dir, 'k.pem'), id.key);
    const r = await curl(['-sk', '--http1.1', '--cert', join(dir, 'c.pem'), '--key', join(dir, 'k.pem'), '-w', '\n%{http_code}', `https://127.0.0.1:${b.port}/r/x`]);
    assert.equal(r.code, 0, r.stderr);
    const [json, status] = r.stdout.split('\n');
    assert.equal(status, '495');
    assert.equal(JSON.parse(json!).reason, c.words);

    // openssl s_client: the handshake completes, the request it sends is answered 495 with the reason
    const o = await sClient(['-connect', `127.0.0.1:${b.port}`, '-servername', 'localhost', '-cert', join(dir, 'c.pem'), '-key', join(dir, 'k.pem'), '-quiet', '-ign_eof'], 'GET /r/x HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.match(o, /^HTTP\/1\.1 495 SSL Certificate Error\r$/m, o);
    assert.ok(o.includes(`"reason":"${c.words}"`), o);

    // the auth log: one refusal per connection, with the presented certificate (not trusted: logged)
    const lines = await refusedLines(b, 3);
    const leaf = leafOf(id.cert);
    for (const line of lines) {
      assert.equal(line.reason, c.reason, JSON.stringify(line));
      assert.equal(line.remoteIp, '127.0.0.1');
      assert.equal(typeof line.remotePort, 'number');
      const cert = line.certificate as Record<string, string>;
      assert.ok(cert, `the presented certificate is logged: ${JSON.stringify(line)}`);
      assert.equal(cert.serial, leaf.serialNumber.toLowerCase());
      assert.equal(cert.fingerprint, leaf.fingerprint256.replaceAll(':', '').toLowerCase());
      assert.match(String(cert.subject), /CN=app/);
      assert.equal(cert.issuer, leaf.issuer.replaceAll('\n', ', '));
      assert.equal(cert.notBefore, new Date(leaf.validFrom).toISOString());
      assert.equal(cert.notAfter, new Date(leaf.validTo).toISOString());
      assert.equal(typeof line.detail, 'string');
    }
    assert.equal(up.seen.length, 0, 'nothing reached the upstream');
    assert.equal(b.logs.of('access').length, 0, 'no request went through the pipeline');
    assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'ok').length, 0);
  });
}

test('tls.refusal http: keep-alive cannot carry a second request after the 495 (two pipelined requests: one answer, then close)', async (t) => {
  const pki = await makePki(t);
  const id = await pki.custom({ name: 'app', roles: ['app'], notBefore: ago(10), notAfter: ago(1) });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, route(up.url));
  const { rawExchange } = await import('../helpers/broker.ts');
  const out = await rawExchange(b.port, { id, ca: pki.ca, data: 'GET /r/a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /r/b HTTP/1.1\r\nHost: localhost\r\n\r\n', ms: 5_000 });
  assert.equal(out.match(/HTTP\/1\.1 /g)?.length, 1, out);
  assert.match(out, /^HTTP\/1\.1 495 /);
  assert.equal(up.seen.length, 0);
});

test('tls.refusal close: a revoked certificate is cut off after the handshake with no HTTP answer (the old behaviour); still logged with the certificate', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('app', ['app']);
  await pki.revoke(id.serial);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { ...route(up.url), tls: { server: 'localhost', refusal: 'close' } });
  const err = await request(b.port, { id, ca: pki.ca, path: '/r/x' }).then(
    (res) => assert.fail(`expected no HTTP answer, got ${res.status}`),
    (e: NodeJS.ErrnoException) => e,
  );
  assert.match(String(err.code), /^(ECONNRESET|EPIPE|EPROTO|ERR_SSL_[A-Z0-9_]+)$/);
  const [line] = await refusedLines(b, 1);
  assert.equal(line!.reason, 'revoked');
  assert.equal((line!.certificate as Record<string, string>)?.serial, id.serial.toLowerCase(), `the presented certificate is logged: ${JSON.stringify(line)}`);
  assert.equal(up.seen.length, 0);
});

test('tls.refusal http: while the broker\'s own CRL has expired (it expired while running), a valid client is told "the broker\'s CRL has expired (not your fault)"', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('app', ['app']);
  const { publishCrl } = await import('../../src/pki/revoke.ts');
  const crl = await publishCrl(pki.store, { nextUpdateMs: 3_000, force: true });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, route(up.url));
  // bounded: the CRL's nextUpdate is at most 3 s away
  const wait = crl.nextUpdate.getTime() + 1_100 - Date.now();
  await new Promise((r) => setTimeout(r, Math.max(0, Math.min(wait, 5_000))));
  const res = await request(b.port, { id, ca: pki.ca, path: '/r/x' });
  assert.equal(res.status, 495, res.text);
  assert.equal(res.json().reason, 'the broker\'s CRL has expired (not your fault)');
  const [line] = await refusedLines(b, 1);
  assert.equal(line!.reason, 'CRL expired', JSON.stringify(line));
  assert.equal((line!.certificate as Record<string, string>).serial, id.serial.toLowerCase());
  assert.equal(up.seen.length, 0);
});

test('tls.refusal http over TLS 1.2: an expired certificate gets the 495 too', async (t) => {
  const pki = await makePki(t);
  const id = await pki.custom({ name: 'app', roles: ['app'], notBefore: ago(10), notAfter: ago(1) });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, route(up.url));
  const res = await request(b.port, { id, ca: pki.ca, path: '/r/x', tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } });
  assert.equal(res.status, 495, res.text);
  assert.equal(res.json().reason, 'certificate expired');
  assert.equal(up.seen.length, 0);
});

test('tls.refusal http: a WebSocket upgrade with a refused certificate gets the 495, never an upgrade, and nothing reaches the upstream', async (t) => {
  const { default: WebSocket } = await import('ws');
  const pki = await makePki(t);
  const id = await pki.custom({ name: 'app', roles: ['app'], notBefore: ago(10), notAfter: ago(1) });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'ws', path: '/ws', upstream: up.url, roles: ['app'], websocket: true }] });
  const o: import('ws').ClientOptions & { servername: string } = { ca: pki.ca, cert: id.cert, key: id.key, servername: 'localhost', handshakeTimeout: 10_000 };
  const ws = new WebSocket(`wss://127.0.0.1:${b.port}/ws/x`, o);
  t.after(() => ws.terminate());
  const status = await new Promise<number>((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('open', () => reject(new Error('upgraded')));
    ws.once('error', reject);
  });
  assert.equal(status, 495);
  await refusedLines(b, 1);
  assert.equal(up.seen.length, 0);
  assert.equal(b.logs.of('access').length, 0, 'the upgrade never reached the pipeline');
});
