import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, matchesPrefix } from '../../src/filter/index.ts';

// [request-target, canonical path or null for "rejected", optional reason fragment]
const PATHS: Array<[string, string | null, string?]> = [
  // plain and already canonical
  ['/', '/'],
  ['/api', '/api'],
  ['/api/', '/api/'],
  ['/api/orders/42', '/api/orders/42'],
  ['/a-b_c.d~e', '/a-b_c.d~e'],
  ["/!$&'()*+,=:@", "/!$&'()*+,=:@"],
  ['/...', '/...'],
  ['/a/.../b', '/a/.../b'],
  ['/.hidden/..x/x..', '/.hidden/..x/x..'],
  // dot segments
  ['/api/./admin', '/api/admin'],
  ['/api/../admin', '/admin'],
  ['/api/orders/../../admin', '/admin'],
  ['/.', '/'],
  ['/./', '/'],
  ['/a/.', '/a/'],
  ['/a/..', '/'],
  ['/a/b/..', '/a/'],
  ['/a/b/../', '/a/'],
  ['/a/./b/./c', '/a/b/c'],
  ['/..', null, 'above the root'],
  ['/../x', null, 'above the root'],
  ['/a/../..', null, 'above the root'],
  ['/a/b/../../..', null, 'above the root'],
  ['/api/../../admin', null, 'above the root'],
  ['/./../admin', null, 'above the root'],
  // duplicate slashes
  ['//admin', '/admin'],
  ['///admin//secret//', '/admin/secret/'],
  ['/api//..//admin', '/admin'],
  ['/api//../admin', '/admin'],
  ['//', '/'],
  // encoded dots: never decoded, always refused
  ['/api/%2e%2e/admin', null, 'encoded "."'],
  ['/api/%2E%2E/admin', null, 'encoded "."'],
  ['/api/%2E./admin', null, 'encoded "."'],
  ['/api/.%2e/admin', null, 'encoded "."'],
  ['/api/%2e/admin', null, 'encoded "."'],
  ['/file%2ejson', null, 'encoded "."'],
  // encoded and raw separators
  ['/api/%2fadmin', null, 'encoded "/"'],
  ['/api/%2Fadmin', null, 'encoded "/"'],
  ['/api/..%2fadmin', null, 'encoded "/"'],
  ['/api/%5cadmin', null, 'encoded "/" or "\\"'],
  ['/api/%5C..%5Cadmin', null, 'encoded "/" or "\\"'],
  ['/api\\admin', null, '"\\"'],
  ['/api/..\\admin', null, '"\\"'],
  // unreserved escapes are decoded, others kept with upper-case hex
  ['/api/%61dmin', '/api/admin'],
  ['/api/%41DMIN', '/api/ADMIN'],
  ['/%7e', '/~'],
  ['/%7E%2d%5f', '/~-_'],
  ['/%30%39', '/09'],
  ['/a%20b', '/a%20b'],
  ['/a%3fb', '/a%3Fb'],
  ['/a%23b', '/a%23b'],
  ['/a%40b%3a', '/a%40b%3A'],
  ['/a%2b', '/a%2B'],
  ['/100%25', '/100%25'],
  ['/50%25off', '/50%25off'],
  // double encoding
  ['/api/%252e%252e/admin', null, 'double percent-encoding'],
  ['/api/%252fadmin', null, 'double percent-encoding'],
  ['/api/%25%32%65', null, 'double percent-encoding'], // becomes %252e once the digits are decoded
  ['/api/%25%61%62', null, 'double percent-encoding'],
  // invalid escapes
  ['/a%zz', null, 'invalid percent-encoding'],
  ['/a%', null, 'invalid percent-encoding'],
  ['/a%0', null, 'invalid percent-encoding'],
  ['/a%4', null, 'invalid percent-encoding'],
  ['/a%g1', null, 'invalid percent-encoding'],
  ['/a%%41', null, 'invalid percent-encoding'],
  ['/a%0?x', null, 'invalid percent-encoding'],
  // controls and NUL
  ['/a%00b', null, 'control'],
  ['/a%0ab', null, 'control'],
  ['/a%0D%0Ab', null, 'control'],
  ['/a%09b', null, 'control'],
  ['/a%7fb', null, 'control'],
  ['/a\u0000b', null, 'control'],
  ['/a\nb', null, 'control'],
  ['/a\u007fb', null, 'control'],
  ['/a b', null, 'space'],
  // UTF-8
  ['/caf%C3%A9', '/caf%C3%A9'],
  ['/caf%c3%a9', '/caf%C3%A9'],
  ['/%E4%B8%AD', '/%E4%B8%AD'],
  ['/%F0%9F%98%80', '/%F0%9F%98%80'],
  ['/a%c0%ae%c0%ae/', null, 'UTF-8'],
  ['/a%C0%AF', null, 'UTF-8'],
  ['/a%C1%81', null, 'UTF-8'],
  ['/a%E0%80%AE', null, 'UTF-8'],
  ['/a%F0%80%80%AE', null, 'UTF-8'],
  ['/a%80', null, 'UTF-8'],
  ['/a%BF', null, 'UTF-8'],
  ['/a%C3', null, 'UTF-8'],
  ['/a%C3/b', null, 'UTF-8'],
  ['/a%C3b', null, 'UTF-8'],
  ['/a%C3%41', null, 'UTF-8'],
  ['/a%E4%B8', null, 'UTF-8'],
  ['/a%ED%A0%80', null, 'UTF-8'], // surrogate
  ['/a%F4%90%80%80', null, 'UTF-8'], // above U+10FFFF
  ['/a%F5%80%80%80', null, 'UTF-8'],
  ['/a%FF', null, 'UTF-8'],
  ['/a%C2%85', null, 'ASCII or a control'], // C1 NEL
  ['/api/%EF%BC%8E%EF%BC%8E/admin', null, 'ASCII or a control'], // fullwidth ".."
  ['/api%EF%BC%8Fadmin', null, 'ASCII or a control'], // fullwidth "/"
  ['/api%EF%BC%BCadmin', null, 'ASCII or a control'], // fullwidth "\"
  ['/api%E2%88%95admin', null, 'ASCII or a control'], // division slash
  ['/api%C2%A5admin', null, 'ASCII or a control'], // yen sign, "\" in cp932
  ['/%EF%BC%A1DMIN', null, 'ASCII or a control'], // fullwidth "A"
  ['/caf\u00e9', null, 'non-ASCII'],
  ['/\u4e2d', null, 'non-ASCII'],
  // ";" path parameters
  ['/;/admin', null, '";"'],
  ['/api/..;/admin', null, '";"'],
  ['/api/.;/admin', null, '";"'],
  ['/api;x/y', null, '";"'],
  ['/admin;jsessionid=1', null, '";"'],
  ['/api/%3b/admin', null, 'encoded ";"'],
  ['/api/..%3B/admin', null, 'encoded ";"'],
  // characters Node lets through that RFC 3986 does not: encoded
  ['/a{b}', '/a%7Bb%7D'],
  ['/a|b^c', '/a%7Cb%5Ec'],
  ['/a"b<c>d`e', '/a%22b%3Cc%3Ed%60e'],
  ['/a[0]', '/a%5B0%5D'],
  // form of the request-target
  ['', null, 'empty'],
  ['*', null, 'origin-form'],
  ['http://evil.example/admin', null, 'origin-form'],
  ['api/admin', null, 'origin-form'],
  ['\\admin', null, 'origin-form'],
  ['/a#frag', null, 'fragment'],
  ['/a?x=1#frag', null, 'fragment'],
  // case is kept
  ['/ADMIN', '/ADMIN'],
  ['/Api/Orders', '/Api/Orders'],
  // length
  ['/' + 'a'.repeat(9000), null, 'longer than 8192'],
  ['/' + 'a'.repeat(8191), '/' + 'a'.repeat(8191)],
];

