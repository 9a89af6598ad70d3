/**
 * `broker pki invite` through the built CLI: the token is printed once and pins the root's
 * fingerprint, the store keeps only the SHA-256 of its secret, every change has its audit line,
 * and --list / --revoke manage the invitations (no CA passphrase needed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode } from '../helpers/cli.ts';
import { auditEntries, json, sharedCa } from '../helpers/pki.ts';
import { parseToken } from '../../src/pki/invitations.ts';

const shared = sharedCa();

function everything(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

test('invite --json prints a one-time token pinning the root; only the hash of its secret is stored; audited', () => {
  const ca = shared();
  const r = json<{ token: string; expires: string; id: string }>(ca.run(['pki', 'invite', 'acme', '--role', 'billing', '--role', 'ops', '--expires', '24h', '--cert-ttl', '7d', '--contact', 'ops@acme.example', '--json']));
  assert.match(r.token, /^brk1\.[A-Za-z0-9_-]+$/);
  const hours = (Date.parse(r.expires) - Date.now()) / 3_600_000;
  assert.ok(hours > 23.9 && hours <= 24, r.expires);
  const parts = parseToken(r.token);
  assert.equal(parts.id, r.id);
  const rootDer = new X509Certificate(readFileSync(ca.file('ca', 'root.crt'))).raw;
  assert.equal(parts.ca, createHash('sha256').update(rootDer).digest('hex'), 'the token pins the root certificate');

  assert.ok(!everything(ca.dir).includes(parts.secret), 'the secret appears nowhere in the store');
  const stored = JSON.parse(readFileSync(ca.file('invitations.json'), 'utf8')).invitations.find((i: { id: string }) => i.id === r.id);
  assert.equal(stored.hash, createHash('sha256').update(Buffer.from(parts.secret, 'base64url')).digest('hex'));
  assert.deepEqual(stored.roles, ['billing', 'ops']);
  assert.equal(stored.certTtlMs, 7 * 86_400_000);
  assert.equal(stored.contact, 'ops@acme.example');

  const line = auditEntries(ca).at(-1);
  assert.equal(line?.op, 'invite');
  assert.equal(line?.name, 'acme');
  assert.match(line?.detail ?? '', new RegExp(`invitation=${r.id}`));
  assert.ok(!readFileSync(ca.file('audit.log'), 'utf8').includes(parts.secret));
  assert.deepEqual(json(ca.run(['pki', 'audit', 'verify', '--json'])), { ok: true, lines: auditEntries(ca).length });
});

test('--list shows the invitations with their status; --revoke closes an open one, once', () => {
  const ca = shared();
  const a = json<{ id: string }>(ca.run(['pki', 'invite', 'globex', '--role', 'orders', '--json']));
  let rows = json<Array<{ id: string; status: string; name: string }>>(ca.run(['pki', 'invite', '--list', '--json']));
  assert.equal(rows.find((x) => x.id === a.id)?.status, 'open');
  assert.ok(rows.every((x) => !('hash' in x)), 'the list never shows hashes');
  const rv = ca.run(['pki', 'invite', '--revoke', a.id]);
  assert.equal(rv.code, 0, rv.stderr);
  rows = json(ca.run(['pki', 'invite', '--list', '--json']));
  assert.equal(rows.find((x) => x.id === a.id)?.status, 'revoked');
  assert.equal(auditEntries(ca).at(-1)?.op, 'invite-revoke');
  const again = ca.run(['pki', 'invite', '--revoke', a.id]);
  assert.equal(again.code, 1);
  assert.equal(errorCode(again.stderr), 'BRK_ERR_ENROLL_INVITATION_CLOSED');
  const none = ca.run(['pki', 'invite', '--revoke', '000000000000']);
  assert.equal(errorCode(none.stderr), 'BRK_ERR_ENROLL_INVITATION_NOT_FOUND');
});

test('bad input is refused with its code', () => {
  const ca = shared();
  assert.equal(errorCode(ca.run(['pki', 'invite', 'x']).stderr), 'BRK_ERR_USAGE_ROLE');
  assert.equal(errorCode(ca.run(['pki', 'invite', 'bad name', '--role', 'a']).stderr), 'BRK_ERR_USAGE_NAME');
  assert.equal(errorCode(ca.run(['pki', 'invite', 'x', '--role', 'a', '--expires', 'soon']).stderr), 'BRK_ERR_USAGE_TTL');
});
