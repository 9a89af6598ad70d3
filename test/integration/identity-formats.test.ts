/**
 * routes[].identity through real TLS: which identity fields each route's upstream receives
 * (headers, xfcc, rfc9440), RFC 9440's Client-Cert decoding to the exact DER the client
 * presented, Client-Cert-Chain holding the intermediate, spoofed copies stripped on every route,
 * and the upstream's Server header dropped unless the route keeps it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type SeenRequest, type TestPki, type Upstream } from '../helpers/broker.ts';
import { createKey } from '../../src/pki/credentials.ts';

const OPTIONAL = { listenCertOptional: { host: '127.0.0.1', port: 0 } };

/** The DER of each certificate in a PEM bundle, in order. */
function ders(pem: string): Buffer[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b).raw);
}

/** An RFC 8941 byte sequence `:base64:` decoded; fails the test on anything else. */
function sfBinary(v: string): Buffer {
  const m = /^:([A-Za-z0-9+/]*={0,2}):$/.exec(v);
  assert.ok(m, `an RFC 8941 byte sequence: ${v.slice(0, 40)}…`);
  return Buffer.from(m[1]!, 'base64');
}

const count = (seen: SeenRequest, name: string) => seen.rawHeaders.filter((n, i) => i % 2 === 0 && n.toLowerCase().replaceAll('_', '-') === name).length;

const SPOOFED: Record<string, string> = {
  'Client-Cert': ':Zm9vYmFy:',
  'Client-Cert-Chain': ':Zm9v:, :YmFy:',
  'client_cert': ':c3Bvb2Y=:',
  'client_cert_chain': ':c3Bvb2Y=:',
  'X-Forwarded-Client-Cert': 'Hash=00;Subject="CN=root"',
  'x-client-jwt': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.',
  'X-Client-Name': 'root',
};

interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  alice: Identity;
  opt: number;
}

async function setup(t: TestContext): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t, (s, res) => {
    res.setHeader('server', 'secret-upstream/1.2.3 (Debian)');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: s.url }));
  });
  const b = await startBroker(t, pki, {
    ...OPTIONAL,
    routes: [
      { name: 'rfc', path: '/rfc', upstream: up.url, roles: ['user'], identity: ['rfc9440'] },
      { name: 'all', path: '/all', upstream: up.url, roles: ['user'], identity: ['headers', 'xfcc', 'rfc9440'] },
      { name: 'def', path: '/def', upstream: up.url, roles: ['user'] },
      { name: 'headers', path: '/headers', upstream: up.url, roles: ['user'], identity: ['headers'] },
      { name: 'xfcc', path: '/xfcc', upstream: up.url, roles: ['user'], identity: ['xfcc'] },
      { name: 'none', path: '/none', upstream: up.url, roles: ['user'], identity: [] },
      { name: 'pass', path: '/pass', upstream: up.url, roles: ['user'], passCredentials: true },
      { name: 'keyrfc', path: '/keyrfc', upstream: up.url, roles: ['user'], auth: ['apiKey'], identity: ['rfc9440', 'headers'] },
      { name: 'bothrfc', path: '/bothrfc', upstream: up.url, roles: ['user'], auth: ['mtls', 'apiKey'], identity: ['rfc9440'] },
      { name: 'keep', path: '/keep', upstream: up.url, roles: ['user'], keepServerHeader: true },
    ],
  });
  const alice = await pki.issue('alice', ['user']);
  return { pki, up, b, alice, opt: (b.broker.optionalServer?.address() as AddressInfo).port };
}

async function via(s: Setup, path: string, headers: Record<string, string> = {}): Promise<SeenRequest> {
  const res = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path, headers });
  assert.equal(res.status, 200, `${path}: ${res.text}`);
  const seen = s.up.seen.at(-1);
  assert.ok(seen);
  assert.equal(seen.url, path);
  return seen;
}

