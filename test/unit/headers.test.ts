import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upstreamHeaders, downstreamHeaders, xfccValue, isDroppedHeader, BROKER_HEADERS } from '../../src/proxy/index.ts';
import type { IdentityHeaders, ForwardInfo } from '../../src/proxy/index.ts';
import { isBrokerError } from '../../src/errors.ts';

const FP = 'a'.repeat(64);
const ID: IdentityHeaders = {
  name: 'alice',
  roles: ['orders:read', 'admin'],
  serial: '01ab',
  fingerprint: FP,
  subject: 'CN=alice,OU=ops,O=Example',
};
const FWD: ForwardInfo = { clientIp: '192.0.2.7', proto: 'https', host: 'broker.example:8443' };

const OURS = {
  'x-client-name': 'alice',
  'x-client-roles': 'orders:read,admin',
  'x-client-auth': 'mtls',
  'x-client-serial': '01ab',
  'x-client-fingerprint': FP,
  'x-forwarded-client-cert': `Hash=${FP};Subject="CN=alice,OU=ops,O=Example"`,
  'x-forwarded-for': '192.0.2.7',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'broker.example:8443',
  'forwarded': 'for=192.0.2.7;proto=https;host="broker.example:8443"',
  'x-real-ip': '192.0.2.7',
};

/** upstreamHeaders returns a null-prototype object; copy it into a plain one for deepEqual. */
function build(raw: string[], id: IdentityHeaders = ID, fwd: ForwardInfo = FWD): Record<string, string> {
  return { ...upstreamHeaders(raw, id, fwd) };
}

// Every spoofed header, in the spellings an attacker would try. None may reach the upstream.
const SPOOFED = [
  'X-Forwarded-Client-Cert', 'x-forwarded-client-cert', 'X_Forwarded_Client_Cert', 'x-forwarded_client-cert',
  'Client-Cert', 'CLIENT_CERT', 'Client-Cert-Chain', 'client_cert_chain',
  'X-Client-Name', 'x-client-roles', 'X_Client_DN', 'x_client_verify', 'X-CLIENT-FINGERPRINT', 'X-Client-Serial', 'x-client-anything',
  'X-SSL-Client-Verify', 'x-ssl-client-dn', 'X_SSL_CLIENT_CERT', 'SSL-Client-Cert', 'ssl_client_s_dn',
  'X-Forwarded-For', 'x_forwarded_for', 'X-FORWARDED-PROTO', 'X-Forwarded-Host', 'x-forwarded-port', 'X-Forwarded-Prefix',
  'X-Forwarded-Server', 'X-Forwarded-Ssl',
  'Forwarded', 'FORWARDED', 'X-Real-IP', 'x_real_ip', 'True-Client-IP', 'X-Cluster-Client-IP',
  'X-Original-URL', 'x-rewrite-url', 'X_Original_URI',
  'Proxy-Authorization', 'proxy_authorization', 'Proxy-Connection', 'Proxy-Authenticate',
  'Connection', 'Keep-Alive', 'TE', 'Trailer', 'Transfer-Encoding', 'Upgrade', 'HTTP2-Settings',
  'Host', 'host', 'HOST',
];

for (const name of SPOOFED) {
  test(`drops inbound ${name} (repeated)`, () => {
    const out = build(['Accept', '*/*', name, 'CN=admin', name, 'evil', 'User-Agent', 'ua']);
    assert.deepEqual(out, { accept: '*/*', 'user-agent': 'ua', ...OURS });
  });
}

test('every header the broker adds is one the filter drops, so a client can never pre-set it', () => {
  for (const h of BROKER_HEADERS) {
    assert.ok(isDroppedHeader(h), h);
    assert.ok(isDroppedHeader(h.toUpperCase().replaceAll('-', '_')), h);
  }
  // A certificate caller gets all of them but the key id; an API key caller all but the certificate's.
  assert.deepEqual(Object.keys(build([])).sort(), BROKER_HEADERS.filter((h) => h !== 'x-client-key-id').sort());
  const keyOnly = { name: 'acme', roles: ['billing'], methods: ['apiKey'], keyId: '0123456789ab' };
  assert.deepEqual(Object.keys(build([], keyOnly)).sort(), BROKER_HEADERS.filter((h) => !['x-client-serial', 'x-client-fingerprint', 'x-forwarded-client-cert'].includes(h)).sort());
});

