/**
 * Request heads a framework behind the broker would read differently from the broker, through real
 * TLS: method-override headers (stripped, or judged by the ACL where a route opts in), a Host that
 * is not `host[:port]` (400), identity values that cannot travel as headers (a coded 400, never a
 * 500), and callers without a certificate, who get one answer whatever the path.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { exportJWK, generateKeyPair } from 'jose';
import { makePki, rawExchange, request, startBroker, startUpstream, type Response } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';

const OVERRIDES = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'x_http_method_override'];

test('method-override headers never reach the upstream of a route that does not opt in', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'], methods: ['GET', 'POST'] }] });
  const alice = await pki.issue('alice', ['user']);

  // The control: DELETE itself is refused on this GET/POST route.
  const del = await request(b.port, { id: alice, ca: pki.ca, method: 'DELETE', path: '/api/items/1' });
  assert.equal(del.status, 403);

  for (const name of OVERRIDES) {
    up.seen.length = 0;
    const res = await request(b.port, { id: alice, ca: pki.ca, method: 'POST', path: '/api/items/1', headers: { [name]: 'DELETE' } });
    assert.equal(res.status, 200, `${name}: ${res.text}`);
    assert.equal(up.seen.length, 1);
    const forwarded = Object.keys(up.seen[0]!.headers).filter((h) => /method/i.test(h));
    assert.deepEqual(forwarded, [], `${name} was forwarded: ${JSON.stringify(up.seen[0]!.headers)}`);
  }
});

test('a route with methodOverride: true forwards the headers, and judges the method they name like a real one', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'legacy', path: '/legacy', upstream: up.url, roles: ['user'], methods: ['GET', 'POST', 'PUT'], methodOverride: true }] });
  const alice = await pki.issue('alice', ['user']);

  const refused: Array<[string, Record<string, string | string[]>]> = [
    ['DELETE in X-HTTP-Method-Override', { 'X-HTTP-Method-Override': 'DELETE' }],
    ['delete, lower case (frameworks upper-case it)', { 'X-HTTP-Method-Override': ' delete ' }],
    ['DELETE in X-HTTP-Method', { 'X-HTTP-Method': 'DELETE' }],
    ['DELETE in X-Method-Override', { 'X-Method-Override': 'DELETE' }],
    ['DELETE under an underscore name', { x_method_override: 'DELETE' }],
    ['an allowed and a refused one', { 'X-HTTP-Method-Override': 'PUT', 'X-HTTP-Method': 'DELETE' }],
    ['two values in one header', { 'X-HTTP-Method-Override': 'PUT, DELETE' }],
    ['not a method', { 'X-HTTP-Method-Override': 'PURGE' }],
  ];
  for (const [what, headers] of refused) {
    const res = await request(b.port, { id: alice, ca: pki.ca, method: 'POST', path: '/legacy/x', headers });
    assert.equal(res.status, 403, `${what}: ${res.text}`);
    assert.equal(res.json().code, 'BRK_ERR_ACL_DENIED', what);
  }
  assert.equal(up.seen.length, 0, 'nothing refused reached the upstream');

  const ok = await request(b.port, { id: alice, ca: pki.ca, method: 'POST', path: '/legacy/x', headers: { 'X-HTTP-Method-Override': 'put' } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(up.seen[0]!.headers['x-http-method-override'], 'put', 'forwarded on the route that opts in');
});

/** One raw request over mTLS; the status line and the JSON body's code. */
async function rawStatus(port: number, o: Parameters<typeof rawExchange>[1]): Promise<{ status: number; code: string | undefined; reply: string }> {
  const reply = await rawExchange(port, o);
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(reply)?.[1] ?? 0);
  return { status, code: /"code":"([A-Z_]+)"/.exec(reply)?.[1], reply };
}

test('Host must be host[:port]: anything else is 400 BRK_ERR_HTTP_BAD_HOST and nothing is forwarded', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const alice = await pki.issue('alice', ['user']);
  const ask = (host: string) => rawStatus(b.port, { id: alice, ca: pki.ca, data: `GET /api/a HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n` });

  const bad = [
    '<script>alert(1)</script>', 'a,b', 'localhost, evil.example', 'evil"x', 'a b', 'a;b=c', 'user@localhost', 'localhost/x', 'a\\b',
    '%6cocalhost', '[::1', '[::1]x', '[fe80::1%25eth0]', '[v1.x]', 'localhost:', 'localhost:99999', 'localhost:80a', 'localhost:1:2', ':443', 'ünicode.example', 'x'.repeat(300),
  ];
  for (const host of bad) {
    const r = await ask(host);
    assert.equal(r.status, 400, `${JSON.stringify(host)}: ${r.reply.slice(0, 200)}`);
    assert.equal(r.code, 'BRK_ERR_HTTP_BAD_HOST', JSON.stringify(host));
  }
  assert.equal(up.seen.length, 0, 'nothing with a bad Host reached the upstream');
  assert.deepEqual(b.logs.of('error').filter((l) => l.event === 'internal'), [], 'no internal error');

  const good = ['localhost', 'localhost:8443', '127.0.0.1', '127.0.0.1:1', '[::1]', '[::1]:443', '[2001:db8::1]:8443', 'api.partner-1.example', 'under_score.example', 'LOCALHOST.'];
  for (const host of good) {
    up.seen.length = 0;
    const r = await ask(host);
    assert.equal(r.status, 200, `${host}: ${r.reply.slice(0, 200)}`);
    assert.equal(up.seen[0]?.headers['x-forwarded-host'], host);
    assert.match(String(up.seen[0]?.headers.forwarded), new RegExp(`host=("?)${host.replace(/[[\].]/g, '\\$&')}\\1$`));
  }
});

