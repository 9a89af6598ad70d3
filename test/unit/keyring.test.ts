/**
 * KeyRing against a real keys.json written by the store (real scrypt): API keys and Basic
 * credentials that verify, and each way of being refused; the success cache and expiry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBrokerError } from '../../src/errors.ts';
import { storeLayout, type StoreLayout } from '../../src/pki/layout.ts';
import { createKey, revokeKey } from '../../src/pki/credentials.ts';
import { readKeys, serializeKeys } from '../../src/pki/keys-file.ts';
import { KeyRing, type CredentialResult } from '../../src/auth/keyring.ts';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const HOUR = 3_600_000;

let layout: StoreLayout;
const k: Record<string, { id: string; secret: string }> = {};

before(async () => {
  layout = storeLayout(join(mkdtempSync(join(tmpdir(), 'broker-keyring-')), 'pki'));
  const make = async (label: string, o: Parameters<typeof createKey>[1]) => {
    const r = await createKey(layout, { now: T0, ...o });
    k[label] = { id: r.record.id, secret: r.secret };
  };
  await make('live', { name: 'acme', roles: ['billing', 'ops'], kind: 'apiKey' });
  await make('revoked', { name: 'gone', roles: ['ops'], kind: 'apiKey' });
  await make('expiring', { name: 'temp', roles: ['ops'], kind: 'apiKey', expiresMs: HOUR });
  await make('basic1', { name: 'legacy', roles: ['orders'], kind: 'basic' });
  await make('basic2', { name: 'legacy', roles: ['orders'], kind: 'basic' });
  await make('basicGone', { name: 'old-erp', roles: ['orders'], kind: 'basic' });
  await revokeKey(layout, (k.revoked as { id: string }).id);
  await revokeKey(layout, 'old-erp');
});
after(() => rmSync(join(layout.dir, '..'), { recursive: true, force: true }));

const key = (label: string) => (k[label] as { secret: string }).secret;
const id = (label: string) => (k[label] as { id: string }).id;
const ring = (o: { cacheTtlMs?: number; now?: () => number } = {}) => KeyRing.load(layout.keys, { now: () => T0, ...o });

/** The same secret with its last character changed (still well-formed). */
function wrong(secret: string): string {
  return secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
}

function refused(r: CredentialResult, reason: string): void {
  assert.equal(r.ok, false, `expected ${reason}, got ok`);
  if (!r.ok) assert.equal(r.reason, reason, r.detail);
}