const CONNECTION: Array<[string, string[], Record<string, string>]> = [
  ['x-client-name', ['X-Client-Name', 'mallory'], {}],
  ['x-forwarded-for,foo', ['Foo', '1', 'Bar', '2'], { bar: '2' }],
  ['  Foo ,, X-Real-IP  ', ['foo', '1', 'bar', '2'], { bar: '2' }],
  ['close, foo', ['FOO', '1'], {}],
  ['foo_bar', ['Foo-Bar', '1', 'baz', '2'], { baz: '2' }],
  ['foo-bar', ['foo_bar', '1', 'baz', '2'], { baz: '2' }],
  ['forwarded, x-client-roles, x-forwarded-client-cert, host', ['Accept', 'a'], { accept: 'a' }],
  ['authorization', ['Authorization', 'Bearer x', 'accept', 'a'], { accept: 'a' }],
];

for (const [connection, rest, kept] of CONNECTION) {
  test(`Connection: ${connection} removes what it names but never the broker's headers`, () => {
    // the Connection header may come before or after the headers it names
    assert.deepEqual(build(['Connection', connection, ...rest]), { ...kept, ...OURS });
    assert.deepEqual(build([...rest, 'Connection', connection]), { ...kept, ...OURS });
  });
}

test('several Connection headers all count', () => {
  assert.deepEqual(build(['Connection', 'foo', 'Connection', 'bar', 'foo', '1', 'bar', '2', 'baz', '3']), { baz: '3', ...OURS });
});

const JOIN: Array<[string, string[], Record<string, string>]> = [
  ['repeated header joined with ", "', ['Accept', 'a', 'accept', 'b', 'ACCEPT', 'c'], { accept: 'a, b, c' }],
  ['cookie joined with "; "', ['Cookie', 'a=1', 'cookie', 'b=2'], { cookie: 'a=1; b=2' }],
  ['first authorization wins, as in req.headers', ['Authorization', 'Bearer a', 'authorization', 'Bearer b'], { authorization: 'Bearer a' }],
  ['first content-type wins', ['Content-Type', 'text/plain', 'Content-Type', 'application/json'], { 'content-type': 'text/plain' }],
  ['first user-agent wins', ['User-Agent', 'a', 'User-Agent', 'b'], { 'user-agent': 'a' }],
  ['names are lower-cased', ['X-Custom-Thing', 'v'], { 'x-custom-thing': 'v' }],
  ['other underscore names are kept as given', ['X_Custom', 'u', 'X-Custom', 'd'], { x_custom: 'u', 'x-custom': 'd' }],
  ['empty value kept', ['X-Empty', ''], { 'x-empty': '' }],
  ['non-token names dropped', ['Bad Name', 'x', 'bad:name', 'x', '', 'x', 'bäd', 'x', 'bad(x)', 'x', 'ok', 'y'], { ok: 'y' }],
  ['prototype names are ordinary names', ['constructor', 'y', 'toString', 'z'], { constructor: 'y', tostring: 'z' }],
];

for (const [label, raw, kept] of JOIN) {
  test(`headers: ${label}`, () => {
    assert.deepEqual(build(raw), { ...kept, ...OURS });
  });
}

test('__proto__ header neither pollutes nor vanishes', () => {
  const out = upstreamHeaders(['__proto__', 'x'], ID, FWD);
  assert.equal(Object.getPrototypeOf(out), null);
  assert.equal(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, 'x');
  assert.equal(({} as Record<string, unknown>)['x'], undefined);
});

test('x-forwarded-for is the peer address, never appended to a client value', () => {
  const out = build(['X-Forwarded-For', '10.0.0.1', 'x-forwarded-for', '10.0.0.2']);
  assert.equal(out['x-forwarded-for'], '192.0.2.7');
});

