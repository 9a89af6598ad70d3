/**
 * Upstream failures: a dead upstream is a 502, a silent one a 504 after the route's timeout, a reset
 * a 502 (or a cut-off response once the head was already sent); every failure leaves an error log
 * line with the route, and the broker keeps serving. An https upstream is verified against the CA
 * the route names, and refused (502) when it cannot be verified.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { makePki, request, startBroker, startUpstream, type Identity, type Response, type TestPki, deadPort } from '../helpers/broker.ts';

/** A request id: the trace id and the broker span id of its traceparent. */
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;

function assertErrorBody(res: Response, status: number, code: string): void {
  assert.equal(res.status, status, res.text);
  const body = res.json();
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'reqId', 'statusCode']);
  assert.equal(body.code, code);
  assert.match(String(body.reqId), REQ_ID);
}


test('an upstream with nothing listening is a 502; the broker logs it and keeps serving', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const port = await deadPort();
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${port}`, roles: ['app'] },
      { name: 'alive', path: '/alive', upstream: up.url, roles: ['app'] },
    ],
  });
  const id = await pki.issue('app', ['app']);
  const res = await request(b.port, { id, ca: pki.ca, path: '/dead/x' });
  assertErrorBody(res, 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  // the client learns nothing about where the upstream is
  assert.ok(!res.text.includes(String(port)) && !res.text.includes('127.0.0.1') && !res.text.includes('ECONNREFUSED'), res.text);

  const err = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.equal(err.route, 'dead');
  assert.equal(err.upstream, `http://127.0.0.1:${port}`);
  assert.equal(err.reqId, res.json().reqId);

  // still serving: the same route fails the same way, the other route works
  assertErrorBody(await request(b.port, { id, ca: pki.ca, path: '/dead/y' }), 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  assert.equal((await request(b.port, { id, ca: pki.ca, path: '/alive/x' })).status, 200);
  assert.equal(b.logs.of('error').filter((l) => l.event === 'upstream').length, 2);
  assert.deepEqual(b.logs.of('access').map((l) => `${l.route} ${l.status} ${l.code ?? '-'} ${l.decision}`), ['dead 502 BRK_ERR_UPSTREAM_UNAVAILABLE error', 'dead 502 BRK_ERR_UPSTREAM_UNAVAILABLE error', 'alive 200 - allow']);
  // an outage is an error of an allowed request, not a denial: the upstream it failed on is named
  assert.ok(b.logs.of('access').filter((l) => l.status === 502).every((l) => typeof l.upstream === 'string' && l.upstream.startsWith('http://127.0.0.1:')));
});

test('an upstream that accepts but never answers is a 504 after the route timeout', async (t) => {
  const pki = await makePki(t);
  const silent = await startUpstream(t, () => {}); // reads the request, never answers
  const b = await startBroker(t, pki, { routes: [{ name: 'slow', path: '/slow', upstream: silent.url, roles: ['app'], timeout: '300ms' }] });
  const id = await pki.issue('app', ['app']);
  const res = await request(b.port, { id, ca: pki.ca, path: '/slow/x' });
  assertErrorBody(res, 504, 'BRK_ERR_UPSTREAM_TIMEOUT');
  assert.equal(silent.seen.length, 1, 'the request did reach the upstream');
  const err = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.equal(err.route, 'slow');
  assert.equal(err.msg, 'upstream timed out');
});

test('an upstream that resets the connection before answering is a 502', async (t) => {
  const pki = await makePki(t);
  const resetter = await startUpstream(t, (_req, res) => res.socket?.resetAndDestroy());
  const b = await startBroker(t, pki, { routes: [{ name: 'reset', path: '/reset', upstream: resetter.url, roles: ['app'] }] });
  const id = await pki.issue('app', ['app']);
  assertErrorBody(await request(b.port, { id, ca: pki.ca, path: '/reset/x' }), 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  const err = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.equal(err.route, 'reset');
  assert.equal(err.msg, 'upstream failed');
});

test('an upstream that resets in the middle of its body: the client gets a cut-off response, never a complete one', async (t) => {
  const pki = await makePki(t);
  const resetter = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
    res.write('x'.repeat(100), () => res.socket?.resetAndDestroy());
  });
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'reset', path: '/reset', upstream: resetter.url, roles: ['app'] },
      { name: 'alive', path: '/alive', upstream: up.url, roles: ['app'] },
    ],
  });
  const id = await pki.issue('app', ['app']);
  // The head (200, content-length 1000) was already on its way: the only honest answer left is to
  // cut the connection, so the client sees an aborted body and not a short one passed off as whole.
  const outcome = await new Promise<string>((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: b.port, path: '/reset/x', ca: pki.ca, cert: id.cert, key: id.key, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve(`complete ${res.statusCode} ${bytes}`));
      res.on('error', (e: NodeJS.ErrnoException) => resolve(`aborted ${res.statusCode} ${e.code} ${bytes}`));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(`request error ${e.code}`));
    req.end();
  });
  t.diagnostic(outcome);
  assert.match(outcome, /^(aborted 200 ECONNRESET \d+|request error ECONNRESET)$/);
  assert.ok(!/^complete/.test(outcome));
  // the broker keeps serving
  assert.equal((await request(b.port, { id, ca: pki.ca, path: '/alive/x' })).status, 200);
});

