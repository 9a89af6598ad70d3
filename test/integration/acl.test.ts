/**
 * Route ACL: which verified identity may use which route, with which methods. Denials are 403 and
 * unknown paths 404, both with the same generic body that names no rule, route, upstream or role;
 * the access log has the details. Prefixes are segment-aligned and case-sensitive, the longest one
 * wins, and `identities` rules add roles by CN glob, fingerprint or serial.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { makePki, request, startBroker, startUpstream, type Response } from '../helpers/broker.ts';
import { validateConfig } from '../../src/config/index.ts';

/** A request id: the trace id and the broker span id of its traceparent. */
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;

/** The one error shape: exactly these four keys, the generic message, a request id. */
function assertErrorBody(res: Response, status: number, code: string): Record<string, unknown> {
  assert.equal(res.status, status, res.text);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = res.json();
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'reqId', 'statusCode']);
  assert.equal(body.statusCode, status);
  assert.equal(body.code, code);
  assert.match(String(body.reqId), REQ_ID);
  return body;
}

/** Nothing in the body or the headers may name what the client is not meant to learn. */
function assertNamesNothing(res: Response, secrets: string[]): void {
  const headers = Object.entries(res.headers).flat(2).join('\n');
  for (const s of secrets) {
    assert.ok(!res.text.includes(s), `body names ${JSON.stringify(s)}: ${res.text}`);
    assert.ok(!headers.includes(s), `headers name ${JSON.stringify(s)}: ${headers}`);
  }
}

test('an identity without the route\'s role gets a bare 403 that names no rule, route, upstream or role; the access log has them', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'orders-route', path: '/orders', upstream: up.url, roles: ['orders-reader'] },
      { name: 'vault-route', path: '/vault', upstream: `${up.url}/internal-base`, roles: ['superuser'] },
    ],
  });
  const acme = await pki.issue('acme', ['billing']);
  const res = await request(b.port, { id: acme, ca: pki.ca, path: '/orders/1' });
  const body = assertErrorBody(res, 403, 'BRK_ERR_ACL_DENIED');
  assert.equal(body.message, 'access denied');
  assertNamesNothing(res, ['orders-route', 'vault-route', '/vault', 'internal-base', 'orders-reader', 'superuser', 'billing', up.url, String(up.port), 'role not allowed']);
  assert.equal(up.seen.length, 0);

  const access = await b.logs.waitFor((l) => l.log === 'access');
  assert.equal(access.decision, 'deny');
  assert.equal(access.code, 'BRK_ERR_ACL_DENIED');
  assert.equal(access.route, 'orders-route');
  assert.equal(access.status, 403);
  assert.equal(access.principal, 'acme');
  assert.deepEqual(access.roles, ['billing']);
  assert.equal(access.upstream, null);
  assert.equal(access.reqId, body.reqId);
  assert.match(String(access.detail), /^role not allowed on route orders-route$/);
});

test('an unknown path is a 404 with the same bare shape', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'orders-route', path: '/orders', upstream: up.url, roles: ['partner'] }] });
  const acme = await pki.issue('acme', ['partner']);
  const res = await request(b.port, { id: acme, ca: pki.ca, path: '/nothing/here' });
  const body = assertErrorBody(res, 404, 'BRK_ERR_HTTP_NOT_FOUND');
  assert.equal(body.message, 'not found');
  assertNamesNothing(res, ['orders-route', '/orders', 'partner', up.url, String(up.port), '/nothing']);
  assert.equal(up.seen.length, 0);
  const access = await b.logs.waitFor((l) => l.log === 'access');
  assert.equal(access.decision, 'deny');
  assert.equal(access.code, 'BRK_ERR_HTTP_NOT_FOUND');
  assert.equal(access.route, null);
});

test('methods: a method the route does not list is a 403; HEAD comes with GET', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'ro', path: '/ro', upstream: up.url, roles: ['app'], methods: ['GET'] }] });
  const id = await pki.issue('app', ['app']);
  const cases: Array<[method: string, status: number]> = [
    ['GET', 200],
    ['HEAD', 200],
    ['POST', 403],
    ['PUT', 403],
    ['DELETE', 403],
    ['PATCH', 403],
    ['OPTIONS', 403],
  ];
  for (const [method, status] of cases) {
    const res = await request(b.port, { id, ca: pki.ca, method, path: '/ro/x', ...(method === 'GET' || method === 'HEAD' ? {} : { body: '{}', headers: { 'content-type': 'application/json' } }) });
    assert.equal(res.status, status, `${method} ${res.text}`);
    if (status === 403) assertErrorBody(res, 403, 'BRK_ERR_ACL_DENIED');
  }
  assert.deepEqual(up.seen.map((s) => s.method), ['GET', 'HEAD']);
  const denied = b.logs.of('access').filter((l) => l.decision === 'deny');
  assert.equal(denied.length, 5);
  for (const l of denied) assert.match(String(l.detail), /^method not allowed on route ro$/);
});