const FORWARDED: Array<[string, string, string]> = [
  ['192.0.2.7', 'broker.example', 'for=192.0.2.7;proto=https;host=broker.example'],
  ['192.0.2.7', 'broker.example:8443', 'for=192.0.2.7;proto=https;host="broker.example:8443"'],
  ['2001:db8::1', 'broker.example', 'for="[2001:db8::1]";proto=https;host=broker.example'],
  ['::ffff:192.0.2.7', 'broker.example', 'for="[::ffff:192.0.2.7]";proto=https;host=broker.example'],
  ['::1', '[::1]:8443', 'for="[::1]";proto=https;host="[::1]:8443"'],
];

for (const [ip, host, expected] of FORWARDED) {
  test(`Forwarded for ${ip} host ${host}`, () => {
    const out = build([], ID, { clientIp: ip, proto: 'https', host });
    assert.equal(out['forwarded'], expected);
    assert.equal(out['x-forwarded-for'], ip);
    assert.equal(out['x-real-ip'], ip);
    assert.equal(out['x-forwarded-host'], host);
  });
}

const XFCC: Array<[Partial<IdentityHeaders>, string]> = [
  [{}, `Hash=${FP};Subject="CN=alice,OU=ops,O=Example"`],
  [{ subject: 'CN=a "quoted" name' }, `Hash=${FP};Subject="CN=a \\"quoted\\" name"`],
  [{ subject: 'CN=back\\slash\\,comma' }, `Hash=${FP};Subject="CN=back\\\\slash\\\\,comma"`],
  [{ subject: 'CN=x";URI=spiffe://evil' }, `Hash=${FP};Subject="CN=x\\";URI=spiffe://evil"`],
  [{ uri: 'spiffe://example.org/ns/a/sa/b' }, `Hash=${FP};Subject="CN=alice,OU=ops,O=Example";URI=spiffe://example.org/ns/a/sa/b`],
  [{ uri: 'urn:x;y=1' }, `Hash=${FP};Subject="CN=alice,OU=ops,O=Example";URI="urn:x;y=1"`],
];

for (const [patch, expected] of XFCC) {
  test(`xfccValue ${JSON.stringify(patch)}`, () => {
    assert.equal(xfccValue({ ...ID, ...patch }), expected);
    assert.equal(build([], { ...ID, ...patch })['x-forwarded-client-cert'], expected);
  });
}

const ROLES: Array<[readonly string[], string]> = [
  [[], ''],
  [['a'], 'a'],
  [['orders:read', 'orders:write', 'ops.oncall', 'x_y-z'], 'orders:read,orders:write,ops.oncall,x_y-z'],
];

for (const [roles, expected] of ROLES) {
  test(`x-client-roles for ${JSON.stringify(roles)}`, () => {
    assert.equal(build([], { ...ID, roles })['x-client-roles'], expected);
  });
}

// Our own values come from certificates: anything that could split or smuggle a header throws.
const BAD_VALUES: Array<[string, Partial<IdentityHeaders>, Partial<ForwardInfo>]> = [
  ['CR LF in name', { name: 'alice\r\nx-client-roles: admin' }, {}],
  ['LF in serial', { serial: '01\n' }, {}],
  ['NUL in subject', { subject: 'CN=a\u0000' }, {}],
  ['CR in uri', { uri: 'spiffe://a\r' }, {}],
  ['non-ASCII subject', { subject: 'CN=caf\u00e9' }, {}],
  ['comma in a role', { roles: ['a,admin'] }, {}],
  ['space in a role', { roles: ['a b'] }, {}],
  ['empty role', { roles: [''] }, {}],
  ['LF in a role', { roles: ['a\nb'] }, {}],
  ['colon-separated fingerprint', { fingerprint: 'AA:'.repeat(31) + 'AA' }, {}],
  ['upper-case fingerprint', { fingerprint: 'A'.repeat(64) }, {}],
  ['short fingerprint', { fingerprint: 'a'.repeat(63) }, {}],
  ['CR LF in host', {}, { host: 'h\r\nx: y' }],
  ['LF in client address', {}, { clientIp: '1.2.3.4\n' }],
  ['empty client address', {}, { clientIp: '' }],
  ['empty host', {}, { host: '' }],
  ['leading space in name', { name: ' admin' }, {}],
  ['comma in name', { name: 'alice, admin' }, {}],
  ['empty name', { name: '' }, {}],
  ['empty serial', { serial: '' }, {}],
  ['quote in client address', {}, { clientIp: '::1"];for=x' }],
  ['space in host', {}, { host: 'a b' }],
];