for (const [input, expected, reason] of PATHS) {
  const label = input.length > 60 ? `${input.slice(0, 40)}… (${input.length} chars)` : JSON.stringify(input);
  test(`normalizePath ${label} -> ${expected === null ? 'rejected' : JSON.stringify(expected).slice(0, 60)}`, () => {
    const r = normalizePath(input);
    if (expected === null) {
      assert.equal(r.ok, false, `accepted as ${r.ok ? r.path : ''}`);
      if (!r.ok && reason !== undefined) assert.ok(r.reason.includes(reason), `reason ${JSON.stringify(r.reason)} lacks ${JSON.stringify(reason)}`);
    } else {
      assert.deepEqual(r, { ok: true, path: expected, query: '' });
    }
  });
}

// [request-target, path, query] or [request-target, null]
const QUERIES: Array<[string, string | null, string?]> = [
  ['/a?x=1&y=2', '/a', '?x=1&y=2'],
  ['/a?', '/a', '?'],
  ['/a??x', '/a', '??x'],
  ['/a?x=%2e%2e%2f&y=%zz', '/a', '?x=%2e%2e%2f&y=%zz'], // query is application data, kept as received
  ['/api/./b/?q=/../admin', '/api/b/', '?q=/../admin'],
  ['/a?x=%00', '/a', '?x=%00'],
  ['/a?x=\u0000', null],
  ['/a?x=\r\n', null],
  ['/a?x= y', null],
  ['/a?x=\u00e9', null],
  ['/a?x=1#y', null],
  ['/a%2e?x', null], // the path is still checked
];

for (const [input, path, query] of QUERIES) {
  test(`normalizePath query ${JSON.stringify(input)}`, () => {
    const r = normalizePath(input);
    if (path === null) assert.equal(r.ok, false);
    else assert.deepEqual(r, { ok: true, path, query });
  });
}

