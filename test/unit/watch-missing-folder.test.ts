/**
 * watchFiles and a folder that does not exist yet (the store's assertion/ before the first
 * `pki rotate assertion-key`): its appearance, and later changes inside it, are seen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.ts';
import { within } from '../helpers/within.ts';
import { watchFiles } from '../../src/tls/watch.ts';

test('a watched file in a folder created later: the folder appearing and the file changing both fire', async (t) => {
  const root = tempDir(t, 'broker-watch-');
  const dir = join(root, 'assertion');
  const file = join(dir, 'keys.json');
  const events: string[] = [];
  let wake: (() => void) | undefined;
  const next = () => new Promise<void>((resolve) => (wake = resolve));
  const w = watchFiles([file], 20, (what) => {
    events.push(what);
    wake?.();
  });
  t.after(() => w.close());
  let fired = next();
  mkdirSync(dir);
  writeFileSync(join(dir, '.keys.json.tmp'), '{}');
  renameSync(join(dir, '.keys.json.tmp'), file);
  await within(fired, 5_000, 'the folder and file appearing');
  fired = next();
  writeFileSync(join(dir, '.keys.json.tmp'), '{"v":2}');
  renameSync(join(dir, '.keys.json.tmp'), file);
  await within(fired, 5_000, 'the file changing in the new folder');
  assert.ok(events.length >= 2);
  assert.match(events.at(-1) as string, /assertion\/(keys\.json)?$/);
});
