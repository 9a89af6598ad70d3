/**
 * Request smuggling and header floods, as raw bytes over a valid mTLS connection. Whatever the
 * client sends, the upstream sees only what a correct parse gives (usually nothing), a hidden
 * second request is never forwarded without being judged, and every refusal is a 400 (or 431).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { makePki, rawExchange, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, type Upstream } from '../helpers/broker.ts';

interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  alice: Identity;
  /** Every request the upstream started to receive, finished or not (`up.seen` has the finished ones). */
  arrived: string[];
}

async function setup(t: TestContext, raw: Record<string, unknown> = {}): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: up.url, roles: ['user'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
    ],
    ...raw,
  });
  const alice = await pki.issue('alice', ['user']);
  const arrived: string[] = [];
  up.server.on('request', (req: IncomingMessage) => {
    arrived.push(`${req.method} ${req.url}`);
    req.on('error', () => {}); // a request the broker aborts mid-body ("aborted") must not crash the test
  });
  return { pki, up, b, alice, arrived };
}

/** Status codes of every response in a raw reply, in order. */
const statuses = (reply: string) => [...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

const H = 'Host: localhost\r\n';
const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n';

/** Refused outright: a 400 (and nothing but 400s) and nothing forwarded. */
const REFUSED: Array<[string, string]> = [
  ['Content-Length with Transfer-Encoding: chunked', `POST /api/a HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['two equal Content-Length headers', `POST /api/a HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd`],
  ['two different Content-Length headers', `POST /api/a HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 41\r\n\r\nabcd${SMUGGLED}`],
  ['Transfer-Encoding: xchunked', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['Transfer-Encoding: chunked, identity', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['Transfer-Encoding: identity', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\n${SMUGGLED}`],
  ['Transfer-Encoding: gzip, chunked', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding folded onto a continuation line (obs-fold)', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding twice', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['a space before the colon', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['duplicate Host', `GET /api/a HTTP/1.1\r\n${H}Host: evil.example\r\n\r\n`],
  ['missing Host', `GET /api/a HTTP/1.1\r\nX-A: b\r\n\r\n`],
  ['bare LF line endings', `GET /api/a HTTP/1.1\nHost: localhost\n\n`],
  ['a bare LF inside the head', `GET /api/a HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n`],
  ['an invalid chunk size', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
  ['a chunk size with a sign', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n`],
  ['a NUL in a header value', `GET /api/a HTTP/1.1\r\n${H}X-A: b\0c\r\n\r\n`],
  ['a request line with three parts before the version', `GET /api/a /admin/secret HTTP/1.1\r\n${H}\r\n`],
  ['a tab as the request-line separator', `GET\t/api/a HTTP/1.1\r\n${H}\r\n`],
  // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing (a 1.0 peer cannot have meant it).
  ['HTTP/1.0 with Transfer-Encoding: chunked', `POST /api/a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['HTTP/1.0 with Transfer-Encoding: chunked and Content-Length', `POST /api/a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
  ['HTTP/1.0 GET with Transfer-Encoding: chunked', `GET /api/a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  // The classic desync payloads, each hiding a request for a route this client may not use.
  ['CL.TE desync (front end reads Content-Length, back end chunked)', `POST /api/a HTTP/1.1\r\n${H}Content-Length: ${5 + SMUGGLED.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['TE.CL desync (front end reads chunked, back end Content-Length)', `POST /api/a HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`],
];

test('malformed framing and heads get 400 and nothing reaches the upstream', async (t) => {
  const s = await setup(t);
  for (const [name, data] of REFUSED) {
    const from = s.b.logs.lines.length;
    const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data });
    const codes = statuses(reply);
    // Node's parser may answer the head (400 from the broker's checks) and then fail on the body
    // (a second 400 on the same, closing, connection): every answer must be a 400.
    assert.ok(codes.length > 0 && codes.every((c) => c === 400), `${name}: ${JSON.stringify(reply)}`);
    assert.deepEqual(s.arrived, [], `${name}: forwarded`);
    const forwarded = s.b.logs.lines.slice(from).filter((l) => l.log === 'access' && l.decision === 'allow');
    assert.deepEqual(forwarded, [], `${name}: an access line says a request was allowed`);
  }
});

test('legal spellings of chunked are parsed as chunked, and a hidden request is judged on its own', async (t) => {
  const s = await setup(t);
  const cases: Array<[string, string, number[], string]> = [
    // Transfer codings are case-insensitive (RFC 9112 §7): this is chunked.
    ['Transfer-Encoding: CHUNKED', `POST /api/a HTTP/1.1\r\n${H}Connection: close\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, [200], 'abc'],
    // OWS after the colon may be a tab (RFC 9110 §5.6.3): this is chunked too.
    ['Transfer-Encoding:<TAB>chunked', `POST /api/a HTTP/1.1\r\n${H}Connection: close\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, [200], 'abc'],
    // After a complete chunked body, what follows is the next request on the connection: the broker
    // parses it itself and refuses it (403), so the upstream only ever sees the first one.
    ['a request after the chunked body', `POST /api/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, [200, 403], 'abc'],
  ];
  for (const [name, data, codes, body] of cases) {
    s.up.seen.length = 0;
    s.arrived.length = 0;
    const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data });
    assert.deepEqual(statuses(reply), codes, `${name}: ${JSON.stringify(reply)}`);
    assert.deepEqual(s.up.seen.map((r) => [r.method, r.url, r.body.toString()]), [['POST', '/api/a', body]], name);
    assert.deepEqual(s.arrived, ['POST /api/a'], name);
  }
  const admin = s.b.logs.lines.filter((l) => l.log === 'access' && l.path === '/admin/secret');
  assert.ok(admin.length > 0 && admin.every((l) => l.decision === 'deny' && l.status === 403));
});

test('extra spaces in the request line never make the upstream see another request', async (t) => {
  const s = await setup(t);
  // Node's parser (llhttp) reads runs of spaces as one separator, which RFC 9112 §3 allows a
  // recipient to do. Harmless here: the broker builds a fresh request line for the upstream.
  for (const data of [`GET  /api/a HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, `GET /api/a  HTTP/1.1\r\n${H}Connection: close\r\n\r\n`]) {
    s.up.seen.length = 0;
    s.arrived.length = 0;
    const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data });
    const codes = statuses(reply);
    assert.equal(codes.length, 1, JSON.stringify(reply));
    if (codes[0] === 400) assert.deepEqual(s.arrived, []);
    else assert.deepEqual(s.arrived, ['GET /api/a'], JSON.stringify(data));
  }
});

const junk = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-junk-${i}`, 'v']));

test('more headers than limits.headerCount get 431 and nothing is forwarded', async (t) => {
  const s = await setup(t);
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/a', headers: junk(150) });
  assert.equal(res.status, 431);
  assert.equal(res.json().code, 'BRK_ERR_HTTP_HEADERS_TOO_LARGE');
  assert.deepEqual(s.arrived, []);

  // Far more than Node's own maxHeadersCount (2000): refused (by count or by head size), never truncated.
  const many = `GET /api/a HTTP/1.1\r\n${H}${Array.from({ length: 3000 }, (_, i) => `X-J${i}: v\r\n`).join('')}\r\n`;
  const reply = await rawExchange(s.b.port, { id: s.alice, ca: s.pki.ca, data: many });
  const codes = statuses(reply);
  assert.deepEqual(codes, [431], JSON.stringify(reply.slice(0, 300)));
  assert.match(reply, /"code":"BRK_ERR_HTTP_HEADERS_TOO_LARGE"/);
  assert.deepEqual(s.arrived, []);
});

test('90 junk headers still pass, and the upstream gets every identity header', async (t) => {
  const s = await setup(t);
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/a', headers: { ...junk(90), 'X-Client-Name': 'root' } });
  assert.equal(res.status, 200);
  assert.equal(s.up.seen.length, 1);
  const h = s.up.seen[0]!.headers;
  assert.equal(h['x-junk-89'], 'v');
  assert.equal(h['x-client-name'], 'alice');
  assert.equal(h['x-client-roles'], 'user');
  assert.equal(h['x-client-serial'], s.alice.serial);
  assert.match(String(h['x-client-fingerprint']), /^[0-9a-f]{64}$/);
  assert.match(String(h['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};Subject="CN=alice,OU=user"/);
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
});

test('a request head over limits.headerSize gets 431', async (t) => {
  const s = await setup(t, { limits: { headerSize: '4kb' } });
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/a', headers: { 'x-big': 'a'.repeat(5000) } });
  assert.equal(res.status, 431);
  assert.equal(res.json().code, 'BRK_ERR_HTTP_HEADERS_TOO_LARGE');
  assert.deepEqual(s.arrived, []);
  // Just under the limit passes.
  const ok = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/api/a', headers: { 'x-big': 'a'.repeat(3000) } });
  assert.equal(ok.status, 200);
  assert.equal(s.up.seen[0]?.headers['x-big'], 'a'.repeat(3000));
});
