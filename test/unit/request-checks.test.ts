/** The pure request-head checks: Host shape, method-override headers, and what "loopback" means. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostProblem, overrideMethods, METHOD_OVERRIDES } from '../../src/filter/index.ts';
import { METHOD_OVERRIDE_HEADERS, isDroppedHeader } from '../../src/proxy/headers.ts';
import { isLoopbackAddress, isLoopbackHost } from '../../src/config/index.ts';
import { adminHostAllowed } from '../../src/admin/plugin.ts';

test('hostProblem: host[:port] with a DNS-style name, IPv4 or bracketed IPv6, and a port up to 65535', () => {
  for (const ok of ['a', 'localhost', 'LOCALHOST.', 'x_y.example', 'a~b', '1.2.3.4', '1.2.3.4:0', 'h:65535', '[::1]', '[::ffff:1.2.3.4]:443', '[2001:db8::1]:8443', 'a'.repeat(253) + ':12345']) {
    assert.equal(hostProblem(ok), undefined, ok);
  }
  for (const bad of ['', ':80', 'a,b', 'a b', 'a"b', 'a;b', 'a@b', 'a/b', 'a\\b', '%41', 'ü', 'a:', 'a:65536', 'a:123456', 'a:1:2', 'a:+1', '[::1', '[::1]:', '[::1]x', '[1.2.3.4]', '[fe80::1%eth0]', '[v1.x]', 'a'.repeat(260)]) {
    assert.equal(typeof hostProblem(bad), 'string', JSON.stringify(bad));
  }
});

test('overrideMethods: every spelling of the three headers, upper-cased and trimmed; none → undefined', () => {
  assert.equal(overrideMethods(['Host', 'x', 'Accept', '*/*']), undefined);
  assert.deepEqual(overrideMethods(['X-HTTP-Method-Override', ' delete ', 'x_http_method', 'PUT', 'X-METHOD-OVERRIDE', 'a, b']), ['DELETE', 'PUT', 'A, B']);
  // The policy's list and the proxy's list are the same three names, and the proxy drops them by default.
  assert.deepEqual([...METHOD_OVERRIDES].sort(), [...METHOD_OVERRIDE_HEADERS].sort());
  for (const h of METHOD_OVERRIDES) assert.ok(isDroppedHeader(h.toUpperCase().replaceAll('-', '_')), h);
});

test('loopback is decided on parsed addresses; localhost only where named', () => {
  for (const a of ['127.0.0.1', '127.9.8.7', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1']) assert.ok(isLoopbackAddress(a), a);
  for (const a of ['127.attacker.example', '127.0.0.1.nip.io', '127.1', 'localhost', '0.0.0.0', '::', '::ffff:10.0.0.1', '128.0.0.1', '[::1', '']) assert.ok(!isLoopbackAddress(a), a);
  assert.ok(isLoopbackHost('localhost') && isLoopbackHost('LocalHost') && isLoopbackHost('::1'));
  assert.ok(!isLoopbackHost('localhost.evil.example') && !isLoopbackHost('127.attacker.example'));
});

test('adminHostAllowed: IP literals, localhost and configured names; nothing a rebinding page can present', () => {
  const names = new Set(['admin.internal']);
  for (const h of ['127.0.0.1:9901', '10.1.2.3', '[::1]:1', 'localhost:9901', 'Localhost', 'ADMIN.internal:9901']) assert.ok(adminHostAllowed(h, names), h);
  for (const h of [undefined, '', 'evil.example', 'evil.example:9901', '127.attacker.example', 'localhost.evil.example', 'admin.internal.evil', '1.2.3.4.nip.io', '<x>']) assert.ok(!adminHostAllowed(h, names), String(h));
});
