/**
 * The console's lift-ban with `broker serve --workers 2`: the bans live in the primary's store and
 * every worker holds a copy; a lift asked of whichever worker answers the admin port reaches the
 * primary and, from it, both workers, so the address is admitted on every new connection at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE, cliStore, tempDir } from '../helpers/cli.ts';
import { request } from '../helpers/broker.ts';
import { httpGet, httpRequest } from '../helpers/admin.ts';

const FAR = '127.0.0.5';

test('serve --workers 2: a ban lifted from the console is lifted on both workers', async (t) => {
  const dir = tempDir(t);
  const { ca, ids } = cliStore(dir, [['acme', 'partner'], ['mallory', 'other']]);
  const acme = ids.acme!;
  const mallory = ids.mallory!;

  const upstream = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  writeFileSync(
    join(dir, 'broker.yaml'),
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'pki: { dir: ./pki }',
      'tls: { server: edge }',
      'bans: { enabled: true, window: 1m, deniedRequests: 2, failedHandshakes: 1000, duration: 1h }',
      'routes:',
      `  - { name: orders, path: /orders, upstream: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}", roles: [partner] }`,
    ].join('\n'),
  );
  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml', '--workers', '2'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: 'rr' } });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const listening = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`two workers did not start:\n${stderr}`)), 60_000);
    child.stderr.on('data', (d: string) => {
      stderr += d;
      const lines = stderr.split('\n').flatMap((l) => (l.startsWith('{') && l.includes('"listening"') ? [JSON.parse(l) as Record<string, unknown>] : []));
      if (lines.length === 2) {
        clearTimeout(timer);
        resolve(lines);
      }
    });
    child.on('exit', () => (clearTimeout(timer), reject(new Error(`serve exited early:\n${stderr}`))));
  });
  const port = Number(listening[0]?.port);
  const adminPort = Number(listening[0]?.adminPort);

  for (let i = 0; i < 2; i++) assert.equal((await request(port, { id: mallory, ca, path: '/orders/x', localAddress: FAR })).status, 403);
  // The ban is broadcast by the primary; wait until each worker (round robin over fresh connections) refuses the address.
  const deadline = Date.now() + 10_000;
  let refusedInARow = 0;
  while (refusedInARow < 4) {
    assert.ok(Date.now() < deadline, 'the ban did not reach both workers within 10 s');
    refusedInARow = (await request(port, { id: acme, ca, path: '/orders/1', localAddress: FAR }).then(() => false, () => true)) ? refusedInARow + 1 : 0;
  }
  const live = await httpGet(adminPort, '/api/console/live');
  assert.deepEqual((live.json().bans as Array<{ key: string }>).map((b) => b.key), [FAR]);

  const lift = await httpRequest(adminPort, { method: 'POST', path: '/api/console/actions/lift-ban', headers: { 'x-broker-admin': '1', 'content-type': 'application/json' }, body: JSON.stringify({ key: FAR }) });
  assert.equal(lift.status, 200, lift.text);
  // The primary tells both workers; a connection may still reach a worker before its message does, but not for long.
  const until = Date.now() + 10_000;
  let admittedInARow = 0;
  while (admittedInARow < 6) {
    assert.ok(Date.now() < until, 'the lift did not reach both workers within 10 s');
    const status = await request(port, { id: acme, ca, path: '/orders/2', localAddress: FAR }).then((r) => r.status, () => 0);
    admittedInARow = status === 200 ? admittedInARow + 1 : 0;
  }
  for (let i = 0; i < 2; i++) assert.deepEqual((await httpGet(adminPort, '/api/console/live')).json().bans, [], 'neither worker lists the ban');
  // the identity's bucket is the primary's: either worker reads it
  for (let i = 0; i < 2; i++) {
    const partners = (await httpGet(adminPort, '/api/console/partners')).json().partners as Array<{ name: string; rateLimit: { limit: number } | null }>;
    assert.equal(partners.find((p) => p.name === 'acme')?.rateLimit?.limit, 60, JSON.stringify(partners));
  }
  child.kill('SIGTERM');
});
