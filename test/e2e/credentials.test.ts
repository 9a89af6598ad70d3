/**
 * API keys and Basic credentials as an operator and a partner meet them: `broker keys` on a real
 * store, `broker serve` with a certificate-optional listener, curl as the client, and a revocation
 * reaching the running broker through its watch on keys.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { broker, tempDir, NODE, BIN, errorCode } from '../helpers/cli.ts';
import { eventually } from '../helpers/within.ts';

const curl = (cwd: string, args: string[]) =>
  promisify(execFile)('curl', ['-sS', '--max-time', '10', '--cacert', 'pki/ca.crt', '-w', '\n%{http_code}', ...args], { cwd, encoding: 'utf8' }).then((r) => {
    const lines = r.stdout.split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n') };
  });

test('broker serve with API key, certificate + key and Basic routes: curl gets in with the right credentials, and a revoked key stops working without a restart', async (t) => {
  const dir = tempDir(t);
  const run = (args: string[]) => broker(args, { cwd: dir });
  assert.equal(run(['pki', 'init', '--no-passphrase', '--dir', 'pki']).code, 0);
  assert.equal(run(['pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1', '--dir', 'pki']).code, 0);
  assert.equal(run(['pki', 'issue', 'acme', '--role', 'partner', '--dir', 'pki', '--out', 'acme']).code, 0);
  const created = run(['keys', 'create', 'acme', '--role', 'partner', '--dir', 'pki', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const key = (JSON.parse(created.stdout) as { key: string }).key;
  const basicOut = run(['keys', 'create', 'oldco', '--role', 'partner', '--basic', '--dir', 'pki', '--json']);
  const { username, password } = JSON.parse(basicOut.stdout) as { username: string; password: string };

  const upstream = createServer((req, res) => res.end(JSON.stringify({ who: req.headers['x-client-name'], auth: req.headers['x-client-auth'], key: req.headers['x-api-key'] ?? null, authorization: req.headers.authorization ?? null })));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => upstream.close());
  const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  writeFileSync(
    join(dir, 'broker.yaml'),
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'listenCertOptional: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'pki: { dir: ./pki }',
      'tls: { server: edge }',
      'reload: { watch: true, debounce: 100ms }',
      'routes:',
      `  - { name: keyed, path: /keyed, upstream: "${up}", roles: [partner], auth: [apiKey] }`,
      `  - { name: both, path: /both, upstream: "${up}", roles: [partner], auth: [mtls, apiKey] }`,
      `  - { name: legacy, path: /legacy, upstream: "${up}", roles: [partner], auth: [basic] }`,
      '',
    ].join('\n'),
  );
  assert.equal(run(['config', 'check', '--config', 'broker.yaml']).code, 0);

  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8');
  const ports = await new Promise<{ main: number; optional: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 30_000);
    child.stderr.on('data', (d: string) => {
      err += d;
      const m = /"event":"listening".*?"port":(\d+),"optionalPort":(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ main: Number(m[1]), optional: Number(m[2]) });
      }
    });
  });
  const opt = `https://localhost:${ports.optional}`;
  const main = `https://localhost:${ports.main}`;

  const keyed = await curl(dir, ['-H', `x-api-key: ${key}`, `${opt}/keyed/1`]);
  assert.equal(keyed.status, 200, keyed.body);
  assert.deepEqual(JSON.parse(keyed.body), { who: 'acme', auth: 'apiKey', key: null, authorization: null });
  const noKey = await curl(dir, [`${opt}/keyed/1`]);
  assert.equal(noKey.status, 401);
  assert.equal(JSON.parse(noKey.body).code, 'BRK_ERR_AUTH_REQUIRED');
  await assert.rejects(curl(dir, ['-H', `x-api-key: ${key}`, `${main}/keyed/1`]), 'the main listener still wants a certificate');

  const both = await curl(dir, ['--cert', 'acme/acme.crt', '--key', 'acme/acme.key', '-H', `x-api-key: ${key}`, `${main}/both/1`]);
  assert.equal(both.status, 200, both.body);
  assert.equal(JSON.parse(both.body).auth, 'mtls,apiKey');
  assert.equal((await curl(dir, ['--cert', 'acme/acme.crt', '--key', 'acme/acme.key', `${main}/both/1`])).status, 401);

  const legacy = await curl(dir, ['--user', `${username}:${password}`, `${opt}/legacy/1`]);
  assert.equal(legacy.status, 200, legacy.body);
  assert.equal(JSON.parse(legacy.body).who, 'oldco');
  assert.equal((await curl(dir, ['--user', `${username}:wrong-password`, `${opt}/legacy/1`])).status, 401);

  assert.equal(run(['keys', 'revoke', 'acme', '--dir', 'pki']).code, 0);
  await eventually(async () => (await curl(dir, ['-H', `x-api-key: ${key}`, `${opt}/keyed/1`])).status === 401, 'the revoked key is refused after the watched reload', 15_000, 100);
  assert.match(out, /"event":"reload","outcome":"ok"/);
  for (const secret of [key, password]) assert.ok(!(out + err).includes(secret), 'no secret in the logs');

  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);

  // A damaged keys.json: config check says so; serve refuses to start on it.
  writeFileSync(join(dir, 'pki', 'keys.json'), '{"format":"broker-keys/1","keys":[{"id":');
  const check = run(['config', 'check', '--config', 'broker.yaml']);
  assert.equal(check.code, 2);
  assert.match(check.stderr, /keys/);
  const serve = run(['serve', '--config', 'broker.yaml']);
  assert.notEqual(serve.code, 0);
  assert.equal(errorCode(serve.stderr), 'BRK_ERR_KEYS_CORRUPT');
});
