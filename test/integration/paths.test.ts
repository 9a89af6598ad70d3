/**
 * Request paths, sent as raw bytes (Node's and undici's clients normalise paths before sending).
 * The ACL judges one canonical path and the upstream receives exactly that path: no spelling of
 * "/admin" reached through "/public" gets to the upstream, and the ambiguous spellings are refused
 * with 400 instead of being guessed at.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { makePki, rawExchange, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki, type Upstream } from '../helpers/broker.ts';

interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/** One request with the exact request-target given, on its own connection. */
async function rawRequest(b: RunningBroker, pki: TestPki, id: Identity, target: string, method = 'GET'): Promise<RawResponse> {
  const text = await rawExchange(b.port, { id, ca: pki.ca, data: `${method} ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n` });
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  assert.ok(m, `no HTTP response for ${JSON.stringify(target)}: ${JSON.stringify(text)}`);
  const split = text.indexOf('\r\n\r\n');
  return { status: Number(m[1]), head: text.slice(0, split), body: text.slice(split + 4) };
}

interface Setup {
  pki: TestPki;
  up: Upstream;
  b: RunningBroker;
  client: Identity;
}

/** Routes /public (role p, which the client has) and /admin (role admin, which it lacks), one upstream, no catch-all. */
async function setup(t: TestContext): Promise<Setup> {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'public', path: '/public', upstream: up.url, roles: ['p'] },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
    ],
  });
  return { pki, up, b, client: await pki.issue('client', ['p']) };
}

// Each spelling of "reach /admin through /public" and what the broker answers: 403 where the
// canonical path is /admin (judged as /admin, and refused), 404 where it is no route (case), and 400
// where the spelling is ambiguous (some server would decode it into structure).
const ATTACKS: Array<[target: string, status: number]> = [
  ['/public/../admin', 403],
  ['/public/./../admin', 403],
  ['/public/../admin/x', 403],
  ['/public/a/../../admin', 403],
  ['/public/../admin?x=/public', 403],
  ['//admin', 403],
  ['/%61dmin', 403],
  ['/%61%64%6D%69%6E/x', 403],
  ['/ADMIN', 404],
  ['/Admin/x', 404],
  ['/public/%2e%2e/admin', 400],
  ['/public/%2E%2E/admin', 400],
  ['/public/.%2e/admin', 400],
  ['/public/%2e./admin', 400],
  ['/public%2f..%2fadmin', 400],
  ['/public%2F..%2Fadmin', 400],
  ['/public/..%2fadmin', 400],
  ['/public/%5c../admin', 400],
  ['/public/..%5cadmin', 400],
  ['/public\\..\\admin', 400],
  ['/public/..\\admin', 400],
  ['/public/..;/admin', 400],
  ['/public;/../admin', 400],
  ['/public/%3b/../admin', 400],
  ['/public/%252e%252e/admin', 400],
  ['/public/%25%32%65%25%32%65/admin', 400],
  ['/public/%c0%ae%c0%ae/admin', 400],
  ['/public/%e0%80%ae%e0%80%ae/admin', 400],
  ['/public/%ef%bc%8e%ef%bc%8e/admin', 400], // fullwidth full stops: NFKC "."
  ['/public/..%ef%bc%8fadmin', 400], // fullwidth solidus: NFKC "/"
  ['/public/%00/../admin', 400],
  ['/public/..%00/admin', 400],
  ['/public/..%0a/admin', 400],
  ['/public/../../admin', 400], // above the root
  ['http://localhost/admin', 400],
  ['http://localhost/public/../admin', 400],
  ['*', 400],
];

