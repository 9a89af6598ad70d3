/** The forward listener's per-identity limits: the strictest of an identity's roles, and byte windows. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limitsFor } from '../../src/forward/limits.ts';
import { MemoryStore } from '../../src/ratelimit/memory-store.ts';
import type { ForwardLimitNumbers } from '../../src/config/index.ts';

const defaults: ForwardLimitNumbers = { tunnels: { rate: 10, perMs: 1000, burst: 20 }, maxTunnels: 32, quotaUp: undefined, quotaDown: { bytes: 1000, windowMs: 60_000 } };

test('each field comes from the strictest role that sets it, else from forward.limits', () => {
  const byRole = new Map<string, Partial<ForwardLimitNumbers>>([
    ['bulk', { maxTunnels: 200, quotaDown: { bytes: 10_000, windowMs: 60_000 } }],
    ['slow', { tunnels: { rate: 1, perMs: 1000, burst: 1 }, maxTunnels: 5 }],
    ['daily', { quotaDown: { bytes: 100_000, windowMs: 86_400_000 }, quotaUp: { bytes: 5, windowMs: 1000 } }],
  ]);
  assert.deepEqual(limitsFor(['none'], defaults, byRole), defaults);
  // a role's value replaces the default even when looser (as roles.NAME.rateLimit does)
  assert.equal(limitsFor(['bulk'], defaults, byRole).maxTunnels, 200);
  assert.equal(limitsFor(['bulk', 'slow'], defaults, byRole).maxTunnels, 5);
  assert.deepEqual(limitsFor(['bulk', 'slow'], defaults, byRole).tunnels, { rate: 1, perMs: 1000, burst: 1 });
  // 100 000 per day is fewer bytes per millisecond than 10 000 per minute
  assert.deepEqual(limitsFor(['bulk', 'daily'], defaults, byRole).quotaDown, { bytes: 100_000, windowMs: 86_400_000 });
  assert.deepEqual(limitsFor(['daily'], defaults, byRole).quotaUp, { bytes: 5, windowMs: 1000 });
});

test('the memory store counts bytes per fixed window and forgets finished windows', async () => {
  let now = 10 * 60_000 + 30_000;
  const s = new MemoryStore({ now: () => now, sweepMs: 3_600_000 });
  try {
    assert.deepEqual(s.addBytes([{ key: 'k', bytes: 100, windowMs: 60_000 }]), [{ total: 100, resetMs: 30_000 }]);
    assert.deepEqual(s.addBytes([{ key: 'k', bytes: 50, windowMs: 60_000 }, { key: 'j', bytes: 0, windowMs: 60_000 }]), [{ total: 150, resetMs: 30_000 }, { total: 0, resetMs: 30_000 }]);
    now += 30_000; // the next window
    assert.deepEqual(s.addBytes([{ key: 'k', bytes: 0, windowMs: 60_000 }]), [{ total: 0, resetMs: 60_000 }]);
    s.sweep();
    assert.equal(s.size.bytes, 1, 'only the current window is kept');
  } finally {
    await s.close();
  }
});