test('rfc9440: Client-Cert is the exact DER the client presented, Client-Cert-Chain the intermediate (root left out); the other formats only when listed', async (t) => {
  const s = await setup(t);
  const [leaf, intermediate, ...more] = ders(s.alice.cert);
  assert.ok(leaf && intermediate, 'the client presents its certificate and the intermediate');
  assert.equal(more.length, 0);
  const root = ders(s.pki.ca)[0]!;
  assert.notDeepEqual(intermediate, root);

  for (const path of ['/rfc/x', '/all/x']) {
    const seen = await via(s, path);
    assert.equal(count(seen, 'client-cert'), 1, path);
    assert.deepEqual(sfBinary(String(seen.headers['client-cert'])), leaf, `${path}: Client-Cert decodes to the leaf's DER`);
    const chain = String(seen.headers['client-cert-chain']).split(', ').map(sfBinary);
    assert.deepEqual(chain, [intermediate], `${path}: Client-Cert-Chain holds the intermediate only`);
    // the chain member verifies the leaf: it is what certifies it, not some other certificate
    assert.ok(new X509Certificate(leaf).verify(new X509Certificate(intermediate).publicKey), path);
  }

  const rfcOnly = await via(s, '/rfc/y');
  for (const h of ['x-client-name', 'x-client-roles', 'x-client-auth', 'x-client-serial', 'x-client-fingerprint', 'x-forwarded-client-cert']) assert.equal(rfcOnly.headers[h], undefined, `identity [rfc9440] sends no ${h}`);
  // forwarding facts are not identity formats: they travel on every route
  assert.equal(rfcOnly.headers['x-forwarded-for'], '127.0.0.1');

  const all = await via(s, '/all/y');
  assert.equal(all.headers['x-client-name'], 'alice');
  assert.match(String(all.headers['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};Subject="CN=alice/);
  assert.equal(all.headers['x-client-fingerprint'], new X509Certificate(leaf).fingerprint256.replaceAll(':', '').toLowerCase());

  const def = await via(s, '/def/y');
  assert.equal(def.headers['x-client-name'], 'alice');
  assert.match(String(def.headers['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};/);
  assert.equal(def.headers['client-cert'], undefined, 'the default formats are headers and xfcc');
  assert.equal(def.headers['client-cert-chain'], undefined);

  const headersOnly = await via(s, '/headers/y');
  assert.equal(headersOnly.headers['x-client-name'], 'alice');
  assert.equal(headersOnly.headers['x-forwarded-client-cert'], undefined);
  assert.equal(headersOnly.headers['client-cert'], undefined);

  const xfccOnly = await via(s, '/xfcc/y');
  assert.equal(xfccOnly.headers['x-client-name'], undefined);
  assert.match(String(xfccOnly.headers['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};/);

  const none = await via(s, '/none/y');
  for (const h of ['x-client-name', 'x-forwarded-client-cert', 'client-cert', 'client-cert-chain']) assert.equal(none.headers[h], undefined, `identity [] sends no ${h}`);
});

test('rfc9440: a client that sends its certificate alone still gets the intermediate in Client-Cert-Chain (the verified chain, not the sent one)', async (t) => {
  const s = await setup(t);
  const [leaf, intermediate] = ders(s.alice.cert);
  const leafOnly = s.alice.cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0] + '\n';
  const res = await request(s.b.port, { id: { ...s.alice, cert: leafOnly }, ca: s.pki.ca, path: '/rfc/leaf-only' });
  assert.equal(res.status, 200, res.text);
  const seen = s.up.seen.at(-1)!;
  assert.deepEqual(sfBinary(String(seen.headers['client-cert'])), leaf);
  assert.deepEqual(String(seen.headers['client-cert-chain']).split(', ').map(sfBinary), [intermediate]);
});

test('spoofed Client-Cert, Client-Cert-Chain, client_cert, X-Forwarded-Client-Cert and x-client-jwt are stripped on every route', async (t) => {
  const s = await setup(t);
  const [leaf] = ders(s.alice.cert);
  for (const path of ['/rfc/s', '/all/s', '/def/s', '/headers/s', '/xfcc/s', '/none/s', '/pass/s', '/keep/s']) {
    const seen = await via(s, path, SPOOFED);
    for (const v of Object.values(SPOOFED)) {
      for (let i = 1; i < seen.rawHeaders.length; i += 2) assert.ok(!seen.rawHeaders[i]!.includes(v), `${path}: a spoofed value arrived as ${seen.rawHeaders[i - 1]}`);
    }
    assert.equal(count(seen, 'x-client-jwt'), 0, path);
    for (const h of ['client-cert', 'client-cert-chain', 'x-forwarded-client-cert', 'x-client-name']) assert.ok(count(seen, h) <= 1, `${path}: ${h} at most once`);
    if (seen.headers['client-cert'] !== undefined) assert.deepEqual(sfBinary(String(seen.headers['client-cert'])), leaf, path);
    if (seen.headers['x-client-name'] !== undefined) assert.equal(seen.headers['x-client-name'], 'alice', path);
  }
});

test('an API-key caller (no certificate) on an rfc9440 route: no Client-Cert; a caller with certificate and key: the certificate\'s', async (t) => {
  const s = await setup(t);
  const key = await createKey(s.pki.store, { name: 'acme', roles: ['user'], kind: 'apiKey' });
  const aliceKey = await createKey(s.pki.store, { name: 'alice', roles: ['user'], kind: 'apiKey' });
  await s.b.broker.reload();

  const res = await request(s.opt, { ca: s.pki.ca, path: '/keyrfc/x', headers: { 'x-api-key': key.secret, ...SPOOFED } });
  assert.equal(res.status, 200, res.text);
  const seen = s.up.seen.at(-1)!;
  assert.equal(seen.headers['x-client-name'], 'acme');
  assert.equal(seen.headers['x-client-auth'], 'apiKey');
  for (const h of ['client-cert', 'client-cert-chain', 'x-forwarded-client-cert', 'x-client-jwt']) assert.equal(count(seen, h), 0, `an API-key caller has no certificate: no ${h}`);

  const both = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/bothrfc/x', headers: { 'x-api-key': aliceKey.secret, ...SPOOFED } });
  assert.equal(both.status, 200, both.text);
  const seenBoth = s.up.seen.at(-1)!;
  assert.deepEqual(sfBinary(String(seenBoth.headers['client-cert'])), ders(s.alice.cert)[0]);
});

test('the upstream\'s Server header is dropped by default and passed on with keepServerHeader', async (t) => {
  const s = await setup(t);
  const dropped = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/def/x' });
  assert.equal(dropped.status, 200);
  assert.equal(dropped.headers.server, undefined);
  const rfc = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/rfc/x' });
  assert.equal(rfc.headers.server, undefined);
  const kept = await request(s.b.port, { id: s.alice, ca: s.pki.ca, path: '/keep/x' });
  assert.equal(kept.status, 200);
  assert.equal(kept.headers.server, 'secret-upstream/1.2.3 (Debian)');
});
