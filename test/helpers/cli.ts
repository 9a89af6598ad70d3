/** Runs the built `broker` binary (dist/main.js) on the project's Node 24, the way a user would. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const NODE = process.execPath;
export const BIN = join(ROOT, 'dist', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string;
  timeoutMs?: number;
}

function childEnv(extra: CliOptions['env'] = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BROKER_CA_PASSPHRASE: undefined, BROKER_ROOT_CA_PASSPHRASE: undefined, BROKER_PKI_DIR: undefined, BROKER_P12_PASSWORD: undefined, ...extra };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env;
}

export function broker(args: string[], o: CliOptions = {}): CliResult {
  const r = spawnSync(NODE, [BIN, ...args], { cwd: o.cwd, env: childEnv(o.env), input: o.input ?? '', encoding: 'utf8', timeout: o.timeoutMs ?? 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs any command without blocking the event loop: its exit code and output (killed after `timeoutMs`). */
export function runAsync(cmd: string, args: string[], o: { cwd?: string | undefined; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], timeout: o.timeoutMs ?? 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.on('error', () => {}).end(o.input ?? '');
  });
}

/** The broker CLI without blocking the event loop: for running many at once. */
export function brokerAsync(args: string[], o: CliOptions = {}): Promise<CliResult> {
  return runAsync(NODE, [BIN, ...args], { cwd: o.cwd, env: childEnv(o.env), ...(o.input !== undefined ? { input: o.input } : {}), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
}

/** Anything that runs cleanups at its end: a TestContext, or node:test's top-level `after`. */
export type Cleanup = Pick<TestContext, 'after'>;

/** A fresh temporary folder removed after the test. */
export function tempDir(t: Cleanup, prefix = 'broker-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `openssl ...`; returns status and output, never throws on a non-zero exit. */
export function openssl(args: string[], o: { cwd?: string; input?: string } = {}): CliResult {
  const r = spawnSync('openssl', args, { cwd: o.cwd, input: o.input ?? '', encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error code on the first `error BRK_ERR_...:` line of stderr. */
export function errorCode(stderr: string): string | undefined {
  return /^error (BRK_ERR_[A-Z0-9_]+):/m.exec(stderr)?.[1];
}

/**
 * A CA store made with the CLI in `dir`/pki (no passphrase): a server certificate "edge" for
 * localhost and 127.0.0.1, and one client per [name, role] written to `dir`/NAME. Returns the CA
 * certificate and each client's certificate and key.
 */
export function cliStore(dir: string, clients: ReadonlyArray<readonly [string, string]>): { ca: string; ids: Record<string, { cert: string; key: string; serial: string }> } {
  const run = (args: string[]) => {
    const r = broker(args, { cwd: dir });
    if (r.code !== 0) throw new Error(`broker ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  };
  run(['pki', 'init', '--no-passphrase', '--dir', 'pki']);
  run(['pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1', '--dir', 'pki']);
  const ids: Record<string, { cert: string; key: string; serial: string }> = {};
  for (const [name, role] of clients) {
    run(['pki', 'issue', name, '--role', role, '--dir', 'pki', '--out', name]);
    ids[name] = { cert: readFileSync(join(dir, name, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, name, `${name}.key`), 'utf8'), serial: '' };
  }
  return { ca: readFileSync(join(dir, 'pki', 'ca.crt'), 'utf8'), ids };
}
