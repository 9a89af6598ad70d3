/** A CA store made through the CLI for tests: passphrase file, init, common paths and checks. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after } from 'node:test';
import { broker, openssl, tempDir, type CliResult, type Cleanup } from './cli.ts';
import type { CertRecord } from '../../src/pki/inventory.ts';
import type { IssuedFiles } from '../../src/pki/issue.ts';
import type { ListRow } from '../../src/pki/inspect.ts';

export interface TestCa {
  root: string;
  dir: string;
  pass: string;
  /** `broker ARGS --dir DIR`. */
  run(args: string[], o?: { env?: Record<string, string | undefined>; input?: string }): CliResult;
  /** `broker ARGS --dir DIR --passphrase-file PASS`: for the commands that sign. */
  signing(args: string[], o?: { env?: Record<string, string | undefined>; input?: string }): CliResult;
  /** Files of the store. */
  file(...parts: string[]): string;
}

export const PASSPHRASE = 'correct horse battery staple';

export function makeCa(t: Cleanup, o: { initArgs?: string[]; noPassphrase?: boolean; root?: string } = {}): TestCa {
  const root = o.root ?? tempDir(t);
  const dir = join(root, 'pki');
  const pass = join(root, 'ca.pass');
  writeFileSync(pass, `${PASSPHRASE}\n`, { mode: 0o600 });
  const run = (args: string[], ro: { env?: Record<string, string | undefined>; input?: string } = {}) => broker([...args, '--dir', dir], { cwd: root, ...ro });
  const secret = o.noPassphrase ? ['--no-passphrase'] : ['--passphrase-file', pass];
  const init = run(['pki', 'init', ...secret, '--trust-domain', 'test.example', ...(o.initArgs ?? [])]);
  if (init.code !== 0) throw new Error(`pki init failed: ${init.stderr}`);
  return {
    root,
    dir,
    pass,
    run,
    signing: (args, ro) => run([...args, '--passphrase-file', pass], ro),
    file: (...parts) => join(dir, ...parts),
  };
}

/**
 * One CA for a whole test file: made on first use, removed when the file's tests are done.
 * For tests that do not disturb each other (distinct names, no tampering). Call it at the top
 * level of the file: the cleanup hook must be registered there, not inside the first test.
 */
export function sharedCa(o: { initArgs?: string[]; noPassphrase?: boolean } = {}): () => TestCa {
  let ca: TestCa | undefined;
  const cleanups: Array<() => unknown> = [];
  after(async () => {
    for (const fn of cleanups) await fn();
  });
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) } as Cleanup;
  return () => (ca ??= makeCa(scope, o));
}

/** stdout of a successful `--json` command, parsed. */
export function json<T = unknown>(r: CliResult): T {
  assert.equal(r.code, 0, `expected exit 0, got ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The fields `issue`, `sign`, `renew` and `server` print with --json. */
export type IssuedJson = CertRecord & { files: IssuedFiles };

/** One row of `pki list --json`. */
export type { ListRow };

export interface AuditEntry {
  seq: number;
  op: string;
  outcome: 'ok' | 'error';
  name: string | null;
  serial: string | null;
  roles: string[];
  code?: string;
  detail?: string;
}

export function auditEntries(ca: TestCa): AuditEntry[] {
  return readFileSync(ca.file('audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditEntry);
}

const AUDIT_FILES = new Set(['audit.log', 'audit.head']);

/**
 * Every file (sha256 of its bytes and its mode) and folder under `dir`, by relative path; the lock
 * folder is left out, and so are audit.log/audit.head unless `withAudit` (a failed operation
 * appends an error line by design).
 */
export function snapshot(dir: string, o: { withAudit?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      const rel = relative(dir, full);
      if (rel === '.lock' || (!o.withAudit && AUDIT_FILES.has(rel))) continue;
      const mode = (statSync(full).mode & 0o7777).toString(8);
      if (entry.isDirectory()) {
        out[`${rel}/`] = `dir ${mode}`;
        walk(full);
      } else {
        out[rel] = `${mode} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`;
      }
    }
  };
  walk(dir);
  return out;
}

/** Files directly in `dir` (none if it does not exist). */
export function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** `openssl x509 -text -noout` of the first certificate in `file`. */
export function certText(file: string): string {
  const r = openssl(['x509', '-in', file, '-text', '-noout']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** One field of `openssl x509 -noout -FIELD` (e.g. serial, subject, startdate), without the "key=" part. */
export function certField(file: string, field: 'serial' | 'subject' | 'issuer' | 'startdate' | 'enddate'): string {
  const r = openssl(['x509', '-in', file, '-noout', `-${field}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().replace(/^[a-zA-Z]+=/, '');
}

/** The lines that follow an extension's header in `openssl x509 -text`, joined. */
export function extension(text: string, header: string): string | undefined {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim().startsWith(`${header}:`));
  if (i < 0) return undefined;
  const critical = lines[i]?.includes('critical') ? 'critical; ' : '';
  const body: string[] = [];
  for (let j = i + 1; j < lines.length && /^ {16}/.test(lines[j] as string); j++) body.push((lines[j] as string).trim());
  return critical + body.join(' ');
}

/**
 * `openssl verify` of a leaf the way a TLS peer with CRL checking would: trusted root, the
 * intermediate as untrusted, every CA level's CRL from `crlFile` (default: the store's crl.pem).
 */
export function verifyLeaf(ca: TestCa, leaf: string, o: { purpose?: 'sslclient' | 'sslserver'; crlFile?: string } = {}): CliResult {
  return openssl([
    'verify',
    '-CAfile', ca.file('ca.crt'),
    '-untrusted', ca.file('ca', 'intermediate.crt'),
    '-crl_check_all',
    '-CRLfile', o.crlFile ?? ca.file('crl.pem'),
    '-purpose', o.purpose ?? 'sslclient',
    leaf,
  ]);
}

/** The public key (PEM, SPKI) of a certificate, CSR or private key file, via openssl. */
export function publicKeyOf(file: string, kind: 'x509' | 'req' | 'pkey'): string {
  const args = kind === 'x509' ? ['x509', '-in', file, '-noout', '-pubkey'] : kind === 'req' ? ['req', '-in', file, '-noout', '-pubkey'] : ['pkey', '-in', file, '-pubout'];
  const r = openssl(args);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The seconds between two `openssl -startdate/-enddate` style dates (or ISO strings). */
export function secondsBetween(from: string, to: string): number {
  return (Date.parse(to) - Date.parse(from)) / 1000;
}

/** PEM blocks with the given label, in order. */
export function pemBlocks(text: string, label: string): string[] {
  return [...text.matchAll(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----\\n?`, 'g'))].map((m) => m[0]);
}
