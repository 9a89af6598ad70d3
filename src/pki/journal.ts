/**
 * How a store change is committed so that a crash at any point can be told from tampering and
 * completed by the next command. Under the store lock:
 *
 *   1. stage every file (temp file beside its target, fsync)               crash: temps left over
 *   2. write audit.pending: the audit line, the head it makes, each temp,   ← the commit point
 *      its target and the SHA-256 of its bytes (temp + fsync + rename)
 *   3. append the audit line to audit.log (fsync)
 *   4. rename each temp onto its target, audit.head last (it is staged too), fsync the folders
 *   5. remove audit.pending
 *
 * A crash before 2 leaves the store as it was (recovery removes the temps). From 2 on the change
 * is decided: `recoverPending` (run by every store-changing command right after it takes the lock,
 * and by `broker pki audit recover`) rolls it forward: appends the line if it is missing (cutting
 * off a partial copy), renames the temps still there (a target already in place must have the
 * recorded hash), writes audit.head, removes audit.pending, and records a "recover" line.
 */
import { readdirSync, readFileSync, renameSync, rmSync, statSync, ftruncateSync, openSync, closeSync, fsyncSync } from 'node:fs';
import { hash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { BrokerError } from '../errors.ts';
import { appendLine, nextLine, PENDING_FORMAT, readHead, readPending, verifyAudit, type AuditFields, type AuditHead, type PendingRecord } from './audit.ts';
import { blockPoint, crashPoint } from './fault.ts';
import { discard, fsyncDir, PRIVATE_MODE, publish, replaceFile, TEMP_NAME, WriteTransaction, type Staged } from './files.ts';
import type { StoreLayout } from './layout.ts';

const sha256 = (data: Uint8Array) => hash('sha256', data, 'hex');

function writeHead(l: StoreLayout, head: AuditHead): void {
  replaceFile(l.auditHead, `${JSON.stringify(head)}\n`, PRIVATE_MODE);
}

function removePending(l: StoreLayout, durably: boolean): void {
  rmSync(l.pending, { force: true });
  if (durably) fsyncDir(dirname(l.pending));
}

function logText(l: StoreLayout): string {
  try {
    return readFileSync(l.auditLog, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read ${l.auditLog}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
}

/**
 * Commits one change: `tx`'s files and the audit line for `fields`, in the order above.
 * `atCommitPoint` runs after staging, before anything is decided (the lock check): if it throws,
 * nothing is published. Returns the new head.
 */
export function commitChange(l: StoreLayout, tx: WriteTransaction, fields: AuditFields, atCommitPoint?: () => void): AuditHead {
  const prev = readHead(l.auditHead);
  const { line, head } = nextLine(prev, fields);
  // the head is staged with the files and renamed last, in the same folder fsync as the inventory
  const staged = tx.write(l.auditHead, `${JSON.stringify(head)}\n`, PRIVATE_MODE).stage();
  crashPoint('after-stage');
  let files: PendingRecord['files'];
  try {
    blockPoint();
    atCommitPoint?.();
    files = staged.map((s) => ({ temp: resolve(s.temp), target: resolve(s.target), sha256: sha256(readFileSync(s.temp)) }));
    const record: PendingRecord = { format: PENDING_FORMAT, op: fields.op, pid: process.pid, prev, line, head, files };
    replaceFile(l.pending, `${JSON.stringify(record)}\n`, PRIVATE_MODE);
  } catch (err) {
    discard(staged);
    throw err;
  }
  crashPoint('after-journal');
  try {
    appendLine(l.auditLog, line);
  } catch (err) {
    // appendLine cuts the log back to where it was: the change did not happen
    discard(staged);
    removePending(l, true);
    throw err;
  }
  crashPoint('after-audit-append');
  finish(l, staged, head);
  return head;
}

/** Steps 4 and 5. A failure here leaves audit.pending for recovery and says so. */
function finish(l: StoreLayout, staged: readonly Staged[], head: AuditHead): void {
  try {
    publish(staged, (i) => {
      if (i === 0) crashPoint('mid-rename');
    });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `${msg}; the change is recorded in audit line ${head.seq} and will be completed by "broker pki audit recover" or the next store-changing command`, { cause: err });
  }
  crashPoint('after-publish');
  // not fsynced: if the removal is lost to a power cut, recovery finds everything in place and only removes it again
  removePending(l, false);
}

export interface Recovery {
  /** The interrupted change that was completed, if any. */
  completed?: { op: string; seq: number; pid: number };
  /** A line found past audit.head with no pending record (older brokers), now accepted. */
  adopted?: number;
  /** Left-over temp files removed from the store's folders. */
  removedTemps: number;
}

/** Store folders that hold staged files. */
function storeFolders(l: StoreLayout): string[] {
  return [l.dir, dirname(l.rootCert), dirname(l.rootCrl), dirname(l.serverCert('x')), l.assertionDir];
}

function removeOrphanTemps(l: StoreLayout): number {
  let n = 0;
  for (const d of storeFolders(l)) {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) {
      if (TEMP_NAME.test(name)) {
        rmSync(join(d, name), { force: true });
        n++;
      }
    }
  }
  return n;
}

/** Cuts a partial last line (no newline) off the log, durably. */
function cutPartialLine(l: StoreLayout, text: string): void {
  const keep = Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1));
  const fd = openSync(l.auditLog, 'r+');
  try {
    ftruncateSync(fd, keep);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Brings the store back to a committed state after a crash; run under the store lock before any
 * change. Does nothing on a clean store. Leaves anything that looks like tampering alone (the
 * change then goes ahead as before, and `audit verify` keeps reporting it).
 */
export function recoverPending(l: StoreLayout): Recovery {
  const out: Recovery = { removedTemps: 0 };
  const pending = readPending(l.pending);
  if (!pending) {
    const text = logText(l);
    const head = readHead(l.auditHead);
    // the usual case, without walking the whole chain: the last line is the one the head names
    const lastLine = text.slice(text.lastIndexOf('\n', text.length - 2) + 1, -1);
    const clean = head.seq === 0 ? text === '' : text.endsWith('\n') && hash('sha256', lastLine, 'hex') === head.hash;
    if (!clean && verifyAudit(text, head).interrupted) {
      // a whole line past the head, chained to it: accept it, and say so in the log
      const lines = text.split('\n').filter((x) => x !== '');
      const last = lines.at(-1) as string;
      writeHead(l, { seq: lines.length, hash: hash('sha256', last, 'hex') });
      out.adopted = lines.length;
    }
    out.removedTemps = removeOrphanTemps(l);
    if (out.adopted) {
      commitChange(l, new WriteTransaction(), { op: 'recover', outcome: 'ok', detail: `accepted line ${out.adopted}: appended without audit.head being updated (a crash in an older broker); its change may be missing or partial` });
    }
    return out;
  }
  const text = logText(l);
  const report = verifyAudit(text, readHead(l.auditHead), pending);
  if (!report.interrupted) {
    throw new BrokerError('BRK_ERR_PKI_AUDIT_TAMPERED', `${l.pending} cannot be completed: ${report.problem}`);
  }
  if (text.length && !text.endsWith('\n')) cutPartialLine(l, text);
  const lines = text.split('\n');
  const appended = lines.at(-1) === '' ? lines.at(-2) === pending.line : false;
  if (!appended) appendLine(l.auditLog, pending.line);
  const staged: Staged[] = [];
  const storeDir = resolve(l.dir);
  const skipped: string[] = [];
  for (const f of pending.files) {
    let tempThere = true;
    try {
      statSync(f.temp);
    } catch {
      tempThere = false;
    }
    if (tempThere) {
      staged.push({ temp: f.temp, target: f.target });
      continue;
    }
    let have: string | undefined;
    try {
      have = sha256(readFileSync(f.target));
    } catch {
      have = undefined;
    }
    if (have === undefined && !f.target.startsWith(`${storeDir}/`)) {
      skipped.push(f.target); // a hand-out copy outside the store (an --out folder) removed meanwhile
      continue;
    }
    if (have !== f.sha256) {
      throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot complete the interrupted "${pending.op}" change: ${f.temp} is gone and ${f.target} does not hold what it staged; restore the store from a backup`);
    }
  }
  for (const s of staged) {
    try {
      renameSync(s.temp, s.target);
    } catch (cause) {
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot complete the interrupted "${pending.op}" change: cannot move ${s.target} into place: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
    }
  }
  for (const d of new Set(pending.files.map((f) => dirname(f.target)))) fsyncDir(d);
  writeHead(l, pending.head);
  removePending(l, true);
  out.completed = { op: pending.op, seq: pending.head.seq, pid: pending.pid };
  out.removedTemps = removeOrphanTemps(l);
  commitChange(l, new WriteTransaction(), { op: 'recover', outcome: 'ok', detail: `completed the "${pending.op}" change of line ${pending.head.seq} (process ${pending.pid} was interrupted)${skipped.length ? `; not restored (removed meanwhile): ${skipped.join(', ')}` : ''}` });
  return out;
}
