/**
 * Fault injection for tests of the CA store's crash safety. TEST ONLY: with BROKER_FAULT unset
 * (every real use) each call is one comparison against `undefined` and does nothing.
 *
 *   BROKER_FAULT=<crash point>   the process SIGKILLs itself at that point of a store change
 *   BROKER_FAULT=block-before-commit  the process blocks its event loop (lock heartbeat included)
 *                                 once, with the change staged and before the lock check at the
 *                                 commit point, until the file named by BROKER_FAULT_RESUME
 *                                 exists (at most 5 minutes); it writes "<that file>.blocked"
 *                                 first so a test knows it got there
 */
import { existsSync, writeFileSync } from 'node:fs';

export const CRASH_POINTS = ['after-stage', 'after-journal', 'after-audit-append', 'mid-rename', 'after-publish'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

const FAULT = process.env.BROKER_FAULT;

/** Kills the process (SIGKILL: no cleanup, no exit handlers) when BROKER_FAULT names this point. */
export function crashPoint(point: CrashPoint): void {
  if (FAULT === point) process.kill(process.pid, 'SIGKILL');
}

let blocked = false;

/** Blocks the event loop once, before the commit point, when BROKER_FAULT=block-before-commit. */
export function blockPoint(): void {
  if (FAULT !== 'block-before-commit' || blocked) return;
  blocked = true;
  const resume = process.env.BROKER_FAULT_RESUME;
  if (!resume) return;
  writeFileSync(`${resume}.blocked`, `${process.pid}\n`);
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + 300_000;
  while (!existsSync(resume) && Date.now() < until) Atomics.wait(cell, 0, 0, 20);
}