test('prefixes are segment-aligned and case-sensitive', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'orders', path: '/orders', upstream: up.url, roles: ['partner'] }] });
  const id = await pki.issue('acme', ['partner']);
  const cases: Array<[path: string, status: number]> = [
    ['/orders', 200],
    ['/orders/', 200],
    ['/orders/1', 200],
    ['/orders/1/items?x=1', 200],
    ['/ordersX', 404],
    ['/orders-old/1', 404],
    ['/ORDERS/1', 404],
    ['/Orders', 404],
  ];
  for (const [path, status] of cases) {
    const res = await request(b.port, { id, ca: pki.ca, path });
    assert.equal(res.status, status, `${path}: ${res.text}`);
  }
  assert.deepEqual(up.seen.map((s) => s.url), ['/orders', '/orders/', '/orders/1', '/orders/1/items?x=1']);
});

test('the longest matching prefix decides, not the union of the routes that match', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['a'] },
      { name: 'api-admin', path: '/api/admin', upstream: up.url, roles: ['admin'] },
    ],
  });
  const a = await pki.issue('a-user', ['a']);
  const admin = await pki.issue('admin-user', ['admin']);
  const cases: Array<[who: 'a' | 'admin', path: string, status: number]> = [
    ['a', '/api/x', 200],
    ['a', '/api/adminx', 200],
    ['a', '/api/admin', 403],
    ['a', '/api/admin/', 403],
    ['a', '/api/admin/x', 403],
    ['admin', '/api/admin/x', 200],
    ['admin', '/api/admin', 200],
    ['admin', '/api/x', 403],
    ['admin', '/api/adminx', 403],
  ];
  for (const [who, path, status] of cases) {
    const res = await request(b.port, { id: who === 'a' ? a : admin, ca: pki.ca, path });
    assert.equal(res.status, status, `${who} ${path}: ${res.text}`);
  }
  assert.deepEqual(up.seen.map((s) => `${s.headers['x-client-name']} ${s.url}`), ['a-user /api/x', 'a-user /api/adminx', 'admin-user /api/admin/x', 'admin-user /api/admin']);
  const routes = b.logs.of('access').map((l) => `${l.route} ${l.status}`);
  assert.deepEqual(routes, ['api 200', 'api 200', 'api-admin 403', 'api-admin 403', 'api-admin 403', 'api-admin 200', 'api-admin 200', 'api 403', 'api 403']);
});

test('identities rules: a CN glob adds a role the certificate does not carry, and the upstream sees it', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    identities: [
      { match: { cn: 'legacy-*' }, roles: ['legacy'] },
      // Only the first matching rule applies.
      { match: { cn: 'legacy-app' }, roles: ['never'] },
    ],
    routes: [
      { name: 'legacy', path: '/legacy', upstream: up.url, roles: ['legacy'] },
      { name: 'never', path: '/never', upstream: up.url, roles: ['never'] },
    ],
  });
  const legacy = await pki.issue('legacy-app', ['other']);
  const plain = await pki.issue('app', ['other']);
  const lookalike = await pki.issue('my-legacy-app', ['other']);

  assert.equal((await request(b.port, { id: legacy, ca: pki.ca, path: '/legacy/x' })).status, 200);
  assert.equal(up.seen.length, 1);
  assert.equal(up.seen[0]!.headers['x-client-name'], 'legacy-app');
  assert.equal(up.seen[0]!.headers['x-client-roles'], 'other,legacy');
  assert.equal((await request(b.port, { id: legacy, ca: pki.ca, path: '/never/x' })).status, 403);
  assert.equal((await request(b.port, { id: plain, ca: pki.ca, path: '/legacy/x' })).status, 403);
  assert.equal((await request(b.port, { id: lookalike, ca: pki.ca, path: '/legacy/x' })).status, 403);
  assert.equal(up.seen.length, 1);

  const ok = b.logs.of('auth').find((l) => l.outcome === 'ok' && l.principal === 'legacy-app');
  assert.deepEqual(ok?.roles, ['other', 'legacy']);
});

