import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, BrokerError, formatError, httpErrorBody } from '../../src/errors.ts';

const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
const documented = new Set([...readme.matchAll(/^\| `(BRK_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]));

test('every error code is in the README table, and the table has no unknown code', () => {
  const defined = new Set(Object.keys(ERRORS));
  assert.deepEqual([...defined].filter((c) => !documented.has(c)), [], 'codes missing from README');
  assert.deepEqual([...documented].filter((c) => !defined.has(c as string)), [], 'README lists codes that do not exist');
});

test('every code has an exit code of 1 or 2 (3: doctor found problems) and a hint that says what to do', () => {
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.ok(e.exit === 1 || e.exit === 2 || (code === 'BRK_ERR_DOCTOR_PROBLEMS' && e.exit === 3), code);
    assert.ok(e.hint.length > 10, code);
    if ('status' in e) assert.ok(e.status >= 400 && e.status < 600 && typeof e.public === 'string', code);
  }
});

test('formatted errors carry the code, the message and the hint', () => {
  const err = new BrokerError('BRK_ERR_PKI_CA_NOT_FOUND', 'no CA in ./pki');
  assert.equal(formatError(err), 'error BRK_ERR_PKI_CA_NOT_FOUND: no CA in ./pki (run "broker pki init" first, or point --dir / BROKER_PKI_DIR at the store)');
  assert.equal(err.exitCode, 1);
  assert.deepEqual(httpErrorBody('BRK_ERR_ACL_DENIED', 'r1'), { statusCode: 403, code: 'BRK_ERR_ACL_DENIED', message: 'access denied', reqId: 'r1' });
});
