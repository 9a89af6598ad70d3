import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makePki, request, startBroker, startUpstream } from '../helpers/broker.ts';

test('an allowed client reaches the upstream, which sees the verified identity and none of the spoofed headers', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'orders', path: '/orders', upstream: up.url, roles: ['partner'] }] });
  const acme = await pki.issue('acme', ['partner', 'billing']);
  const res = await request(b.port, {
    id: acme,
    ca: pki.ca,
    path: '/orders/42?x=1',
    headers: {
      'X-Client-Name': 'root',
      'x_client_roles': 'admin',
      'X-Forwarded-Client-Cert': 'Hash=00;Subject="CN=root"',
      'x-forwarded-for': '10.0.0.1',
      'Client-Cert': ':Zm9v:',
      'X-SSL-Client-Verify': 'SUCCESS',
      'X_Client_DN': 'CN=root',
      'Forwarded': 'for=10.0.0.1',
      'X-Real-IP': '10.0.0.1',
      'Proxy-Authorization': 'Basic Zm9vOmJhcg==',
      Connection: 'keep-alive, x-client-name, x-forwarded-client-cert',
    },
  });
  assert.equal(res.status, 200);
  assert.equal(up.seen.length, 1);
  const seen = up.seen[0]!;
  assert.equal(seen.url, '/orders/42?x=1');
  assert.equal(seen.headers['x-client-name'], 'acme');
  assert.equal(seen.headers['x-client-roles'], 'partner,billing');
  assert.equal(seen.headers['x-client-serial'], acme.serial);
  assert.match(String(seen.headers['x-client-fingerprint']), /^[0-9a-f]{64}$/);
  assert.match(String(seen.headers['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};Subject="CN=acme,OU=partner,OU=billing";URI=spiffe:\/\/test\.example\/client\/acme$/);
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
  assert.equal(seen.headers['forwarded'], `for=127.0.0.1;proto=https;host="127.0.0.1:${b.port}"`);
  for (const h of ['client-cert', 'x-ssl-client-verify', 'x-client-dn', 'x_client_dn', 'proxy-authorization']) assert.equal(seen.headers[h], undefined, h);
  // every identity header arrives exactly once
  for (const h of ['x-client-name', 'x-client-roles', 'x-forwarded-client-cert', 'x-forwarded-for']) {
    assert.equal(seen.rawHeaders.filter((n, i) => i % 2 === 0 && n.toLowerCase().replace(/_/g, '-') === h).length, 1, h);
  }
  const access = await b.logs.waitFor((l) => l.log === 'access');
  assert.equal(access.principal, 'acme');
  assert.equal(access.route, 'orders');
  assert.equal(access.status, 200);
});