/** An https upstream with the test CA's "localhost" server certificate (DNS localhost, IP 127.0.0.1). */
async function startHttpsUpstream(t: TestContext, pki: TestPki): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const server = createHttpsServer(
    { cert: readFileSync(pki.store.layout.serverCert('localhost')), key: readFileSync(pki.store.layout.serverKey('localhost')) },
    (req, res) => {
      seen.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ tls: true, url: req.url, name: req.headers['x-client-name'] }));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

async function httpsSetup(t: TestContext): Promise<{ pki: TestPki; id: Identity; upstream: { url: string; seen: string[] } }> {
  const pki = await makePki(t);
  return { pki, id: await pki.issue('app', ['app']), upstream: await startHttpsUpstream(t, pki) };
}

test('an https upstream verified with the CA the route names works', async (t) => {
  const { pki, id, upstream } = await httpsSetup(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'secure', path: '/secure', upstream: upstream.url, roles: ['app'], upstreamTls: { ca: pki.store.layout.caCert } }] });
  const res = await request(b.port, { id, ca: pki.ca, path: '/secure/x' });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json(), { tls: true, url: '/secure/x', name: 'app' });
  assert.deepEqual(upstream.seen, ['/secure/x']);
});

test('an https upstream that the system store cannot verify is a 502, and nothing is sent to it', async (t) => {
  const { pki, id, upstream } = await httpsSetup(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'secure', path: '/secure', upstream: upstream.url, roles: ['app'] }] });
  assertErrorBody(await request(b.port, { id, ca: pki.ca, path: '/secure/x' }), 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  assert.deepEqual(upstream.seen, []);
  const err = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.equal(err.route, 'secure');
  t.diagnostic(JSON.stringify(err.err));
  assert.match(JSON.stringify(err.err), /certificate|UNABLE_TO|SELF_SIGNED/i);
});

test('an https upstream whose certificate does not name the expected host is a 502', async (t) => {
  const { pki, id, upstream } = await httpsSetup(t);
  const b = await startBroker(t, pki, {
    routes: [{ name: 'secure', path: '/secure', upstream: upstream.url, roles: ['app'], upstreamTls: { ca: pki.store.layout.caCert, servername: 'other.example' } }],
  });
  assertErrorBody(await request(b.port, { id, ca: pki.ca, path: '/secure/x' }), 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  assert.deepEqual(upstream.seen, []);
});

test('upstream mTLS: the broker presents the client certificate the route names; without it the upstream refuses (502)', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('app', ['app']);
  // the upstream requires a client certificate from the same CA; the broker gets one of its own
  const brokerAsClient = await pki.issue('broker-upstream', ['upstream']);
  const dir = mkdtempSync(join(tmpdir(), 'broker-upstream-mtls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'client.crt'), brokerAsClient.cert);
  writeFileSync(join(dir, 'client.key'), brokerAsClient.key, { mode: 0o600 });
  const seen: string[] = [];
  const server = createHttpsServer(
    { cert: readFileSync(pki.store.layout.serverCert('localhost')), key: readFileSync(pki.store.layout.serverKey('localhost')), ca: readFileSync(pki.store.layout.chain), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      seen.push(`${req.url} from ${String(peer.subject?.CN)}`);
      res.end('ok');
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'mtls', path: '/mtls', upstream: url, roles: ['app'], upstreamTls: { ca: pki.store.layout.caCert, cert: join(dir, 'client.crt'), key: join(dir, 'client.key') } },
      { name: 'nocert', path: '/nocert', upstream: url, roles: ['app'], upstreamTls: { ca: pki.store.layout.caCert } },
    ],
  });
  const ok = await request(b.port, { id, ca: pki.ca, path: '/mtls/x' });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(seen, ['/mtls/x from broker-upstream']);
  assertErrorBody(await request(b.port, { id, ca: pki.ca, path: '/nocert/x' }), 502, 'BRK_ERR_UPSTREAM_UNAVAILABLE');
  assert.deepEqual(seen, ['/mtls/x from broker-upstream']);
});