test('identities rules: a fingerprint or a serial pins one certificate, not its name', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const pinnedFp = await pki.issue('pinned-fp', ['other']);
  const pinnedSerial = await pki.issue('pinned-serial', ['other']);
  const fingerprint = new X509Certificate(pinnedFp.cert).fingerprint256; // "AB:CD:…", as operators copy it
  const b = await startBroker(t, pki, {
    identities: [
      { match: { fingerprint }, roles: ['fp'] },
      { match: { serial: pinnedSerial.serial.toUpperCase() }, roles: ['sn'] },
    ],
    routes: [
      { name: 'fp', path: '/fp', upstream: up.url, roles: ['fp'] },
      { name: 'sn', path: '/sn', upstream: up.url, roles: ['sn'] },
    ],
  });
  // A second certificate with the same name (a renewal, say) gets neither role.
  const sameNameFp = await pki.custom({ name: 'pinned-fp', roles: ['other'], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
  const sameNameSerial = await pki.custom({ name: 'pinned-serial', roles: ['other'], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });

  const cases: Array<[label: string, id: typeof pinnedFp, path: string, status: number]> = [
    ['fingerprint-pinned', pinnedFp, '/fp/x', 200],
    ['fingerprint-pinned on the serial route', pinnedFp, '/sn/x', 403],
    ['same name, other fingerprint', sameNameFp, '/fp/x', 403],
    ['serial-pinned', pinnedSerial, '/sn/x', 200],
    ['serial-pinned on the fingerprint route', pinnedSerial, '/fp/x', 403],
    ['same name, other serial', sameNameSerial, '/sn/x', 403],
  ];
  for (const [label, id, path, status] of cases) {
    assert.equal((await request(b.port, { id, ca: pki.ca, path })).status, status, label);
  }
  assert.deepEqual(up.seen.map((s) => `${s.headers['x-client-roles']} ${s.url}`), ['other,fp /fp/x', 'other,sn /sn/x']);
});

test('a denied request\'s body does not hold up the connection: drained up to bodyLimit, cut past it', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'open', path: '/open', upstream: up.url, roles: ['app'] },
      { name: 'closed', path: '/closed', upstream: up.url, roles: ['other'] },
    ],
    limits: { bodySize: '1mb' },
    timeouts: { keepAlive: '60s', request: '60s' },
  });
  const id = await pki.issue('app', ['app']);

  // Keep-alive: a 900 kB body refused with 403, then the next request on the same connection.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const send = (method: string, path: string, body?: Buffer) =>
    new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: b.port, method, path, ca: pki.ca, cert: id.cert, key: id.key, agent, timeout: 20_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      });
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', reject);
      req.end(body);
    });
  assert.deepEqual(await send('POST', '/closed/x', Buffer.alloc(900_000, 0x61)), { status: 403, reused: false });
  assert.deepEqual(await send('GET', '/open/x'), { status: 200, reused: true });

  // Chunked, past bodyLimit: the 403 still arrives, then the broker drops the connection instead
  // of reading on (keepAlive is 60 s here, so only the broker's own cut closes it this soon).
  const outcome = await new Promise<string>((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port: b.port, ca: pki.ca, cert: id.cert, key: id.key }, () => {
      socket.write('POST /closed/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = `10000\r\n${'a'.repeat(0x10000)}\r\n`;
      let sent = 0;
      const pump = () => {
        while (sent < 48 && !socket.destroyed) if ((sent++, !socket.write(chunk))) return void socket.once('drain', pump);
      };
      pump();
    });
    const deadline = setTimeout(() => (socket.destroy(), reject(new Error('the broker kept the connection open'))), 20_000);
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => (clearTimeout(deadline), resolve(text)));
  });
  assert.match(outcome, /^HTTP\/1\.1 403 /);
  assert.equal(up.seen.length, 1);
});

test('a route without roles (omitted or empty) is refused by validateConfig, which says why', () => {
  const { config, problems } = validateConfig(
    { tls: { server: 'localhost' }, routes: [{ name: 'open', path: '/open', upstream: 'http://127.0.0.1:9' }, { name: 'empty', path: '/empty', upstream: 'http://127.0.0.1:9', roles: [] }] },
    '/config-dir',
  );
  assert.equal(config, undefined);
  assert.deepEqual(problems, [
    'routes[0].roles: empty: nobody could use this route (list the roles allowed)',
    'routes[1].roles: empty: nobody could use this route (list the roles allowed)',
  ]);
});
