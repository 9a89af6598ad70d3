/** `broker config check` and `broker serve` as an operator runs them, with a real store and curl. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE, broker, errorCode, tempDir } from '../helpers/cli.ts';

test('config check reports every problem of a broken config at once, as path: problem, exit 2', (t) => {
  const dir = tempDir(t);
  assert.equal(broker(['pki', 'init', '--no-passphrase', '--dir', 'pki'], { cwd: dir }).code, 0);
  writeFileSync(
    join(dir, 'broken.yaml'),
    [
      'listen: { host: 127.0.0.1, port: 8443, bogus: 1 }',
      'tls: { server: nosuchcert }',
      'colour: blue',
      'routes:',
      '  - { name: a, path: /a, upstream: "ftp://127.0.0.1:21", roles: [x] }',
      '  - { name: a, path: /b/, upstream: "http://127.0.0.1:1", roles: [] }',
      '  - { name: c, path: /c, upstream: "http://127.0.0.1:1", roles: [x], methods: [FETCH] }',
    ].join('\n'),
  );
  const r = broker(['config', 'check', '--config', 'broken.yaml'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_CONFIG_INVALID');
  for (const expected of [
    /broken\.yaml:1:40: listen\.bogus: unknown key "bogus"/,
    /broken\.yaml:3:1: colour: unknown key "colour"/,
    /broken\.yaml:5:36: routes\[0\]\.upstream: scheme "ftp" is not supported/,
    /broken\.yaml:\d+:\d+: routes\[1\]\.name: "a" is already used/,
    /broken\.yaml:\d+:\d+: routes\[1\]\.path: "\/b\/" must be a canonical prefix/,
    /broken\.yaml:\d+:\d+: routes\[1\]\.roles: empty/,
    /broken\.yaml:\d+:\d+: routes\[2\]\.methods\/?\[?0?\]?.*/,
    /tls: .*nosuchcert/,
  ]) {
    assert.match(r.stderr, expected);
  }
  const json = broker(['config', 'check', '--config', 'broken.yaml', '--json'], { cwd: dir });
  assert.equal(json.code, 2);
  assert.equal(JSON.parse(json.stdout).ok, false);
});

test('broker serve with a config from the store: curl with a client certificate gets 200; serve refuses a broken config with exit 2', async (t) => {
  const dir = tempDir(t);
  const run = (args: string[]) => broker(args, { cwd: dir });
  assert.equal(run(['pki', 'init', '--no-passphrase', '--dir', 'pki']).code, 0);
  assert.equal(run(['pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1', '--dir', 'pki']).code, 0);
  assert.equal(run(['pki', 'issue', 'acme', '--role', 'partner', '--dir', 'pki', '--out', 'acme']).code, 0);

  const upstream = createServer((req, res) => res.end(JSON.stringify({ who: req.headers['x-client-name'], url: req.url })));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => upstream.close());
  const port = (upstream.address() as AddressInfo).port;
  writeFileSync(join(dir, 'broker.yaml'), `listen: { host: 127.0.0.1, port: 0 }\nadmin: { port: 0 }\npki: { dir: ./pki }\ntls: { server: edge }\nroutes:\n  - { name: orders, path: /orders, upstream: "http://127.0.0.1:${port}", roles: [partner] }\n`);
  assert.equal(run(['config', 'check', '--config', 'broker.yaml']).code, 0);

  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8');
  const brokerPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 30_000);
    child.stderr.on('data', (d: string) => {
      err += d;
      const m = /"event":"listening".*?"port":(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  // curl runs asynchronously: the upstream lives in this process and must keep answering.
  const c = await promisify(execFile)('curl', ['-sS', '--max-time', '10', '--cacert', 'pki/ca.crt', '--cert', 'acme/acme.crt', '--key', 'acme/acme.key', `https://localhost:${brokerPort}/orders/7`], { cwd: dir, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(c.stdout), { who: 'acme', url: '/orders/7' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);

  writeFileSync(join(dir, 'bad.yaml'), 'tls: { server: edge }\nroutes: [{ name: x, path: /x, upstream: "gopher://h", roles: [a] }]\n');
  const bad = run(['serve', '--config', 'bad.yaml']);
  assert.equal(bad.code, 2);
  assert.equal(errorCode(bad.stderr), 'BRK_ERR_CONFIG_INVALID');
  assert.match(bad.stderr, /routes\[0\]\.upstream: scheme "gopher"/);
});
