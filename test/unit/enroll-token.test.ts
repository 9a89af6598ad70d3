/** The enrolment token format (pki/invitations.ts): round trip, and every malformed shape refused with one code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { formatToken, invitationStatus, parseToken, type InvitationRecord } from '../../src/pki/invitations.ts';
import { isBrokerError } from '../../src/errors.ts';

const parts = { id: 'a1b2c3d4e5f6', secret: randomBytes(32).toString('base64url'), ca: 'ab'.repeat(32), name: 'acme' };
const b64 = (v: unknown) => `brk1.${Buffer.from(JSON.stringify(v)).toString('base64url')}`;

test('a token carries id, secret, pinned CA and name, and reads back the same', () => {
  const t = formatToken(parts);
  assert.match(t, /^brk1\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(parseToken(`  ${t}\n`), parts);
  const { name: _n, ...noName } = parts;
  assert.deepEqual(parseToken(formatToken(noName)), noName);
});

test('malformed tokens are BRK_ERR_ENROLL_TOKEN_INVALID', () => {
  const bad = [
    '',
    'brk2.' + formatToken(parts).slice(5),
    'brk1.!!!',
    b64({ ...parts, v: 2 }),
    b64({ ...parts, id: 'XYZ' }),
    b64({ ...parts, secret: parts.secret.slice(1) }),
    b64({ ...parts, ca: 'zz'.repeat(32) }),
    b64({ ...parts, name: 'bad name' }),
    b64([1, 2]),
  ];
  for (const t of bad) assert.throws(() => parseToken(t), (e) => isBrokerError(e, 'BRK_ERR_ENROLL_TOKEN_INVALID'), t);
});

test('an invitation is open, used, revoked or expired', () => {
  const base: InvitationRecord = { id: parts.id, name: 'acme', roles: ['r'], created: '2026-01-01T00:00:00Z', expires: '2026-01-02T00:00:00Z', certTtlMs: 1, hash: '0'.repeat(64) };
  const at = Date.parse('2026-01-01T12:00:00Z');
  assert.equal(invitationStatus(base, at), 'open');
  assert.equal(invitationStatus(base, Date.parse('2026-01-02T00:00:00Z')), 'expired');
  assert.equal(invitationStatus({ ...base, used: '2026-01-01T01:00:00Z' }, at), 'used');
  assert.equal(invitationStatus({ ...base, used: '2026-01-01T01:00:00Z', revoked: '2026-01-01T02:00:00Z' }, at), 'revoked');
});