test('an API key verifies to its identity: name, roles, key id and kind, frozen', async () => {
  const r = await ring().verifyApiKey(key('live'));
  assert.ok(r.ok);
  assert.deepEqual({ ...r.identity }, { name: 'acme', roles: ['billing', 'ops'], keyId: id('live'), kind: 'apiKey' });
  assert.ok(Object.isFrozen(r.identity) && Object.isFrozen(r.identity.roles));
  assert.match(key('live'), /^brk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
});

test('a wrong secret is refused as wrong, an unknown id as unknown', async () => {
  const kr = ring();
  const bad = await kr.verifyApiKey(wrong(key('live')));
  refused(bad, 'wrong');
  assert.equal(!bad.ok && bad.keyId, id('live'));
  assert.equal(!bad.ok && bad.name, 'acme');
  const unknown = await kr.verifyApiKey(key('live').replace(id('live'), id('live') === 'aaaaaaaaaaaa' ? 'bbbbbbbbbbbb' : 'aaaaaaaaaaaa'));
  refused(unknown, 'unknown');
  // a Basic credential's id is not an API key
  refused(await kr.verifyApiKey(`brk_${id('basic1')}_${'A'.repeat(43)}`), 'unknown');
});

test('strings that are not API keys are malformed', async () => {
  const kr = ring();
  const s = key('live');
  for (const m of ['', 'brk_', s.slice(0, -1), `${s}A`, s.replace('brk_', 'BRK_'), s.replace(id('live'), id('live').toUpperCase().replace(/[0-9]/g, 'F')), `Bearer ${s}`, ` ${s}`, s.replace(/_([^_]*)$/, '.$1')]) {
    refused(await kr.verifyApiKey(m), 'malformed');
  }
});

test('a revoked key is refused as revoked with the right secret, as wrong with a wrong one', async () => {
  const kr = ring();
  const r = await kr.verifyApiKey(key('revoked'));
  refused(r, 'revoked');
  assert.equal(!r.ok && r.keyId, id('revoked'));
  refused(await kr.verifyApiKey(wrong(key('revoked'))), 'wrong');
});

test('expiry is checked at each call, not at load', async () => {
  let now = T0;
  const kr = ring({ now: () => now });
  assert.ok((await kr.verifyApiKey(key('expiring'))).ok);
  now = T0 + HOUR;
  refused(await kr.verifyApiKey(key('expiring')), 'expired');
  refused(await kr.verifyApiKey(wrong(key('expiring'))), 'wrong');
});

test('a cached success returns the same identity object; a failure is not cached', async () => {
  const kr = ring();
  refused(await kr.verifyApiKey(wrong(key('live'))), 'wrong');
  const a = await kr.verifyApiKey(key('live'));
  const b = await kr.verifyApiKey(key('live'));
  assert.ok(a.ok && b.ok);
  assert.equal(a.identity, b.identity);
  refused(await kr.verifyApiKey(wrong(key('live'))), 'wrong');
});

test('the cache does not outlive the key: a long cache TTL still ends at the expiry', async () => {
  let now = T0 + HOUR - 1000;
  const kr = ring({ cacheTtlMs: 24 * HOUR, now: () => now });
  assert.ok((await kr.verifyApiKey(key('expiring'))).ok);
  assert.ok((await kr.verifyApiKey(key('expiring'))).ok);
  now = T0 + HOUR;
  refused(await kr.verifyApiKey(key('expiring')), 'expired');
});

test('Basic: the name is the user; each non-revoked password of that name works', async () => {
  const kr = ring();
  const one = await kr.verifyBasic('legacy', key('basic1'));
  const two = await kr.verifyBasic('legacy', key('basic2'));
  assert.ok(one.ok && two.ok);
  assert.deepEqual({ ...one.identity }, { name: 'legacy', roles: ['orders'], keyId: id('basic1'), kind: 'basic' });
  assert.equal(two.identity.keyId, id('basic2'));
  assert.equal((await kr.verifyBasic('legacy', key('basic1'))).ok && one.identity, one.identity);
  assert.match(key('basic1'), /^[A-Za-z0-9_-]{32}$/);
});

test('Basic refusals: wrong password, unknown user, malformed, revoked, another user\'s password', async () => {
  const kr = ring();
  refused(await kr.verifyBasic('legacy', wrong(key('basic1'))), 'wrong');
  refused(await kr.verifyBasic('acme', key('basic1')), 'unknown');
  refused(await kr.verifyBasic('nobody', key('basic1')), 'unknown');
  refused(await kr.verifyBasic('legacy', 'hunter2'), 'malformed');
  refused(await kr.verifyBasic('', key('basic1')), 'malformed');
  refused(await kr.verifyBasic('legacy', key('live')), 'malformed');
  refused(await kr.verifyBasic('old-erp', key('basicGone')), 'revoked');
  refused(await kr.verifyBasic('old-erp', wrong(key('basicGone'))), 'wrong');
});

test('load: a missing file is an empty ring; a bad file is BRK_ERR_KEYS_CORRUPT', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'broker-keyring-bad-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const empty = KeyRing.load(join(dir, 'keys.json'));
  assert.equal(empty.size, 0);
  refused(await empty.verifyApiKey(key('live')), 'unknown');
  assert.equal(KeyRing.empty().size, 0);
  assert.equal(ring().size, 6);

  const good = readKeys(layout.keys);
  const first = good.keys[0] as (typeof good.keys)[number];
  const variants: Record<string, string> = {
    'not JSON': '{"format":',
    'wrong format': JSON.stringify({ format: 'broker-keys/9', keys: [] }),
    'short hash': serializeKeys({ ...good, keys: [{ ...first, hash: first.hash.slice(0, 20) }] }),
    'bad id': serializeKeys({ ...good, keys: [{ ...first, id: 'XYZ' }] }),
    'bad kind': JSON.stringify({ ...good, keys: [{ ...first, kind: 'jwt' }] }),
    'bad role': serializeKeys({ ...good, keys: [{ ...first, roles: ['no spaces'] }] }),
    'weak kdf': serializeKeys({ ...good, keys: [{ ...first, kdf: { ...first.kdf, N: 3 } }] }),
    'duplicate id': serializeKeys({ ...good, keys: [first, first] }),
  };
  for (const [what, text] of Object.entries(variants)) {
    const file = join(dir, `${what.replace(/ /g, '-')}.json`);
    writeFileSync(file, text);
    assert.throws(() => KeyRing.load(file), (err) => isBrokerError(err, 'BRK_ERR_KEYS_CORRUPT'), what);
  }
});
