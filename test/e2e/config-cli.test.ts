/**
 * The built CLI on configs and ports as an operator meets them: `config check` points at the line
 * and column with a suggestion, `--json` has the documented shape, `config print` fills in the
 * defaults and hides secrets, and `broker demo` (what `npm start` runs) on a taken port says so
 * and exits 2 instead of hanging.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parse } from 'yaml';
import { broker, brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';

const BROKEN = ['tls: { server: broker }', 'listen: { host: 127.0.0.1, port: 8443 }', 'routse:', '  - { name: a, path: /a, upstream: "http://127.0.0.1:1", roles: [x] }', ''].join('\n');

test('config check: a misspelt key gets its line, column and suggestion; --json is {ok, problems: [{path, line, column, message}]}', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'broker.yaml'), BROKEN);
  const r = broker(['config', 'check', '--config', 'broker.yaml'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_CONFIG_INVALID');
  assert.match(r.stderr, /^broker\.yaml:3:1: routse: unknown key "routse" \(did you mean "routes"\?\)$/m);

  const j = broker(['config', 'check', '--config', 'broker.yaml', '--json'], { cwd: dir });
  assert.equal(j.code, 2);
  const out = JSON.parse(j.stdout) as { ok: boolean; problems: Array<Record<string, unknown>> };
  assert.equal(out.ok, false);
  assert.ok(out.problems.length >= 1);
  for (const p of out.problems) assert.deepEqual(Object.keys(p).sort(), ['column', 'line', 'message', 'path']);
  assert.deepEqual(out.problems.find((p) => p.path === 'routse'), { path: 'routse', line: 3, column: 1, message: 'unknown key "routse" (did you mean "routes"?)' });
});

test('config print: the effective config with its defaults, secrets written in it redacted', (t) => {
  const dir = tempDir(t);
  writeFileSync(
    join(dir, 'broker.yaml'),
    [
      'tls: { server: broker }',
      'admin: { tokenFile: admin.token }',
      'alerts: { webhook: "https://hooks.example/services/T0/B0/hook-secret" }',
      'tracing: { otlp: { endpoint: "http://127.0.0.1:4318/v1/traces", headers: { x-api-key: collector-secret } } }',
      'routes:',
      '  - { name: a, path: /a, upstream: "http://127.0.0.1:1", roles: [x] }',
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'admin.token'), 'admin-token-secret\n');
  const r = broker(['config', 'print', '--config', 'broker.yaml'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const printed = parse(r.stdout) as Record<string, Record<string, unknown>>;
  assert.equal(printed.tls?.handshakeTimeout, '10s', 'a default filled in');
  assert.equal(printed.listen?.port, 8443);
  assert.equal(printed.admin?.tokenFile, join(dir, 'admin.token'), 'paths resolved against the config');
  for (const secret of ['hook-secret', 'collector-secret', 'admin-token-secret']) assert.ok(!r.stdout.includes(secret), `${secret} not printed`);
  assert.match(r.stdout, /<redacted>/);

  const j = broker(['config', 'print', '--config', 'broker.yaml', '--json'], { cwd: dir });
  assert.equal(j.code, 0);
  assert.equal((JSON.parse(j.stdout) as { rateLimit: { store: string } }).rateLimit.store, 'memory');

  writeFileSync(join(dir, 'bad.yaml'), BROKEN);
  const bad = broker(['config', 'print', '--config', 'bad.yaml'], { cwd: dir });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^bad\.yaml:3:1: routse: unknown key/m);
  assert.equal(bad.stdout, '');
});

test('broker demo (npm start) on a taken port: BRK_ERR_LISTEN and exit 2, nothing left running', async (t) => {
  const dir = tempDir(t);
  const holder = createServer();
  await new Promise<void>((ok) => holder.listen(0, '127.0.0.1', ok));
  t.after(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  // timeoutMs bounds the wait: a hang ends as a kill (code null), which fails the test.
  const r = await brokerAsync(['demo', '--dir', 'demo', '--port', String(port)], { cwd: dir, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_LISTEN');
  assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: EADDRINUSE`));
  assert.doesNotMatch(r.stderr, /BRK_ERR_INTERNAL|\n\s+at /, 'no stack trace');
  assert.equal(existsSync(join(dir, 'demo')), false, 'nothing made before the port was known free');

  const usage = broker(['demo', '--dir', 'demo', '--port', 'eighty'], { cwd: dir });
  assert.equal(usage.code, 2);
  assert.equal(errorCode(usage.stderr), 'BRK_ERR_USAGE');
});

test('broker serve on a taken port: the same BRK_ERR_LISTEN and exit 2', async (t) => {
  const dir = tempDir(t);
  assert.equal(broker(['pki', 'init', '--no-passphrase', '--dir', 'pki'], { cwd: dir }).code, 0);
  assert.equal(broker(['pki', 'server', 'edge', '--dns', 'localhost', '--dir', 'pki'], { cwd: dir }).code, 0);
  const holder = createServer();
  await new Promise<void>((ok) => holder.listen(0, '127.0.0.1', ok));
  t.after(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  writeFileSync(join(dir, 'broker.yaml'), `listen: { host: 127.0.0.1, port: ${port} }\nadmin: { port: 0 }\ntls: { server: edge }\nroutes: [{ name: a, path: /a, upstream: "http://127.0.0.1:1", roles: [x] }]\n`);
  const r = await brokerAsync(['serve', '--config', 'broker.yaml'], { cwd: dir, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(errorCode(r.stderr), 'BRK_ERR_LISTEN');
  assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
});
