/**
 * The upstream's hop-by-hop response headers stay on the upstream connection: its `Connection`,
 * `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding` and every header its `Connection` names are
 * not passed to the client, so the client's own `Connection: close` is honoured and Node frames the
 * response for the client's connection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makePki, rawExchange, startBroker, startUpstream } from '../helpers/broker.ts';

function headLines(text: string): string[] {
  return text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n').slice(1).map((l) => l.toLowerCase());
}

test('hop-by-hop headers from the upstream do not reach the client, and the client\'s Connection: close holds', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t, (_req, res) => {
    res.setHeader('connection', 'keep-alive, x-hop');
    res.setHeader('keep-alive', 'timeout=99');
    res.setHeader('proxy-connection', 'keep-alive');
    res.setHeader('x-hop', 'upstream-only');
    res.setHeader('x-end-to-end', 'kept');
    res.write('chunk-1;'); // no content-length: the upstream sends it chunked
    res.end('chunk-2');
  });
  const b = await startBroker(t, pki, { routes: [{ name: 'r', path: '/r', upstream: up.url, roles: ['app'] }], timeouts: { keepAlive: '60s' } });
  const id = await pki.issue('app', ['app']);

  // rawExchange resolves when the server closes the connection (or at its deadline).
  const text = await rawExchange(b.port, { id, ca: pki.ca, data: 'GET /r/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', ms: 10_000 });
  assert.match(text, /^HTTP\/1\.1 200 /);
  const head = headLines(text);
  assert.deepEqual(head.filter((l) => l.startsWith('connection:')), ['connection: close']);
  for (const name of ['keep-alive:', 'proxy-connection:', 'x-hop:']) assert.equal(head.filter((l) => l.startsWith(name)).length, 0, `${name} ${head.join(' | ')}`);
  assert.ok(head.includes('x-end-to-end: kept'));
  // Node frames the response for the client itself (chunked: the upstream sent no length).
  assert.deepEqual(head.filter((l) => l.startsWith('transfer-encoding:') || l.startsWith('content-length:')), ['transfer-encoding: chunked']);
  assert.equal(text.slice(text.indexOf('\r\n\r\n') + 4), '8\r\nchunk-1;\r\n7\r\nchunk-2\r\n0\r\n\r\n');
});
