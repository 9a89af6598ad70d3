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

/**
 * The change being committed, written (atomically) before its audit line is appended and removed
 * once its files and audit.head are in place. See pki/journal.ts.
 */
export interface PendingRecord {
  format: typeof PENDING_FORMAT;
  op: string;
  pid: number;
  /** The head before the change, and the line and head it makes. */
  prev: AuditHead;
  line: string;
  head: AuditHead;
  /** Staged temp files and where they go, with the SHA-256 of their bytes. */
  files: Array<{ temp: string; target: string; sha256: string }>;
}

export const PENDING_FORMAT = 'broker-pki-pending/1';

export interface AuditReport {
  ok: boolean;
  lines: number;
  /**
   * A change was cut off while it was being committed (a crash or kill): nothing was tampered
   * with; the next store-changing command (or `broker pki audit recover`) completes it.
   */
  interrupted?: boolean;
  /** 1-based line number of the first problem. */
  badLine?: number;
  problem?: string;
}

const sameHead = (a: AuditHead, b: AuditHead) => a.seq === b.seq && a.hash === b.hash;

/**
 * Walks the hash chain, then compares its end with audit.head and, when there is one, with the
 * pending record. What a crash can leave is reported as `interrupted`; anything else that does not
 * fit is tampering:
 * - with a pending record: the log ends at the record's `prev` (the line was not appended yet), or
 *   with the record's own line (appended, files or head not yet in place), possibly with a cut-off
 *   copy of that line after `prev` (the append itself was cut short); audit.head is `prev` or `head`;
 * - without one: the log is exactly one whole line past audit.head, chained to it (a crash between
 *   the append and the renames in a broker from before the pending record).
 */
export function verifyAudit(logText: string, head: AuditHead, pending?: PendingRecord): AuditReport {
  let text = logText;
  let cutShort = false;
  if (pending && text.length && !text.endsWith('\n')) {
    const lastNl = text.lastIndexOf('\n');
    const tail = text.slice(lastNl + 1);
    if (pending.line.startsWith(tail)) {
      text = text.slice(0, lastNl + 1);
      cutShort = true;
    }
  }
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let prev = GENESIS;
  const hashes: string[] = [];
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
    hashes.push(prev);
  }
  const n = lines.length;
  const end: AuditHead = { seq: n, hash: prev };
  const beforeLast: AuditHead = { seq: n - 1, hash: n > 1 ? (hashes[n - 2] as string) : GENESIS };
  if (pending) {
    const notAppended = sameHead(end, pending.prev) && sameHead(head, pending.prev);
    const appended = !cutShort && n > 0 && lines[n - 1] === pending.line && sameHead(end, pending.head) && sameHead(beforeLast, pending.prev) && (sameHead(head, pending.prev) || sameHead(head, pending.head));
    if (notAppended || appended) {
      const where = notAppended ? (cutShort ? 'its audit line was cut short' : 'its audit line is not written yet') : sameHead(head, pending.head) ? 'its audit line and audit.head are written' : 'its audit line is written, its files and audit.head not all in place';
      return { ok: false, interrupted: true, lines: n, badLine: pending.head.seq, problem: `the "${pending.op}" change of process ${pending.pid} was interrupted (${where})` };
    }
    return { ok: false, lines: n, badLine: n, problem: `audit.pending (a "${pending.op}" change for line ${pending.head.seq}) does not fit the log, which ends at line ${n} with audit.head at ${head.seq} (the log, the head or audit.pending was edited)` };
  }
  if (sameHead(head, end)) return { ok: true, lines: n };
  if (n > 0 && sameHead(head, beforeLast)) {
    return { ok: false, interrupted: true, lines: n, badLine: n, problem: `line ${n} was appended but audit.head was not updated and no record of the change is left (a crash during that change, with a broker from before crash recovery); its change may be missing or partial: check "broker pki list"` };
  }
  return { ok: false, lines: n, badLine: n, problem: `the log ends at line ${n} but audit.head records ${head.seq} lines (lines were removed or edited at the end)` };
}

/** A pending record read from disk, or undefined; anything unreadable or malformed is tampering. */
export function readPending(file: string): PendingRecord | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  try {
    const p = JSON.parse(text) as PendingRecord;
    const isHead = (h: AuditHead) => h && Number.isSafeInteger(h.seq) && /^[0-9a-f]{64}$/.test(h.hash);
    if (p.format === PENDING_FORMAT && typeof p.op === 'string' && typeof p.line === 'string' && isHead(p.prev) && isHead(p.head) && Array.isArray(p.files) &&
      p.head.seq === p.prev.seq + 1 && p.head.hash === lineHash(p.line) &&
      p.files.every((f) => typeof f.temp === 'string' && typeof f.target === 'string' && /^[0-9a-f]{64}$/.test(f.sha256))) return p;
  } catch {
    // fall through
  }
  throw new BrokerError('BRK_ERR_PKI_AUDIT_TAMPERED', `${file} is not a valid pending-change record; run "broker pki audit verify"`);
}
