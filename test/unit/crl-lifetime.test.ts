/** The CRL lifetime rules (issue 19): under an hour needs force; a short stored value is ignored unless set with force at init. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_CRL_VALIDITY_MS, checkCrlValidity, ignoredWarning, storeCrlValidity } from '../../src/pki/crl-lifetime.ts';

const HOUR = 3_600_000;

test('checkCrlValidity: 1h and more pass; less throws BRK_ERR_PKI_CRL_TOO_SHORT unless forced', () => {
  assert.equal(checkCrlValidity(HOUR, '--next-update'), HOUR);
  assert.equal(checkCrlValidity(7 * 24 * HOUR, '--next-update'), 7 * 24 * HOUR);
  for (const ms of [20_000, 60_000, HOUR - 1]) {
    assert.throws(() => checkCrlValidity(ms, '--next-update'), (e: Error & { code?: string }) => e.code === 'BRK_ERR_PKI_CRL_TOO_SHORT' && /--next-update .* under 1 hour/.test(e.message));
    assert.equal(checkCrlValidity(ms, '--next-update', true), ms);
  }
});

test('storeCrlValidity: a short value without the init-time mark is ignored for 30 days, with a warning; with the mark it stands', () => {
  assert.deepEqual(storeCrlValidity({ crlValidityMs: 7 * 24 * HOUR }), { ms: 7 * 24 * HOUR });
  assert.equal(ignoredWarning(storeCrlValidity({ crlValidityMs: HOUR })), undefined);
  const old = storeCrlValidity({ crlValidityMs: 20_000 });
  assert.deepEqual(old, { ms: DEFAULT_CRL_VALIDITY_MS, ignoredMs: 20_000 });
  assert.match(ignoredWarning(old) ?? '', /20s .*ignored.*30d/);
  assert.deepEqual(storeCrlValidity({ crlValidityMs: 20_000, crlValidityForced: true }), { ms: 20_000 });
});