for (const [label, idPatch, fwdPatch] of BAD_VALUES) {
  test(`refuses to build headers with ${label}`, () => {
    assert.throws(() => build([], { ...ID, ...idPatch }, { ...FWD, ...fwdPatch }), (err) => isBrokerError(err, 'BRK_ERR_PROXY_IDENTITY_VALUE'));
  });
}

test('one identity object reused across requests gives the same headers', () => {
  const id: IdentityHeaders = Object.freeze({ ...ID, uri: 'spiffe://example.org/a' });
  const a = build(['X-Client-Name', 'm'], id);
  const b = build([], id, { ...FWD, clientIp: '2001:db8::2' });
  assert.equal(a['x-forwarded-client-cert'], b['x-forwarded-client-cert']);
  assert.equal(b['x-client-name'], 'alice');
  assert.equal(b['x-forwarded-for'], '2001:db8::2');
});

test('the input array is not modified', () => {
  const raw = ['Connection', 'foo', 'foo', '1', 'X-Client-Name', 'm'];
  const copy = [...raw];
  build(raw);
  assert.deepEqual(raw, copy);
});

test('a header flood is filtered the same way (count is the server\'s job)', () => {
  const raw: string[] = [];
  for (let i = 0; i < 500; i++) raw.push(`X-Junk-${i}`, 'j', 'X-Client-Name', 'mallory');
  const out = build(raw);
  assert.equal(out['x-client-name'], 'alice');
  assert.equal(Object.keys(out).length, 500 + BROKER_HEADERS.length - 1); // no key id for a certificate caller
});

test('response headers: hop-by-hop fields and the ones Connection names are dropped, the rest kept as they are', () => {
  const out = downstreamHeaders({
    connection: 'keep-alive, X-Hop , x-other',
    'keep-alive': 'timeout=5',
    'proxy-connection': 'keep-alive',
    'transfer-encoding': 'chunked',
    te: 'trailers',
    upgrade: 'h2c',
    'x-hop': '1',
    'x-other': '2',
    'set-cookie': ['a=1', 'b=2'],
    'content-type': 'text/plain',
  });
  assert.deepEqual(out, { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  assert.deepEqual(downstreamHeaders({ connection: ['close', 'x-a'], 'x-a': '1', 'x-b': '2' }), { 'x-b': '2' });
  assert.deepEqual(downstreamHeaders({}), {});
});

test('a caller without a certificate gets name, roles, auth and key id, and no certificate headers', () => {
  const out = build(['X-Api-Key', 'brk_x', 'Authorization', 'Bearer t', 'Accept', 'a'], { name: 'acme', roles: ['billing'], methods: ['apiKey'], keyId: '0123456789ab' });
  assert.equal(out['x-client-name'], 'acme');
  assert.equal(out['x-client-auth'], 'apiKey');
  assert.equal(out['x-client-key-id'], '0123456789ab');
  for (const h of ['x-client-serial', 'x-client-fingerprint', 'x-forwarded-client-cert']) assert.equal(out[h], undefined, h);
  // Without a strip set the client's Authorization and API key travel on.
  assert.equal(out['authorization'], 'Bearer t');
  assert.equal(out['x-api-key'], 'brk_x');
});

test('credentials named in the strip set are dropped in every spelling, others kept', () => {
  const strip = new Set(['x-api-key', 'authorization']);
  const out = { ...upstreamHeaders(['X-Api-Key', 'k', 'x_api_key', 'k2', 'AUTHORIZATION', 'Basic abc', 'Accept', 'a'], ID, FWD, strip) };
  assert.equal(out['x-api-key'], undefined);
  assert.equal(out['x_api_key'], undefined);
  assert.equal(out['authorization'], undefined);
  assert.equal(out['accept'], 'a');
});
