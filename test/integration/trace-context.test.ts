/**
 * A request you can follow end to end, through real TLS: the partner's W3C traceparent continued
 * (or replaced when malformed), the request id `<trace-id>-<span-id>` in the partner's answer, in
 * the upstream's request and in the access, error and auth lines of that request; and the
 * connection id joining a handshake's auth line to the access lines of the requests it carried.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Agent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { makePki, request, startBroker, startUpstream, type Identity, type Response, type RunningBroker, type SeenRequest, type TestPki, type Upstream, deadPort } from '../helpers/broker.ts';
import { createKey } from '../../src/pki/credentials.ts';
import { within } from '../helpers/within.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;
const REQ_ID = /^[0-9a-f]{32}-[0-9a-f]{16}$/;
const OPTIONAL = { listenCertOptional: { host: '127.0.0.1', port: 0 } };


interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  alice: Identity;
  dead: number;
  opt: number;
  get(path: string, headers?: Record<string, string | string[]>, o?: { method?: string; body?: Buffer }): Promise<Response>;
}

async function setup(t: TestContext): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const dead = await deadPort();
  const b = await startBroker(t, pki, {
    ...OPTIONAL,
    limits: { bodySize: '1kb' },
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${dead}`, roles: ['user'] },
      { name: 'keys', path: '/k', upstream: up.url, roles: ['billing'], auth: ['apiKey'] },
    ],
  });
  const alice = await pki.issue('alice', ['user']);
  const opt = (b.broker.optionalServer?.address() as AddressInfo).port;
  return { pki, up, b, alice, dead, opt, get: (path, headers = {}, o = {}) => request(b.port, { id: alice, ca: pki.ca, path, headers, ...o }) };
}

/** The one request the upstream saw last, and its traceparent split. */
function lastSeen(up: Upstream): { seen: SeenRequest; traceId: string; spanId: string; flags: string } {
  const seen = up.seen.at(-1);
  assert.ok(seen, 'the upstream saw a request');
  const m = TRACEPARENT.exec(String(seen.headers.traceparent));
  assert.ok(m, `the upstream's traceparent is well-formed: ${String(seen.headers.traceparent)}`);
  return { seen, traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

/** How many times a header (by its lower-case "-" form) appears in the raw list. */
const count = (seen: SeenRequest, name: string) => seen.rawHeaders.filter((n, i) => i % 2 === 0 && n.toLowerCase().replaceAll('_', '-') === name).length;

test('a well-formed traceparent is continued: same trace id, a new span id of the broker, the sampled flag kept; tracestate passed on', async (t) => {
  const s = await setup(t);
  for (const flags of ['01', '00']) {
    const sent = `00-${TRACE}-${SPAN}-${flags}`;
    const res = await s.get('/api/continued', { traceparent: sent, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' });
    assert.equal(res.status, 200, res.text);
    const { seen, traceId, spanId, flags: got } = lastSeen(s.up);
    assert.equal(traceId, TRACE, 'the partner\'s trace continues');
    assert.notEqual(spanId, SPAN, 'the upstream\'s parent is the broker\'s span, not the partner\'s');
    assert.notEqual(spanId, '0'.repeat(16));
    assert.equal(got, flags, 'the sampled flag is kept');
    assert.equal(seen.headers.tracestate, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    assert.equal(res.headers['x-request-id'], `${traceId}-${spanId}`);
    assert.equal(seen.headers['x-request-id'], `${traceId}-${spanId}`);
  }
  // one partner traceparent for two requests: each request gets its own span, hence its own id
  const a = await s.get('/api/a', { traceparent: `00-${TRACE}-${SPAN}-01` });
  const b = await s.get('/api/b', { traceparent: `00-${TRACE}-${SPAN}-01` });
  assert.notEqual(a.headers['x-request-id'], b.headers['x-request-id']);
  // a future version with a further field is continued too
  await s.get('/api/future', { traceparent: `01-${TRACE}-${SPAN}-01-more` });
  assert.equal(lastSeen(s.up).traceId, TRACE);
});

test('a malformed traceparent is replaced by a fresh trace (flags 00), and its tracestate is dropped', async (t) => {
  const s = await setup(t);
  const malformed: Array<[string, string | string[]]> = [
    ['upper case', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['version 00 with a further field', `00-${TRACE}-${SPAN}-01-x`],
    ['too short', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['not hex', `00-${TRACE.slice(0, 31)}z-${SPAN}-01`],
    ['two traceparent headers', [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-01`]],
    ['garbage', 'hello'],
  ];
  for (const [what, v] of malformed) {
    const res = await s.get('/api/malformed', { traceparent: v, tracestate: 'congo=t61rcWkgMzE' });
    assert.equal(res.status, 200, `${what}: ${res.text}`);
    const { seen, traceId, spanId, flags } = lastSeen(s.up);
    assert.notEqual(traceId, TRACE, what);
    assert.equal(flags, '00', what);
    assert.equal(seen.headers.tracestate, undefined, `${what}: tracestate goes with a replaced traceparent`);
    assert.equal(count(seen, 'traceparent'), 1, what);
    assert.equal(res.headers['x-request-id'], `${traceId}-${spanId}`, what);
  }
  // no traceparent at all: a fresh trace too, and two requests get two traces
  await s.get('/api/none');
  const first = lastSeen(s.up).traceId;
  await s.get('/api/none');
  assert.notEqual(lastSeen(s.up).traceId, first);
});

test('x-request-id is on every answer (200, 403, 404, 413, 502) and, when the request went upstream, is `<trace-id>-<span-id>` of the upstream\'s traceparent, sent upstream once; the partner\'s copies are stripped', async (t) => {
  const s = await setup(t);
  const spoofed = {
    'X-Request-Id': 'partner-chosen-id',
    'x_request_id': 'underscore-id',
    traceparent: `00-${TRACE}-${SPAN}-01`,
    Tracestate: 'a=1',
  };
  const ok = await s.get('/api/items', spoofed);
  assert.equal(ok.status, 200, ok.text);
  const { seen, traceId, spanId } = lastSeen(s.up);
  const id = `${traceId}-${spanId}`;
  assert.equal(ok.headers['x-request-id'], id);
  assert.equal(seen.headers['x-request-id'], id, 'the upstream gets the broker\'s id, not the partner\'s');
  for (const h of ['x-request-id', 'traceparent', 'tracestate']) assert.equal(count(seen, h), 1, `${h} once`);
  assert.equal(seen.headers.tracestate, 'a=1');

  const refusals: Array<[string, number, () => Promise<Response>]> = [
    ['403 acl', 403, () => s.get('/admin/x', spoofed)],
    ['404 no route', 404, () => s.get('/nowhere', spoofed)],
    ['413 body', 413, () => s.get('/api/upload', spoofed, { method: 'POST', body: Buffer.alloc(2048, 1) })],
    ['502 upstream down', 502, () => s.get('/dead/x', spoofed)],
  ];
  const before = s.up.seen.length;
  for (const [what, status, send] of refusals) {
    const res = await send();
    assert.equal(res.status, status, `${what}: ${res.text}`);
    const rid = res.headers['x-request-id'];
    assert.match(String(rid), REQ_ID, what);
    assert.ok(String(rid).startsWith(`${TRACE}-`), `${what}: the partner's trace continues in the id`);
    assert.notEqual(rid, 'partner-chosen-id', what);
    assert.equal(res.json().reqId, rid, `${what}: the error body names the same id`);
    const line = await s.b.logs.waitFor((l) => l.log === 'access' && l.reqId === rid);
    assert.equal(line.status, status, what);
  }
  assert.equal(s.up.seen.length, before, 'none of the refusals reached the upstream');
});

test('the same request id is on the access line, the error line of an upstream failure and the auth line of a refused credential', async (t) => {
  const s = await setup(t);
  const ok = await s.get('/api/x');
  const okId = ok.headers['x-request-id'];
  const okLine = await s.b.logs.waitFor((l) => l.log === 'access' && l.path === '/api/x');
  assert.equal(okLine.reqId, okId);

  const failed = await s.get('/dead/x');
  assert.equal(failed.status, 502);
  const failedId = failed.headers['x-request-id'];
  const errLine = await s.b.logs.waitFor((l) => l.log === 'error' && l.event === 'upstream');
  assert.equal(errLine.reqId, failedId);
  assert.equal((await s.b.logs.waitFor((l) => l.log === 'access' && l.path === '/dead/x')).reqId, failedId);

  const key = await createKey(s.pki.store, { name: 'acme', roles: ['billing'], kind: 'apiKey' });
  await s.b.broker.reload();
  const wrong = key.secret.slice(0, -1) + (key.secret.at(-1) === 'A' ? 'B' : 'A');
  const refused = await request(s.opt, { ca: s.pki.ca, path: '/k/x', headers: { 'x-api-key': wrong } });
  assert.equal(refused.status, 401, refused.text);
  const refusedId = refused.headers['x-request-id'];
  assert.match(String(refusedId), REQ_ID);
  const authLine = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'credential' && l.outcome === 'refused');
  assert.equal(authLine.reqId, refusedId);
  const refusedAccess = await s.b.logs.waitFor((l) => l.log === 'access' && l.path === '/k/x');
  assert.equal(refusedAccess.reqId, refusedId);
  // the one connection without a certificate: its handshake line and its request's access line share the connection id
  const anonymous = s.b.logs.of('auth').filter((l) => l.event === 'handshake' && l.certificate === false);
  assert.equal(anonymous.length, 1);
  assert.match(String(anonymous[0]!.connId), /^[0-9a-f]{8}-[0-9a-z]+$/);
  assert.equal(refusedAccess.connId, anonymous[0]!.connId);
  assert.deepEqual({ serial: refusedAccess.serial, fingerprint: refusedAccess.fingerprint, clientPort: refusedAccess.clientPort }, { serial: null, fingerprint: null, clientPort: anonymous[0]!.remotePort });
  // and the three ids are three
  assert.equal(new Set([okId, failedId, refusedId]).size, 3);
});

/** A keep-alive agent with one connection; each GET resolves with its response and the client socket. */
function keepAlive(t: TestContext, port: number, ca: string, id: Identity) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca, cert: id.cert, key: id.key });
  t.after(() => agent.destroy());
  return (path: string) =>
    within(
      new Promise<{ status: number; headers: Record<string, unknown>; socket: Socket }>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, path, agent, headers: { 'user-agent': 'partner-client/2.1 (test)' } }, (res) => {
          const socket = res.socket;
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }),
      15_000,
      `GET ${path}`,
    );
}

test('connection id: the handshake\'s auth line and the access lines of the requests it carried share it; access lines carry the connection\'s facts', async (t) => {
  const s = await setup(t);
  const fingerprint = new X509Certificate(s.alice.cert).fingerprint256.replaceAll(':', '').toLowerCase();

  const one = keepAlive(t, s.b.port, s.pki.ca, s.alice);
  const r1 = await one('/api/one/1');
  const r2 = await one('/api/one/2');
  assert.equal(r1.socket, r2.socket, 'both requests went over one connection');
  const two = keepAlive(t, s.b.port, s.pki.ca, s.alice);
  const r3 = await two('/api/two/1');
  assert.notEqual(r3.socket.localPort, r1.socket.localPort);

  const authOf = (port: number | undefined) => s.b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'ok' && l.remotePort === port);
  const auth1 = await authOf(r1.socket.localPort);
  const auth2 = await authOf(r3.socket.localPort);
  assert.match(String(auth1.connId), /^[0-9a-f]{8}-[0-9a-z]+$/);
  assert.notEqual(auth1.connId, auth2.connId, 'two connections, two ids');
  assert.equal(String(auth1.connId).split('-')[0], String(auth2.connId).split('-')[0], 'one process part');

  const accessOf = (res: { headers: Record<string, unknown> }) => s.b.logs.waitFor((l) => l.log === 'access' && l.reqId === res.headers['x-request-id']);
  const a1 = await accessOf(r1);
  const a2 = await accessOf(r2);
  const a3 = await accessOf(r3);
  assert.equal(a1.connId, auth1.connId);
  assert.equal(a2.connId, auth1.connId);
  assert.equal(a3.connId, auth2.connId);

  for (const [a, socket, auth] of [[a1, r1.socket, auth1], [a2, r2.socket, auth1], [a3, r3.socket, auth2]] as const) {
    assert.deepEqual(
      { clientIp: a.clientIp, clientPort: a.clientPort, tlsVersion: a.tlsVersion, resumed: a.resumed, serial: a.serial, fingerprint: a.fingerprint, userAgent: a.userAgent, upstreamAddr: a.upstreamAddr },
      { clientIp: '127.0.0.1', clientPort: socket.localPort, tlsVersion: 'TLSv1.3', resumed: false, serial: auth.serial, fingerprint, userAgent: 'partner-client/2.1 (test)', upstreamAddr: `127.0.0.1:${s.up.port}` },
    );
    assert.equal(typeof a.upstreamMs, 'number');
    assert.ok((a.upstreamMs as number) >= 0);
  }
  assert.equal(auth1.fingerprint, fingerprint);

  // a refusal that never went upstream has no upstream address; no user agent sent: null
  const denied = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/admin/x' });
  const d = await s.b.logs.waitFor((l) => l.log === 'access' && l.reqId === denied.headers['x-request-id']);
  assert.deepEqual({ upstreamAddr: d.upstreamAddr, userAgent: d.userAgent, status: d.status }, { upstreamAddr: null, userAgent: null, status: 403 });
  // an upstream that refused the connection: no exchange went out
  const down = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/dead/x' });
  const dl = await s.b.logs.waitFor((l) => l.log === 'access' && l.reqId === down.headers['x-request-id']);
  assert.equal(dl.upstreamAddr, null);
});
