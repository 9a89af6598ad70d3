/**
 * The README's first command, as a newcomer runs it: `broker demo` in an empty folder creates the
 * CA and identities, starts the upstream and the broker, and prints curl commands that work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, NODE, tempDir } from '../helpers/cli.ts';

function curl(cmdline: string, cwd: string): { code: number | null; stdout: string; stderr: string } {
  const args = cmdline.trim().split(/\s+/).slice(1);
  const r = spawnSync('curl', [...args, '-sS', '--max-time', '10', '-w', '\n%{http_code}'], { cwd, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('broker demo: a fresh folder gets a CA, a client and a running broker; the printed curl commands behave as printed', async (t) => {
  const dir = tempDir(t, 'broker-quickstart-');
  const child = spawn(NODE, [BIN, 'demo', '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${out}`)), 60_000);
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('refused in the TLS handshake') && /\/hello\n[\s\S]*\n\n/.test(out.split('refused in the TLS handshake')[1] ?? '')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`demo exited ${code}:\n${out}`)));
  });
  await ready;
  const lines = out.split('\n');
  const after = (label: string) => (lines[lines.findIndex((l) => l.startsWith(label)) + 1] ?? '').trim();

  const allowed = curl(after('allowed'), dir);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stdout, /\n200$/);
  assert.equal(JSON.parse(allowed.stdout.replace(/\n200$/, '')).hello, 'demo-client');

  const denied = curl(after('refused with 403'), dir);
  assert.match(denied.stdout, /"code":"BRK_ERR_ACL_DENIED"[\s\S]*\n403$/);

  const noCert = curl(after('refused in the TLS handshake'), dir);
  assert.notEqual(noCert.code, 0, 'curl without a certificate must fail');
  assert.match(noCert.stdout, /000$/);

  assert.ok(existsSync(join(dir, 'demo', 'pki', 'inventory.json')));
  assert.ok(existsSync(join(dir, 'demo', 'client', 'demo-client.p12')));
  assert.ok(existsSync(join(dir, 'demo', 'broker.yaml')));

  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
