/** The onboarding kit's pure parts: routes a set of roles reaches, the URL check, and a kit for an invitation (token kind). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.ts';
import { checkBundleUrl, enrollUrlOf, reachableRoutes, samplePath, writeBundle } from '../../src/pki/bundle.ts';
import { isBrokerError } from '../../src/errors.ts';

const route = (name: string, roles: string[], extra: Record<string, unknown> = {}) =>
  ({ name, path: `/${name}`, upstream: 'http://127.0.0.1:1', roles, auth: ['mtls'], websocket: false, ...extra }) as never;

test('reachableRoutes: the routes any of the roles opens, GET implying HEAD, with the credentials each needs; the snippets call the first certificate-only GET route', () => {
  const routes = reachableRoutes({ routes: [route('keyed', ['a'], { auth: ['apiKey'] }), route('posts', ['a'], { methods: ['POST'] }), route('reads', ['b', 'a'], { methods: ['GET'], websocket: true }), route('other', ['c'])] }, ['a']);
  assert.deepEqual(routes, [
    { name: 'keyed', path: '/keyed', methods: undefined, auth: ['apiKey'], websocket: false },
    { name: 'posts', path: '/posts', methods: ['POST'], auth: ['mtls'], websocket: false },
    { name: 'reads', path: '/reads', methods: ['GET', 'HEAD'], auth: ['mtls'], websocket: true },
  ]);
  assert.equal(samplePath(routes), '/reads');
  assert.equal(samplePath(undefined), '/');
  assert.equal(samplePath([]), '/');
});

test('checkBundleUrl: https://HOST[:PORT] only', () => {
  assert.equal(checkBundleUrl('https://broker.example.com:8443/'), 'https://broker.example.com:8443');
  for (const bad of ['http://b.example', 'https://u:p@b.example', 'https://b.example/base', 'https://b.example/?q', 'b.example:8443']) {
    assert.throws(() => checkBundleUrl(bad), (e: unknown) => isBrokerError(e) && e.code === 'BRK_ERR_USAGE_BUNDLE_URL', bad);
  }
});

test('writeBundle for an invitation: the token (0600) and ca.crt instead of credentials, and the enrol command first', (t) => {
  const dir = tempDir(t);
  const w = writeBundle({
    dir,
    identity: 'initech',
    roles: ['billing'],
    contact: 'it@initech.example',
    url: 'https://broker.example.com:8443',
    routes: undefined,
    credentials: { kind: 'token', token: 'brk-enroll-TOKEN', expires: '2026-12-10T00:00:00.000Z', certTtl: '30d', caPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', enrollUrl: 'https://broker.example.com:8444' },
  });
  assert.equal(w.placeholderEnrollUrl, false);
  assert.equal(w.token, join(dir, 'initech', 'initech.token'));
  assert.equal(readFileSync(w.token as string, 'utf8'), 'brk-enroll-TOKEN\n');
  assert.equal(statSync(w.token as string).mode & 0o777, 0o600);
  assert.match(readFileSync(join(dir, 'initech', 'ca.crt'), 'utf8'), /BEGIN CERTIFICATE/);
  const readme = readFileSync(w.readme, 'utf8');
  assert.ok(readme.includes('broker enroll --url https://broker.example.com:8444 --token "$(cat initech.token)" --out . --p12'), 'enrolment goes to the certificate-optional listener');
  assert.ok(readme.includes('broker renew --url https://broker.example.com:8443 '), 'renewal to the main one');
  assert.ok(readme.indexOf('broker enroll') < readme.indexOf('## Try it'));
  assert.doesNotMatch(readme, /BROKER_HOST/);
  assert.match(readme, /single use, valid until \*\*2026-12-10T00:00:00\.000Z\*\*; the certificate it gets lives 30d/);
  assert.doesNotMatch(readme, /brk-enroll-TOKEN/, 'the token is in its file, not in the README');
  assert.throws(() => writeBundle({ dir, identity: 'initech', roles: ['billing'], credentials: { kind: 'token', token: 't', expires: 'x', caPem: '' } }), (e: unknown) => isBrokerError(e) && e.code === 'BRK_ERR_PKI_OUTPUT_EXISTS');
  const p = writeBundle({ dir, identity: 'hooli', roles: ['billing'], credentials: { kind: 'token', token: 't', expires: 'x', caPem: '' } });
  assert.equal(p.placeholderEnrollUrl, true);
  assert.match(readFileSync(p.readme, 'utf8'), /broker enroll --url https:\/\/BROKER_HOST:8444 [^\n]*\n[^]*The enrolment address above is a placeholder/);
});

test('enrollUrlOf: --enroll-url, else the host of --url with the listenCertOptional port, else unknown', () => {
  assert.equal(enrollUrlOf({ enrollUrl: 'https://enrol.example:443/', url: 'https://b.example:8443', optionalPort: 9444 }), 'https://enrol.example');
  assert.equal(enrollUrlOf({ url: 'https://b.example:8443', optionalPort: 9444 }), 'https://b.example:9444');
  assert.equal(enrollUrlOf({ url: 'https://[::1]:8443', optionalPort: 9444 }), 'https://[::1]:9444');
  assert.equal(enrollUrlOf({ url: 'https://b.example:8443', optionalPort: 0 }), undefined, 'port 0 tells nothing');
  assert.equal(enrollUrlOf({ url: 'https://b.example:8443' }), undefined);
  assert.equal(enrollUrlOf({ optionalPort: 9444 }), undefined);
  assert.throws(() => enrollUrlOf({ enrollUrl: 'http://b.example:8444' }), (e: unknown) => isBrokerError(e) && e.code === 'BRK_ERR_USAGE_BUNDLE_URL' && e.message.includes('--enroll-url'));
});
