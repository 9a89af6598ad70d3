/**
 * Admission: who gets through the TLS handshake. With tls.refusal close, every refused client is
 * cut off in the handshake (a TLS alert or a reset, never an HTTP answer), reaches no upstream, and leaves one auth line
 * with outcome "refused" and the precise reason. A valid client gets through with a full auth line;
 * a session offered again is never resumed (tickets are off by default); a certificate revoked
 * while its connection is open is refused on its next request.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { Agent, request as httpsRequest } from 'node:https';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';

const DAY = 86_400_000;
const route = (upstream: string) => ({ routes: [{ name: 'r', path: '/r', upstream, roles: ['app'] }] });

async function refusedLine(b: RunningBroker): Promise<Record<string, unknown>> {
  return b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'refused');
}

type Version = 'TLSv1.2' | 'TLSv1.3';
const VERSIONS: Version[] = ['TLSv1.2', 'TLSv1.3'];

/** The client must fail at the TLS layer: the request rejects with a socket/TLS error and no HTTP status. */
async function assertRefusedInHandshake(b: RunningBroker, pki: TestPki, id: Identity | undefined, version: Version): Promise<void> {
  const err = await request(b.port, { ...(id ? { id } : {}), ca: pki.ca, path: '/r/x', tls: { minVersion: version, maxVersion: version } }).then(
    (res) => assert.fail(`expected a TLS refusal, got HTTP ${res.status}`),
    (e: NodeJS.ErrnoException) => e,
  );
  assert.match(String(err.code), /^(ECONNRESET|EPIPE|EPROTO|ERR_SSL_[A-Z0-9_]+)$/, `unexpected client error ${err.code}: ${err.message}`);
}

const ago = (days: number) => new Date(Date.now() - days * DAY);

const refusals: Array<{ name: string; reason: string; detail?: string; make(pki: TestPki, t: TestContext): Promise<Identity | undefined> }> = [
  { name: 'no client certificate', reason: 'no certificate', detail: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', make: async () => undefined },
  // OpenSSL reports the last failure, UNABLE_TO_GET_CRL (no CRL from a CA the broker does not know).
  { name: 'a certificate from another CA', reason: 'unknown CA', make: async (_pki, t) => (await makePki(t)).issue('app', ['app']) },
  { name: 'an expired certificate', reason: 'expired', detail: 'CERT_HAS_EXPIRED', make: (pki) => pki.custom({ name: 'app', roles: ['app'], notBefore: ago(10), notAfter: ago(1) }) },
  { name: 'a certificate not yet valid', reason: 'not yet valid', detail: 'CERT_NOT_YET_VALID', make: (pki) => pki.custom({ name: 'app', roles: ['app'], notBefore: ago(-1), notAfter: ago(-10) }) },
  // OpenSSL checks the leaf's purpose (sslclient) on a server that requests certificates: a
  // serverAuth-only certificate fails with INVALID_PURPOSE before the broker's own EKU check runs.
  { name: 'a certificate without EKU clientAuth', reason: 'wrong key usage', detail: 'INVALID_PURPOSE', make: (pki) => pki.custom({ name: 'app', roles: ['app'], kind: 'server', notBefore: ago(1), notAfter: ago(-1) }) },
  {
    // The CRL is read when the broker starts, so the revocation comes first.
    name: 'a certificate revoked before the broker started',
    reason: 'revoked',
    detail: 'CERT_REVOKED',
    make: async (pki) => {
      const id = await pki.issue('app', ['app']);
      await pki.revoke(id.serial);
      return id;
    },
  },
];

for (const c of refusals) {
  for (const version of VERSIONS) {
    test(`${version}: ${c.name} is refused in the handshake (reason "${c.reason}") and reaches nothing`, async (t) => {
      const pki = await makePki(t);
      const id = await c.make(pki, t);
      const up = await startUpstream(t);
      // tls.refusal close: the silent cut-off (the default answers in HTTP: tls-refusal.test.ts)
      const b = await startBroker(t, pki, { ...route(up.url), tls: { server: 'localhost', refusal: 'close' } });
      await assertRefusedInHandshake(b, pki, id, version);
      const line = await refusedLine(b);
      assert.equal(line.event, 'handshake');
      assert.equal(line.reason, c.reason, `logged ${JSON.stringify(line)}`);
      if (c.detail) assert.equal(line.detail, c.detail);
      assert.equal(line.remoteIp, '127.0.0.1', 'the refused client\'s address is logged');
      assert.equal(up.seen.length, 0);
      assert.equal(b.logs.of('access').length, 0);
      assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'ok').length, 0);
      // the refusal is about this certificate, not the CA: a valid client still gets through
      const good = await pki.issue('good', ['app']);
      assert.equal((await request(b.port, { id: good, ca: pki.ca, path: '/r/x' })).status, 200);
      assert.equal(up.seen.length, 1);
    });
  }
}

