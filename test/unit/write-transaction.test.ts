/** WriteTransaction: every file of a change is published, or none is, and no temp file is left. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { isBrokerError, BrokerError } from '../../src/errors.ts';
import { PRIVATE_MODE, PUBLIC_MODE, WriteTransaction } from '../../src/pki/files.ts';

function workDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-wtx-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under `dir` with its content, by relative path. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const full = join(entry.parentPath, entry.name);
      out[relative(dir, full)] = readFileSync(full, 'utf8');
    }
  }
  return out;
}

const isTemp = (name: string) => name.endsWith('.tmp');

test('commit publishes every file with its bytes and mode, creating folders as needed', (t) => {
  const dir = workDir(t);
  writeFileSync(join(dir, 'existing.json'), 'old\n');
  new WriteTransaction()
    .write(join(dir, 'existing.json'), 'new\n', PRIVATE_MODE)
    .write(join(dir, 'nested', 'deeper', 'cert.pem'), 'PEM\n', PUBLIC_MODE)
    .write(join(dir, 'bytes.bin'), new Uint8Array([0, 1, 2, 255]), PRIVATE_MODE)
    .commit();
  assert.deepEqual(tree(dir), { 'existing.json': 'new\n', 'nested/deeper/cert.pem': 'PEM\n', 'bytes.bin': '\u0000\u0001\u0002\ufffd' });
  assert.deepEqual([...readFileSync(join(dir, 'bytes.bin'))], [0, 1, 2, 255]);
  assert.equal(statSync(join(dir, 'existing.json')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'nested', 'deeper', 'cert.pem')).mode & 0o777, 0o644);
  assert.equal(statSync(join(dir, 'nested')).mode & 0o777, 0o700);
});

test('beforePublish runs once everything is staged and before anything is renamed into place', (t) => {
  const dir = workDir(t);
  writeFileSync(join(dir, 'a'), 'old a');
  let seen: Record<string, string> | undefined;
  new WriteTransaction()
    .write(join(dir, 'a'), 'new a')
    .write(join(dir, 'b'), 'new b')
    .commit(() => {
      seen = tree(dir);
    });
  const staged = Object.entries(seen ?? {});
  assert.deepEqual(staged.filter(([name]) => !isTemp(name)), [['a', 'old a']], 'targets still hold the old state');
  assert.deepEqual(staged.filter(([name]) => isTemp(name)).map(([, body]) => body).sort(), ['new a', 'new b'], 'both files are staged');
  assert.deepEqual(tree(dir), { a: 'new a', b: 'new b' });
});

// The target whose parent is a regular file, so that staging it fails: first, middle or last.
for (const position of [0, 1, 2]) {
  test(`a staging failure (target ${position + 1} of 3 cannot be written) publishes nothing and leaves no temp file`, (t) => {
    const dir = workDir(t);
    mkdirSync(join(dir, 'store'));
    writeFileSync(join(dir, 'store', 'inventory.json'), 'old inventory\n');
    writeFileSync(join(dir, 'blocker'), 'a regular file where a folder is needed\n');
    const before = tree(dir);

    const good = [join(dir, 'store', 'inventory.json'), join(dir, 'store', 'crl', 'new.crl')];
    const targets = good.toSpliced(position, 0, join(dir, 'blocker', 'cert.pem'));
    const tx = new WriteTransaction();
    for (const target of targets) tx.write(target, `new ${target}\n`);
    let published = false;
    assert.throws(
      () => tx.commit(() => (published = true)),
      (err: unknown) => isBrokerError(err, 'BRK_ERR_PKI_FILE_WRITE') && /blocker/.test(err.message),
    );
    assert.equal(published, false, 'beforePublish (the audit append) did not run');
    assert.deepEqual(tree(dir), before, 'no target was written, the old inventory is intact, no temp file is left');
    assert.equal(existsSync(join(dir, 'store', 'crl', 'new.crl')), false);
  });
}

test('a failing beforePublish publishes nothing, leaves no temp file, and its coded error passes through', (t) => {
  const dir = workDir(t);
  writeFileSync(join(dir, 'inventory.json'), 'old\n');
  const before = tree(dir);
  const tx = new WriteTransaction().write(join(dir, 'inventory.json'), 'new\n').write(join(dir, 'extra.pem'), 'x\n');
  assert.throws(
    () => tx.commit(() => {
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', 'cannot append to audit.log: ENOSPC');
    }),
    (err: unknown) => isBrokerError(err, 'BRK_ERR_PKI_FILE_WRITE') && err.message.includes('audit.log'),
  );
  assert.deepEqual(tree(dir), before);
});

test('a foreign error from beforePublish is wrapped as BRK_ERR_PKI_FILE_WRITE with its cause', (t) => {
  const dir = workDir(t);
  const boom = Object.assign(new Error('disk on fire'), { code: 'EIO' });
  const tx = new WriteTransaction().write(join(dir, 'a'), 'a');
  assert.throws(
    () => tx.commit(() => {
      throw boom;
    }),
    (err: unknown) => isBrokerError(err, 'BRK_ERR_PKI_FILE_WRITE') && err.cause === boom && err.message.includes('EIO'),
  );
  assert.deepEqual(tree(dir), {});
});

test('an empty transaction is a no-op that still runs beforePublish', (t) => {
  const dir = workDir(t);
  let ran = 0;
  new WriteTransaction().commit(() => void ran++);
  assert.equal(ran, 1);
  assert.deepEqual(tree(dir), {});
});
