/** Started as root (to bind a low port), `broker serve` switches to the configured user right after binding. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE, broker, tempDir } from '../helpers/cli.ts';

/** A free port below 1024 (binding it needs root), or undefined. */
async function freeLowPort(): Promise<number | undefined> {
  for (let port = 900; port < 1000; port++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  return undefined;
}

test('serve as root on a privileged port, then run as "nobody"', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root (CI runs as root)');
  const port = await freeLowPort();
  if (port === undefined) return t.skip('no free port below 1024');
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  assert.equal(broker(['pki', 'init', '--no-passphrase', '--dir', 'pki'], { cwd: dir }).code, 0);
  assert.equal(broker(['pki', 'server', 'edge', '--dns', 'localhost', '--dir', 'pki'], { cwd: dir }).code, 0);
  writeFileSync(join(dir, 'broker.yaml'), `listen: { host: 127.0.0.1, port: ${port} }\nadmin: { enabled: false }\nuser: nobody\ngroup: nogroup\nreload: { watch: false }\npki: { dir: ./pki }\ntls: { server: edge }\nroutes: []\n`);
  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not start: ${out}`)), 30_000);
    const check = () => {
      if (out.includes('"event":"listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  assert.match(out, /"event":"privileges","user":"nobody"/);
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const uid = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
  assert.ok(uid && uid[1] !== '0' && uid[2] !== '0', `still root: ${status.split('\n').find((l) => l.startsWith('Uid'))}`);
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
