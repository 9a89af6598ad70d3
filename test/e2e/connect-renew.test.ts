/**
 * `broker connect` renews its own short-lived certificate inside the window and swaps to it
 * without dropping a request: requests run back to back through the built CLI while it renews
 * twice, every one answered 200, and the broker sees the newest certificate afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { BIN, NODE, tempDir } from '../helpers/cli.ts';
import { makePki, startBroker, startUpstream } from '../helpers/broker.ts';
import { eventually } from '../helpers/within.ts';

type Line = Record<string, unknown>;

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, timeout: 15_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('connect with a short-lived certificate keeps serving across two automatic renewals with zero failures', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, {
    listenCertOptional: { host: '127.0.0.1', port: 0 },
    routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['partner'] }],
    enrollment: { enabled: true, certTtl: '60s', renewAfter: 0.5 },
  });
  // a 60 s certificate (valid from a minute back: a 2-minute lifetime, half of it gone already)
  const id = await pki.issue('alice', ['partner'], { ttlMs: 60_000 });
  const dir = tempDir(t, 'broker-connect-renew-');
  const files = { cert: join(dir, 'alice.crt'), key: join(dir, 'alice.key'), ca: join(dir, 'ca.crt') };
  writeFileSync(files.cert, id.cert);
  writeFileSync(files.key, id.key, { mode: 0o600 });
  writeFileSync(files.ca, pki.ca);

  const child = spawn(NODE, [BIN, 'connect', '--listen', '127.0.0.1:0', '--url', `https://localhost:${b.port}`, '--cert', files.cert, '--key', files.key, '--ca', files.ca, '--renew-at', '0.55'], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const lines: Line[] = [];
  let partial = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) if (text.startsWith('{')) lines.push(JSON.parse(text) as Line);
  });
  await eventually(() => lines.some((l) => l.event === 'listening'), 'connect listening', 30_000);
  const port = Number(lines.find((l) => l.event === 'listening')?.port);

  const renewed = () => lines.filter((l) => l.event === 'renew' && l.outcome === 'ok');
  const statuses: number[] = [];
  let failures = 0;
  // requests back to back until two renewals happened (bounded: each renewal is due ~6 s after the last)
  await eventually(
    async () => {
      try {
        statuses.push(await get(port, `/api/n${statuses.length}`));
      } catch {
        failures++;
      }
      return renewed().length >= 2;
    },
    'two automatic renewals',
    90_000,
    0,
  );
  // a few more on the newest certificate
  for (let i = 0; i < 5; i++) statuses.push(await get(port, `/api/after${i}`));
  assert.equal(failures, 0);
  assert.deepEqual(statuses.filter((s) => s !== 200), [], `every request answered 200 (${statuses.length} requests)`);
  assert.ok(statuses.length > 10);

  const last = renewed().at(-1) as Line;
  const onDisk = new X509Certificate(readFileSync(files.cert, 'utf8'));
  const serials = new Set(renewed().map((l) => l.serial));
  assert.equal(serials.size, 2, 'two distinct renewed certificates');
  assert.ok(serials.has(onDisk.serialNumber.toLowerCase()), 'the files hold a renewed certificate');
  await eventually(() => lines.some((l) => l.event === 'reload' && l.outcome === 'ok' && l.serial === last.serial), 'the connector swapped to the newest certificate', 10_000);
  const before = up.seen.length;
  assert.equal(await get(port, '/api/final'), 200);
  assert.equal(up.seen.length, before + 1);
  // the broker saw the renewed certificates on the wire
  const seenSerials = new Set(b.logs.of('auth').filter((l) => l.event === 'handshake' && l.outcome === 'ok' && l.principal === 'alice').map((l) => l.serial));
  for (const s of serials) assert.ok(seenSerials.has(s), `the broker saw serial ${String(s)}`);
});
