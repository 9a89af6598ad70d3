/**
 * The broker as an operator installs it, outside the clone: the tarball of `npm pack` installed
 * with `npm install -g` into a temporary prefix, and the single executable of `npm run build:sea`.
 * Each runs `pki init`, `serve` and a request end to end, with a decoy `node` first on PATH: the
 * installed command must use the Node 24 it brings, never the machine's.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT, runAsync, tempDir } from '../helpers/cli.ts';
import { request } from '../helpers/broker.ts';
import { plainUpstream } from '../helpers/serve.ts';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return runAsync(cmd, args, { ...o, timeoutMs: o.timeoutMs ?? 60_000 });
}

/** PATH with a `node` first that is not the one to use: it fails loudly if the command reaches for it. */
function decoyPath(t: TestContext): string {
  const bin = tempDir(t, 'broker-decoy-');
  writeFileSync(join(bin, 'node'), '#!/bin/sh\necho "the decoy node on PATH was run" >&2\nexit 97\n', { mode: 0o755 });
  return `${bin}:/usr/local/bin:/usr/bin:/bin`;
}

/** `pki init`, a server certificate and a client identity, `serve`, one request through it, SIGTERM. */
async function endToEnd(t: TestContext, cmd: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const dir = tempDir(t, 'broker-installed-');
  const [exe, ...pre] = cmd as [string, ...string[]];
  const broker = async (...args: string[]) => {
    const r = await run(exe, [...pre, ...args], { cwd: dir, env });
    assert.equal(r.code, 0, `broker ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  await broker('pki', 'init', '--dir', 'pki', '--no-passphrase', '--trust-domain', 'install.test');
  await broker('pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1', '--dir', 'pki');
  await broker('pki', 'issue', 'partner', '--role', 'orders', '--out', 'out', '--dir', 'pki');
  const upstream = await plainUpstream(t, 'through the installed broker');
  writeFileSync(join(dir, 'broker.yaml'), ['listen: { host: 127.0.0.1, port: 0 }', 'admin: { enabled: false }', 'pki: { dir: ./pki }', 'tls: { server: localhost }', 'routes:', `  - { name: orders, path: /orders, upstream: "${upstream}", roles: [orders] }`, ''].join('\n'));

  const child = spawn(exe, [...pre, 'serve', '--config', 'broker.yaml'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 30_000);
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      const m = /"event":"listening".*?"port":(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stdout.resume();
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
  });
  const tls = { cert: readFileSync(join(dir, 'out', 'partner.crt'), 'utf8'), key: readFileSync(join(dir, 'out', 'partner.key'), 'utf8') };
  const res = await request(port, { tls, ca: readFileSync(join(dir, 'out', 'ca.crt'), 'utf8'), path: '/orders/42' });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().answer, 'through the installed broker');
  // the launcher execs Node, so the signal reaches the broker itself and it drains and exits 0
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
}

test('npm pack + npm install -g into a temporary prefix: the tarball holds only dist and the launcher, and `broker` runs on its own Node 24', async (t) => {
  const npm = await run('npm', ['--version']).catch(() => undefined);
  if (npm?.code !== 0) return t.skip('npm is not on PATH');
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) assert.fail('dist/ is not built: run "npm run build" first');
  const tmp = tempDir(t, 'broker-pack-');
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT });
  assert.equal(packed.code, 0, packed.stderr);
  const [info] = JSON.parse(packed.stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
  assert.equal(info?.name, '@mtls-broker/broker', 'a scoped name: `npx broker` must never find somebody else\'s package');
  const paths = info.files.map((f) => f.path);
  assert.ok(paths.includes('bin/broker') && paths.includes('dist/main.js'), paths.join(' '));
  const stray = paths.filter((p) => !/^(dist\/.+\.js|bin\/broker|package\.json|README\.md|LICENSE)$/.test(p));
  assert.deepEqual(stray, [], 'no tests, sources, source maps or PKI material in the package');

  // installing needs the dependencies: from the npm cache if it has them all, else from the registry
  const prefix = join(tmp, 'prefix');
  const install = (mode: string) => run('npm', ['install', '-g', '--prefix', prefix, join(tmp, info.filename), mode, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tmp, timeoutMs: 180_000 });
  let installed = await install('--offline');
  if (installed.code !== 0 && /ENOTCACHED/.test(installed.stderr)) {
    const ping = await run('npm', ['ping'], { timeoutMs: 15_000 });
    if (ping.code !== 0) return t.skip('the npm cache lacks dependencies of the package and the npm registry is unreachable');
    installed = await install('--prefer-offline');
  }
  assert.equal(installed.code, 0, installed.stderr);
  const bin = join(prefix, 'bin', 'broker');
  assert.ok(existsSync(bin), `${bin} after npm install -g`);

  const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${decoyPath(t)}` };
  const version = await run('broker', ['--version'], { env });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  await endToEnd(t, ['broker'], env);
});

test('single executable: build:sea packs dist and its dependencies; its main script runs the broker from the packed copy', async (t) => {
  const tmp = tempDir(t, 'broker-sea-');
  const out = join(tmp, 'broker');
  const built = await run(NODE, [join(ROOT, 'scripts', 'sea', 'build.ts'), '--out', out], { cwd: ROOT, timeoutMs: 120_000 });
  const blob = join(tmp, '.sea-work', 'broker.blob');
  assert.ok(existsSync(blob), `no SEA blob: ${built.stderr}`);
  const env = { ...process.env, PATH: decoyPath(t), BROKER_SEA_CACHE: join(tmp, 'cache') };
  // the main script as Node runs it from the executable, here as a plain script reading the same archive
  await endToEnd(t, [NODE, join(tmp, '.sea-work', 'main.cjs')], env);

  await t.test('the executable itself', async (t) => {
    if (!existsSync(out)) return t.skip(`Node 24 needs postject to inject the blob (${built.stderr.trim().split('\n').pop()})`);
    await endToEnd(t, [out], env);
  });
});
