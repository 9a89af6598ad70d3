/**
 * The built `broker serve` picks up `broker pki rotate assertion-key` by itself: the store watcher
 * sees assertion/keys.json change, the reload builds a generation with the new signer, and the
 * JWKS on the admin listener publishes both keys during the overlap.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { decodeProtectedHeader } from 'jose';
import { BIN, NODE, brokerAsync, tempDir } from '../helpers/cli.ts';
import { request } from '../helpers/broker.ts';
import { httpGet } from '../helpers/admin.ts';
import { eventually, within } from '../helpers/within.ts';

async function upstream(t: TestContext): Promise<number> {
  const server = createServer((req, res) => res.end(String(req.headers['x-client-jwt'] ?? '')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** `broker serve`; resolves with its ports once it logs the listening line. Killed after the test. */
async function serve(t: TestContext, dir: string): Promise<{ port: number; adminPort: number; output: () => string }> {
  // run from another folder: relative paths in the config (pki.dir, assertion.jwksFile) are the config's
  const child = spawn(NODE, [BIN, 'serve', '--config', join(dir, 'broker.yaml')], { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  let out = '';
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    for (const s of [child.stdout, child.stderr]) {
      s.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        for (const line of out.split('\n')) if (line.startsWith('{') && line.includes('"listening"')) resolve(JSON.parse(line) as Record<string, unknown>);
      });
    }
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out.slice(-2000)}`)));
  });
  const l = await within(listening, 30_000, 'the listening line');
  return { port: Number(l.port), adminPort: Number(l.adminPort), output: () => out };
}

test('serve reloads the assertion key after "pki rotate assertion-key" (file watching) and publishes both keys during the overlap', async (t) => {
  const dir = tempDir(t);
  const run = async (...args: string[]) => {
    const r = await brokerAsync([...args, '--dir', 'pki'], { cwd: dir });
    assert.equal(r.code, 0, `broker ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  await run('pki', 'init', '--no-passphrase');
  await run('pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1');
  await run('pki', 'issue', 'alice', '--role', 'partner', '--out', 'alice');
  const up = await upstream(t);
  writeFileSync(join(dir, 'broker.yaml'), [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { port: 0 }',
    'pki: { dir: ./pki }',
    'tls: { server: edge }',
    'reload: { watch: true, debounce: 100ms }',
    'assertion: { jwksFile: jwks.json }',
    `routes:`,
    `  - { name: orders, path: /orders, upstream: "http://127.0.0.1:${up}", roles: [partner], identity: [headers, jwt] }`,
  ].join('\n'));
  const b = await serve(t, dir);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const alice = { cert: read('alice/alice.crt'), key: read('alice/alice.key'), serial: '' };
  const kidNow = async () => {
    const res = await request(b.port, { id: alice, ca: read('pki/ca.crt'), path: '/orders' });
    assert.equal(res.status, 200);
    return decodeProtectedHeader(res.text).kid;
  };
  const first = await kidNow();
  assert.equal(first, JSON.parse(read('pki/assertion/keys.json')).current);
  assert.deepEqual(JSON.parse(read('jwks.json')).keys.map((k: { kid: string }) => k.kid), [first]);

  const rot = JSON.parse((await run('pki', 'rotate', 'assertion-key', '--publish-ahead', '0', '--json')).stdout) as { kid: string };
  await eventually(async () => (await kidNow()) === rot.kid, `tokens signed with the new key ${rot.kid}; output:\n${b.output().slice(-2000)}`, 20_000, 100);
  const jwks = (await httpGet(b.adminPort, '/.well-known/jwks.json')).json().keys as Array<{ kid: string }>;
  assert.deepEqual(jwks.map((k) => k.kid), [rot.kid, first]);
  assert.deepEqual(JSON.parse(read('jwks.json')).keys.map((k: { kid: string }) => k.kid), [rot.kid, first]);
  assert.match(b.output(), /"trigger":"file change: [^"]*assertion\/keys\.json"/);
});
