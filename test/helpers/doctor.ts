/**
 * `broker doctor` as the tests run it: the built CLI with --json, its findings parsed; and the
 * broker both doctor test files check against (one route, /orders for role partner).
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { brokerAsync, errorCode } from './cli.ts';
import { makePki, startBroker, startUpstream } from './broker.ts';
import type { Finding } from '../../src/doctor/finding.ts';

export interface Report {
  code: number | null;
  ok: boolean;
  findings: Finding[];
  stdout: string;
  stderr: string;
}

/** Runs `broker doctor ARGS --json` in `cwd`; throws when it printed no JSON. */
export async function runDoctor(args: string[], cwd: string, env?: Record<string, string>): Promise<Report> {
  const r = await brokerAsync(['doctor', ...args, '--json'], { cwd, timeoutMs: 60_000, ...(env ? { env } : {}) });
  let parsed: { ok: boolean; findings: Finding[] };
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, ...parsed, stdout: r.stdout, stderr: r.stderr };
}

/** A broker with one route, /orders for role partner, in front of a real upstream. */
export async function runningBroker(t: TestContext) {
  const pki = await makePki(t);
  const upstream = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'orders', path: '/orders', upstream: upstream.url, roles: ['partner'] }] });
  return { pki, upstream, ...b };
}

export const show = (r: Report) => `exit ${r.code}\n${r.findings.map((f) => `${f.status} ${f.check}: ${f.message}${f.fix ? ` | fix: ${f.fix}` : ''}`).join('\n')}\n${r.stderr}`;
export const checks = (r: Report) => r.findings.map((f) => `${f.status} ${f.check}`);

/** Exactly one failed check, `check`, with a message matching `message`; doctor exited 3. */
export function assertProblem(r: Report, check: string, message: RegExp): Finding {
  assert.equal(r.code, 3, show(r));
  assert.equal(errorCode(r.stderr), 'BRK_ERR_DOCTOR_PROBLEMS', show(r));
  const failed = r.findings.filter((x) => x.status === 'fail');
  assert.deepEqual(failed.map((f) => f.check), [check], show(r));
  assert.match((failed[0] as Finding).message, message, show(r));
  return failed[0] as Finding;
}
