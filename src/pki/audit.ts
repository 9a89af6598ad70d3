/**
 * The PKI audit log: one JSON line per operation, each carrying the SHA-256 of the line before it
 * (a hash chain), plus `audit.head` holding the newest line's number and hash so that removing
 * lines at the end is detected too. Anyone who can rewrite both files can forge history: keep a
 * copy elsewhere (ship the log) when that matters.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync, existsSync } from 'node:fs';
import { hash } from 'node:crypto';
import { userInfo } from 'node:os';
import { BrokerError, type ErrorCode } from '../errors.ts';
import { PRIVATE_MODE } from './files.ts';

export const GENESIS = '0'.repeat(64);

export interface AuditFields {
  op: string;
  outcome: 'ok' | 'error';
  name?: string;
  serial?: string;
  roles?: readonly string[];
  code?: ErrorCode;
  detail?: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
}

export function lineHash(line: string): string {
  return hash('sha256', line, 'hex');
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

export function readHead(headFile: string): AuditHead {
  if (!existsSync(headFile)) return { seq: 0, hash: GENESIS };
  try {
    const h = JSON.parse(readFileSync(headFile, 'utf8')) as AuditHead;
    if (Number.isSafeInteger(h.seq) && /^[0-9a-f]{64}$/.test(h.hash)) return h;
  } catch {
    // fall through
  }
  throw new BrokerError('BRK_ERR_PKI_AUDIT_TAMPERED', `${headFile} is unreadable; run "broker pki audit verify"`);
}

/** The next line (no newline) and the head it produces. */
export function nextLine(head: AuditHead, fields: AuditFields, now = new Date()): { line: string; head: AuditHead } {
  const seq = head.seq + 1;
  const entry = {
    seq,
    time: now.toISOString(),
    op: fields.op,
    outcome: fields.outcome,
    name: fields.name ?? null,
    serial: fields.serial ?? null,
    roles: fields.roles ?? [],
    ...(fields.code ? { code: fields.code } : {}),
    ...(fields.detail ? { detail: fields.detail } : {}),
    user: osUser(),
    pid: process.pid,
    prev: head.hash,
  };
  const line = JSON.stringify(entry);
  return { line, head: { seq, hash: lineHash(line) } };
}

/** Appends one line durably; on a short or failed write the file is cut back to where it was. */
export function appendLine(logFile: string, line: string): void {
  const fd = openSync(logFile, 'a', PRIVATE_MODE);
  const size = fstatSync(fd).size;
  try {
    const buf = Buffer.from(`${line}\n`);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (cause) {
    try {
      ftruncateSync(fd, size);
    } catch {
      // nothing more we can do; verify will flag the partial line
    }
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot append to ${logFile}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  } finally {
    closeSync(fd);
  }
}

export interface AuditReport {
  ok: boolean;
  lines: number;
  /** 1-based line number of the first problem. */
  badLine?: number;
  problem?: string;
}

export function verifyAudit(logText: string, head: AuditHead): AuditReport {
  const lines = logText.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let prev = GENESIS;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    let entry: { seq?: unknown; prev?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      return { ok: false, lines: lines.length, badLine: i + 1, problem: 'not a JSON line (edited or cut short)' };
    }
    if (entry.seq !== i + 1) return { ok: false, lines: lines.length, badLine: i + 1, problem: `sequence number ${String(entry.seq)} where ${i + 1} was expected (a line was removed or inserted)` };
    if (entry.prev !== prev) return { ok: false, lines: lines.length, badLine: i + 1, problem: 'hash of the previous line does not match (the line before it was edited)' };
    prev = lineHash(line);
  }
  if (head.seq !== lines.length || head.hash !== prev) {
    return { ok: false, lines: lines.length, badLine: lines.length, problem: `the log ends at line ${lines.length} but audit.head records ${head.seq} lines (lines were removed or edited at the end)` };
  }
  return { ok: true, lines: lines.length };
}
