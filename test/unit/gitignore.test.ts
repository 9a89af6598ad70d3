/**
 * After the quick tour and `npm start`, `git add -A` must not pick up a key, a passphrase, a
 * password, a token, a hand-out or a CA store. Asked of git itself, in a scratch repository that
 * holds only the project's .gitignore (no global excludes), so that what the project ships decides.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

/** The files among `paths` that git would ignore. */
function ignored(t: { after(fn: () => void): void }, paths: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'broker-gitignore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => spawnSync('git', ['-c', 'core.excludesFile=/dev/null', ...args], { cwd: dir, encoding: 'utf8', input: paths.join('\n'), timeout: 30_000 });
  assert.equal(git('init', '-q').status, 0);
  copyFileSync(join(ROOT, '.gitignore'), join(dir, '.gitignore'));
  const r = git('check-ignore', '--no-index', '--stdin');
  assert.ok(r.status === 0 || r.status === 1, r.stderr); // 1: none ignored
  return r.stdout.split('\n').filter(Boolean);
}

test('what the quick tour and npm start leave behind is ignored', (t) => {
  const secrets = [
    'ca.pass',
    'redis.pass',
    'admin.token',
    'pki/ca.key',
    'pki/keys.json',
    'pki/servers/broker.key',
    'handout/acme-billing.key',
    'handout/acme-billing.crt',
    'handout/acme-billing.p12',
    'handout/acme-billing.p12.pass',
    'handout/ca.crt',
    'kits/initech/initech.token',
    'kits/initech/README.md',
    'demo/broker.yaml',
    'demo/pki/root/root.key',
    'demo/client/demo-client.key',
    'ops/partner.p12',
    'ops/partner.pfx',
  ];
  assert.deepEqual(ignored(t, secrets), secrets);
});

test('the project\'s own files are not ignored', (t) => {
  const source = ['broker.yaml', 'README.md', 'pki/README.md', 'src/pki/store.ts', 'src/cli/demo.ts', 'src/cli/pki/handout.ts', 'test/unit/gitignore.test.ts', 'deploy/broker.yaml', 'package.json'];
  assert.deepEqual(ignored(t, source), []);
});