test('normalizePath honours maxLength on the path only', () => {
  assert.equal(normalizePath('/abcdef', { maxLength: 5 }).ok, false);
  assert.deepEqual(normalizePath('/abcd?' + 'q'.repeat(100), { maxLength: 5 }), { ok: true, path: '/abcd', query: '?' + 'q'.repeat(100) });
  // percent-encoding raw characters can lengthen the path past the limit
  assert.equal(normalizePath('/{{', { maxLength: 5 }).ok, false);
});

test('normalizePath foldCase lower-cases ASCII and refuses non-ASCII', () => {
  assert.deepEqual(normalizePath('/ADMIN/%41x', { foldCase: true }), { ok: true, path: '/admin/ax', query: '' });
  assert.deepEqual(normalizePath('/Api/./Orders?Q=1', { foldCase: true }), { ok: true, path: '/api/orders', query: '?Q=1' });
  assert.deepEqual(normalizePath('/a%3f', { foldCase: true }), { ok: true, path: '/a%3F', query: '' }); // hex stays upper-case
  assert.equal(normalizePath('/caf%C3%A9', { foldCase: true }).ok, false);
  assert.deepEqual(normalizePath('/orders', { foldCase: true }), { ok: true, path: '/orders', query: '' });
});

test('every accepted path is a fixed point: of normalizePath and of WHATWG URL parsing', () => {
  for (const [input, expected] of PATHS) {
    if (expected === null) continue;
    assert.deepEqual(normalizePath(expected), { ok: true, path: expected, query: '' }, input);
    assert.equal(new URL(expected, 'http://upstream.invalid').pathname, expected, input);
  }
});

const PREFIXES: Array<[string, string, boolean]> = [
  ['/orders', '/orders', true],
  ['/orders/', '/orders', true],
  ['/orders/1', '/orders', true],
  ['/orders/1/items', '/orders', true],
  ['/ordersX', '/orders', false],
  ['/orders-old', '/orders', false],
  ['/order', '/orders', false],
  ['/', '/orders', false],
  ['/api/orders', '/orders', false],
  ['/orders', '/orders/', true],
  ['/orders/1', '/orders/', true],
  ['/ordersX', '/orders/', false],
  ['/orders', '/orders//', true],
  ['/anything', '/', true],
  ['/', '/', true],
  ['/a/b/c', '/a/b', true],
  ['/a/bc', '/a/b', false],
  ['/ORDERS', '/orders', false],
  ['/Orders/1', '/orders', false],
  ['/orders', 'orders', false],
  ['/orders', '', false],
  ['/a%20b/c', '/a%20b', true],
];

for (const [path, prefix, expected] of PREFIXES) {
  test(`matchesPrefix(${JSON.stringify(path)}, ${JSON.stringify(prefix)}) is ${expected}`, () => {
    assert.equal(matchesPrefix(path, prefix), expected);
  });
}

test('spellings of /admin either are refused or are judged as /admin', () => {
  const attacks = [
    '/public/../admin', '/public/./../admin', '/public/%2e%2e/admin', '//admin', '/public//..//admin', '/%61dmin',
    '/admin;/', '/public/..;/admin', '/public/%2e%2e%2fadmin', '/public/..%5cadmin', '/public\\..\\admin', '/./admin/',
  ];
  for (const a of attacks) {
    const r = normalizePath(a);
    assert.ok(!r.ok || (matchesPrefix(r.path, '/admin') && !matchesPrefix(r.path, '/public')), `${a} -> ${JSON.stringify(r)}`);
  }
});

test('random spellings: every accepted path is canonical (seeded, deterministic)', () => {
  const parts = ['/', '/', '.', '..', 'a', 'B', '%41', '%61', '%2e', '%2F', '%5c', '%', '%c3', '%a9', '%C3%A9', ';', '\\', '{', '%25', '%2541', '%00', '\u00e9', '%E2%88%95', '~', '%7E', ':', '@', '%3b', '?', '#', ' '];
  let seed = 0x2545f491;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    let input = '/';
    const len = 1 + next(10);
    for (let j = 0; j < len; j++) input += parts[next(parts.length)];
    const r = normalizePath(input);
    if (!r.ok) continue;
    accepted++;
    const p = r.path;
    assert.ok(p.startsWith('/') && !p.includes('//'), input);
    assert.ok(!/(^|\/)\.\.?(\/|$)/.test(p), `${input} -> ${p}`);
    assert.ok(!/[;\\#?\s\u0080-\uffff]/.test(p), `${input} -> ${p}`);
    assert.ok(!/%(2E|2F|5C|3B|00|25[0-9A-F]{2})|%[0-9A-F]?[a-f]/.test(p), `${input} -> ${p}`);
    assert.deepEqual(normalizePath(p + r.query), r, input);
    assert.equal(new URL(p, 'http://upstream.invalid').pathname, p, input);
  }
  assert.ok(accepted > 100, `only ${accepted} accepted`);
});