test('no spelling of /admin through /public reaches the upstream', async (t) => {
  const { pki, up, b, client } = await setup(t);
  const got: string[] = [];
  const CODES: Record<number, string> = { 400: 'BRK_ERR_HTTP_BAD_PATH', 403: 'BRK_ERR_ACL_DENIED', 404: 'BRK_ERR_HTTP_NOT_FOUND' };
  for (const [target] of ATTACKS) {
    const res = await rawRequest(b, pki, client, target);
    got.push(`${target} ${res.status}`);
    assert.ok(res.status in CODES, `${target}: ${res.status}`);
    assert.equal((JSON.parse(res.body) as Record<string, unknown>).code, CODES[res.status], target);
  }
  assert.deepEqual(got, ATTACKS.map(([target, status]) => `${target} ${status}`));
  for (const s of up.seen) assert.match(s.url, /^\/public(\/|\?|$)/);
  assert.equal(up.seen.length, 0);
  // the same client does reach /public, so the refusals above are about the paths
  assert.equal((await rawRequest(b, pki, client, '/public/ok')).status, 200);
  assert.deepEqual(up.seen.map((s) => s.url), ['/public/ok']);
});

test('a refused path is logged as BRK_ERR_HTTP_BAD_PATH with the reason', async (t) => {
  const { pki, b, client } = await setup(t);
  const res = await rawRequest(b, pki, client, '/public/%2e%2e/admin');
  assert.equal(res.status, 400);
  assert.equal((JSON.parse(res.body) as Record<string, unknown>).code, 'BRK_ERR_HTTP_BAD_PATH');
  const access = await b.logs.waitFor((l) => l.log === 'access');
  assert.equal(access.status, 400);
  assert.equal(access.decision, 'deny');
  assert.equal(access.code, 'BRK_ERR_HTTP_BAD_PATH');
  assert.equal(access.detail, 'encoded "."');
  assert.equal(access.route, null);
  assert.equal(access.principal, 'client');
});

// What the upstream receives for a path the broker accepts: the canonical path, byte for byte.
const FORWARDED: Array<[target: string, upstreamUrl: string]> = [
  ['/public', '/public'],
  ['/public/', '/public/'],
  ['/public/./a//b/../c', '/public/a/c'],
  ['/public/a/b/..', '/public/a/'],
  ['/%70ublic/x', '/public/x'],
  ['/public/%7euser/a%2Db', '/public/~user/a-b'],
  ['/public/a%20b', '/public/a%20b'],
  ['/public/%e2%82%ac', '/public/%E2%82%AC'],
  ['/public/q?a=%2F..%2F&b=%252e&c=1+2&d&e=/../admin', '/public/q?a=%2F..%2F&b=%252e&c=1+2&d&e=/../admin'],
  ['/public/x?', '/public/x?'],
  ['/stripped/x', '/x'],
  ['/stripped/x/y?z=1', '/x/y?z=1'],
  ['/based/x', '/v2/based/x'],
  ['/based-stripped/x?q=1', '/v2/x?q=1'],
];

test('an accepted path reaches the upstream as exactly the canonical path; stripPath and base paths apply to it', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'public', path: '/public', upstream: up.url, roles: ['p'] },
      { name: 'stripped', path: '/stripped', upstream: up.url, roles: ['p'], stripPath: true },
      { name: 'based', path: '/based', upstream: `${up.url}/v2`, roles: ['p'] },
      { name: 'based-stripped', path: '/based-stripped', upstream: `${up.url}/v2`, roles: ['p'], stripPath: true },
    ],
  });
  const client = await pki.issue('client', ['p']);
  for (const [target, upstreamUrl] of FORWARDED) {
    const before = up.seen.length;
    const res = await rawRequest(b, pki, client, target);
    assert.equal(res.status, 200, `${target}: ${res.body}`);
    assert.equal(up.seen.length, before + 1, target);
    assert.equal(up.seen.at(-1)!.url, upstreamUrl, target);
  }
  // The access log records the canonical path, not the spelling that was sent.
  const paths = b.logs.of('access').map((l) => l.path);
  assert.equal(paths[2], '/public/a/c');
  assert.equal(paths[4], '/public/x');
});