test('a valid client gets through and the auth log says who, with which roles, serial, fingerprint, protocol and cipher', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('app', ['app', 'ops']);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, route(up.url));
  const res = await request(b.port, { id, ca: pki.ca, path: '/r/x' });
  assert.equal(res.status, 200);
  assert.equal(up.seen.length, 1);
  const ok = await b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'ok');
  assert.equal(ok.event, 'handshake');
  assert.equal(ok.principal, 'app');
  assert.deepEqual(ok.roles, ['app', 'ops']);
  assert.equal(ok.serial, id.serial.toLowerCase().replace(/^(00)+/, ''));
  assert.match(String(ok.fingerprint), /^[0-9a-f]{64}$/);
  assert.equal(ok.tlsVersion, 'TLSv1.3');
  assert.match(String(ok.cipher), /^TLS_(AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256|AES_128_GCM_SHA256)$/);
  assert.equal(ok.resumed, false);
  assert.equal(b.logs.of('auth').filter((l) => l.outcome === 'refused').length, 0);
});

/**
 * One connection with an HTTP/1.1 request on it; resolves when the server closes it, with whether
 * the session was resumed and the session the client kept (to offer on the next connection).
 */
function handshake(port: number, pki: TestPki, id: Identity, tls: ConnectionOptions): Promise<{ reused: boolean; session: Buffer | undefined; response: string }> {
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined;
    let reused = false;
    const chunks: Buffer[] = [];
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port, ca: pki.ca, cert: id.cert, key: id.key, ...tls }, () => {
      reused = socket.isSessionReused();
      socket.write('GET /r/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    socket.on('session', (s: Buffer) => (session = s));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve({ reused, session, response: Buffer.concat(chunks).toString('latin1') }));
  });
}

for (const version of VERSIONS) {
  test(`with session tickets off (default), an offered ${version} session gets a full handshake`, async (t) => {
    const pki = await makePki(t);
    const id = await pki.issue('app', ['app']);
    const up = await startUpstream(t);
    const b = await startBroker(t, pki, route(up.url));
    const tls = { minVersion: version, maxVersion: version };
    const first = await handshake(b.port, pki, id, tls);
    assert.match(first.response, /^HTTP\/1\.1 200 /);
    assert.equal(first.reused, false);
    // Without a session to offer, the assertion below would prove nothing.
    const offered = first.session;
    assert.ok(offered, 'the client kept a session to offer');
    const second = await handshake(b.port, pki, id, { ...tls, session: offered });
    assert.match(second.response, /^HTTP\/1\.1 200 /);
    assert.equal(second.reused, false);
    const oks = b.logs.of('auth').filter((l) => l.outcome === 'ok');
    assert.equal(oks.length, 2);
    for (const l of oks) {
      assert.equal(l.tlsVersion, version);
      assert.equal(l.resumed, false);
    }
  });

  // The control that shows the check above can see a resumption: with tickets on, the same client
  // code does resume.
  test(`control: with sessionTickets: true, an offered ${version} session is resumed`, async (t) => {
    const pki = await makePki(t);
    const id = await pki.issue('app', ['app']);
    const up = await startUpstream(t);
    const b = await startBroker(t, pki, { ...route(up.url), tls: { server: 'localhost', sessionTickets: true } });
    const tls = { minVersion: version, maxVersion: version };
    const first = await handshake(b.port, pki, id, tls);
    assert.ok(first.session);
    const second = await handshake(b.port, pki, id, { ...tls, session: first.session });
    assert.equal(second.reused, true);
    assert.match(second.response, /^HTTP\/1\.1 200 /);
  });
}

test('a certificate revoked while its keep-alive connection is open is refused on the next request', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('app', ['app']);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, route(up.url));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const get = () =>
    new Promise<{ status: number; body: string; reused: boolean; connection: string | undefined }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: b.port, path: '/r/x', ca: pki.ca, cert: id.cert, key: id.key, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), reused: req.reusedSocket, connection: res.headers.connection }));
      });
      req.on('error', reject);
      req.end();
    });

  const first = await get();
  assert.equal(first.status, 200);
  assert.equal(first.reused, false);

  // There is no reload yet: stand in for one by adding the serial to the set the per-request check reads.
  const serial = id.serial.toLowerCase().replace(/^(00)+/, '');
  (b.broker.material.revoked as Set<string>).add(serial);

  const second = await get();
  assert.equal(second.reused, true, 'the second request went over the same connection');
  assert.equal(second.status, 401);
  assert.equal(second.connection, 'close');
  assert.equal(JSON.parse(second.body).code, 'BRK_ERR_AUTH_REVOKED');
  assert.equal(up.seen.length, 1);
  const line = await b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'refused');
  assert.equal(line.event, 'request');
  assert.equal(line.reason, 'revoked');
  assert.equal(line.serial, serial);
  assert.equal(line.principal, 'app');
});
