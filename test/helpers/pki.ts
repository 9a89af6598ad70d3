/** A CA store made through the CLI for tests: passphrase file, init, and common paths. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { broker, tempDir, type CliResult } from './cli.ts';

export interface TestCa {
  root: string;
  dir: string;
  pass: string;
  run(args: string[], o?: { env?: Record<string, string | undefined>; input?: string }): CliResult;
}

export const PASSPHRASE = 'correct horse battery staple';

export function makeCa(t: TestContext, o: { initArgs?: string[] } = {}): TestCa {
  const root = tempDir(t);
  const dir = join(root, 'pki');
  const pass = join(root, 'ca.pass');
  writeFileSync(pass, `${PASSPHRASE}\n`, { mode: 0o600 });
  const run = (args: string[], ro: { env?: Record<string, string | undefined>; input?: string } = {}) => broker([...args, '--dir', dir], { cwd: root, ...ro });
  const init = run(['pki', 'init', '--passphrase-file', pass, '--trust-domain', 'test.example', ...(o.initArgs ?? [])]);
  if (init.code !== 0) throw new Error(`pki init failed: ${init.stderr}`);
  return { root, dir, pass, run };
}