test('an identity that cannot travel as a header is a coded 400 (not a 500 with an internal-error line)', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  // The broker's own CA refuses such names; a certificate made otherwise (or another client CA) may carry them.
  const now = Date.now();
  const window = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) };
  const cases = [
    ['a comma in the name', await pki.custom({ name: 'alice, admin', roles: ['user'], ...window })],
    ['a space in the name', await pki.custom({ name: 'alice admin', roles: ['user'], ...window })],
    ['a role with a space', await pki.custom({ name: 'bob', roles: ['user', 'ops team'], ...window })],
  ] as const;
  for (const [what, id] of cases) {
    const res = await request(b.port, { id, ca: pki.ca, path: '/api/a' });
    assert.equal(res.status, 400, `${what}: ${res.text}`);
    assert.equal(res.json().code, 'BRK_ERR_PROXY_IDENTITY_VALUE', what);
  }
  assert.equal(up.seen.length, 0, 'not forwarded');
  assert.deepEqual(b.logs.of('error').filter((l) => l.event === 'internal'), [], 'no internal-error line');
  const denied = b.logs.of('access').filter((l) => l.code === 'BRK_ERR_PROXY_IDENTITY_VALUE');
  assert.equal(denied.length, cases.length);
  assert.ok(denied.every((l) => l.decision === 'deny' && l.status === 400));
});

/** One request on the certificate-optional listener without a certificate, read raw (every header as sent). */
function anonymous(port: number, ca: string, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port, ca }, () => socket.write(data));
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 10 s')), 10_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => (clearTimeout(timer), reject(e)));
    socket.on('end', () => socket.end());
    socket.on('close', () => (clearTimeout(timer), resolve(Buffer.concat(chunks).toString('latin1'))));
  });
}

/** The answer without what differs per request anyway (date, request id). */
function comparable(reply: string): string {
  return reply.replace(/^date: .*\r\n/im, '').replace(/^x-request-id: [0-9a-f-]+\r\n/im, 'x-request-id: …\r\n').replace(/"reqId":"[0-9a-f-]+"/, '"reqId":"…"');
}

test('without a certificate, every path gets the same answer: unknown path, mTLS, API key, bearer and Basic routes', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const dir = tempDir(t);
  const jwksFile = join(dir, 'jwks.json');
  const { publicKey } = await generateKeyPair('ES256');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
  const b = await startBroker(t, pki, {
    listenCertOptional: { host: '127.0.0.1', port: 0 },
    auth: { jwt: { jwksFile, issuer: 'https://idp.example/', audience: ['broker'] } },
    routes: [
      { name: 'certs', path: '/certs', upstream: up.url, roles: ['user'] },
      { name: 'keys', path: '/keys', upstream: up.url, roles: ['user'], auth: ['apiKey'] },
      { name: 'tokens', path: '/tokens', upstream: up.url, roles: ['user'], auth: ['jwt'] },
      { name: 'basic', path: '/basic', upstream: up.url, roles: ['user'], auth: ['basic'] },
      { name: 'both', path: '/both', upstream: up.url, roles: ['user'], auth: ['mtls', 'jwt'] },
    ],
  });
  const opt = (b.broker.optionalServer?.address() as AddressInfo).port;

  const paths = ['/nothing-here', '/certs/x', '/keys/x', '/tokens/x', '/basic/x', '/both/x'];
  const extras = [
    ['no credential', ''],
    // A header that is no credential for any of these routes: still the same answer everywhere.
    ['an unrelated Authorization scheme', 'Authorization: Negotiate abc\r\n'],
  ] as const;
  for (const [what, extra] of extras) {
    const answers = new Map<string, string>();
    for (const path of paths) answers.set(path, comparable(await anonymous(opt, pki.ca, `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n`)));
    const first = answers.get('/nothing-here') as string;
    assert.match(first, /^HTTP\/1\.1 401 /, first);
    assert.match(first, /"code":"BRK_ERR_AUTH_REQUIRED"/);
    // One challenge set for all, from the config: the schemes some route accepts.
    assert.match(first, /\r\nwww-authenticate: Bearer realm="broker", Basic realm="broker", charset="UTF-8"\r\n/i, first);
    for (const [path, answer] of answers) assert.equal(answer, first, `${what}: ${path} answers differently from an unknown path`);
  }
  assert.equal(up.seen.length, 0);

  // The same through a real client's view of it, for the record.
  const seen: Response[] = [];
  for (const path of paths) seen.push(await request(opt, { ca: pki.ca, path }));
  assert.deepEqual(new Set(seen.map((r) => `${r.status} ${r.json().code} ${r.headers['www-authenticate']}`)).size, 1);
});
