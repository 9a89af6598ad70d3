/**
 * The expiry timer of long-lived connections: one unref'd timer, fired at its moment; a moment past
 * setTimeout's 2^31 - 1 ms cap is reached by re-arming at the cap (Node would otherwise fire at once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arm, disarm, type Deadline } from '../../src/deadline.ts';
import { within } from '../helpers/within.ts';

function deadline(at: number): Deadline & { fired: Promise<void>; count: number } {
  let done!: () => void;
  const fired = new Promise<void>((r) => (done = r));
  const d = { at, timer: undefined as NodeJS.Timeout | undefined, count: 0, fired, expire: () => (d.count++, done()) };
  return d;
}

test('a deadline in the past fires at once, one in the near future fires, unref\'d', async () => {
  const past = deadline(Date.now() - 1_000);
  arm(past);
  assert.equal(past.timer?.hasRef(), false);
  await within(past.fired, 5_000, 'a past deadline firing');
  const soon = deadline(Date.now() + 30);
  arm(soon);
  await within(soon.fired, 5_000, 'a near deadline firing');
  assert.equal(soon.count, 1);
  assert.equal(soon.timer, undefined);
});

test('a deadline 40 days away is armed at the cap (re-armed there), not fired; disarm clears it; Infinity arms nothing', async () => {
  const far = deadline(Date.now() + 40 * 86_400_000);
  arm(far);
  const t = far.timer as unknown as { _idleTimeout: number; _onTimeout: unknown };
  assert.equal(t._idleTimeout, 2_147_483_647);
  assert.equal(t._onTimeout, arm, 'the timer re-arms instead of firing');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(far.count, 0);
  disarm(far);
  assert.equal(far.timer, undefined);
  const never = deadline(Infinity);
  arm(never);
  assert.equal(never.timer, undefined);
});
