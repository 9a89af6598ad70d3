import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseListen, parseTarget, parseVia } from '../../src/connect/options.ts';
import { requestHeaders, responseHeaders } from '../../src/connect/headers.ts';
import { isBrokerError } from '../../src/errors.ts';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return isBrokerError(err) ? err.code : String(err);
  }
  return 'no error';
};

test('--listen: loopback by default, anything else only with --allow-remote', () => {
  for (const [value, host, port] of [
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['127.1.2.3:0', '127.1.2.3', 0],
    ['[::1]:9000', '::1', 9000],
    ['localhost:80', 'localhost', 80],
    [':8080', '127.0.0.1', 8080],
    ['8080', '127.0.0.1', 8080],
  ] as const) {
    assert.deepEqual({ ...parseListen(value, false) }, { host, port, loopback: true }, value);
  }
  for (const value of ['0.0.0.0:8080', '192.0.2.1:8080', '[::]:8080', 'example.com:8080', '[::ffff:10.0.0.1]:1']) {
    assert.equal(code(() => parseListen(value, false)), 'BRK_ERR_CONNECT_LISTEN_REMOTE', value);
    assert.equal(parseListen(value, true).loopback, false, value);
  }
  for (const value of ['', 'nonsense', '127.0.0.1:99999', '[nope]:80', '127.0.0.1:']) assert.equal(code(() => parseListen(value, true)), 'BRK_ERR_USAGE', value);
});

test('--url: https only, no credentials, query or fragment; a base path is kept', () => {
  assert.deepEqual({ ...parseTarget('https://broker.example:8443') }, { origin: 'https://broker.example:8443', basePath: '' });
  assert.deepEqual({ ...parseTarget('https://broker.example/v2/') }, { origin: 'https://broker.example', basePath: '/v2' });
  for (const value of ['http://broker.example', 'https://u:p@broker.example', 'https://broker.example/?a=1', 'https://broker.example/#x', 'not a url']) {
    assert.equal(code(() => parseTarget(value)), 'BRK_ERR_CONNECT_URL', value);
  }
});

test('--via: credentials from the URL or else the file/environment, as Basic; never left in the URI', () => {
  const b64 = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
  assert.deepEqual({ ...parseVia('http://proxy:3128') }, { uri: 'http://proxy:3128' });
  assert.deepEqual({ ...parseVia('http://u%40corp:p%3Aw@proxy:3128') }, { uri: 'http://proxy:3128', token: b64('u@corp:p:w') });
  assert.deepEqual({ ...parseVia('http://proxy:3128', { value: 'a:b', from: 'BROKER_PROXY_AUTH' }) }, { uri: 'http://proxy:3128', token: b64('a:b') });
  assert.equal(parseVia('http://u:p@proxy:3128', { value: 'a:b', from: 'BROKER_PROXY_AUTH' }).token, b64('u:p'), 'the URL wins over the environment');
  assert.equal(code(() => parseVia('http://u:p@proxy:3128', { value: 'a:b', from: '--via-auth-file' })), 'BRK_ERR_CONNECT_URL');
  assert.equal(code(() => parseVia('http://proxy:3128', { value: 'no-colon', from: 'BROKER_PROXY_AUTH' })), 'BRK_ERR_CONNECT_URL');
  for (const value of ['socks5://proxy:1080', 'http://proxy:3128/path', 'proxy:3128']) assert.equal(code(() => parseVia(value)), 'BRK_ERR_CONNECT_URL', value);
});

test('hop-by-hop headers and those a Connection token names stay behind, in both directions', () => {
  assert.deepEqual(
    requestHeaders({
      host: ['127.0.0.1:8080'],
      connection: ['keep-alive, X-Hop'],
      'x-hop': ['1'],
      'keep-alive': ['timeout=5'],
      'proxy-authorization': ['Basic eA=='],
      'transfer-encoding': ['chunked'],
      expect: ['100-continue'],
      te: ['trailers'],
      upgrade: ['websocket'],
      accept: ['a', 'b'],
      'content-length': ['3'],
      'x-trace': ['t'],
    }),
    { accept: ['a', 'b'], 'content-length': '3', 'x-trace': 't' },
  );
  assert.deepEqual(responseHeaders({ connection: 'close', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' }), {
    'set-cookie': ['a=1', 'b=2'],
    'content-type': 'text/plain',
  });
});
