/**
 * The broker through a root rollover: after `rotate root` and a reload, clients with certificates
 * from the old and the new hierarchy both get through, and a partner that still trusts only the
 * old root verifies the broker's new server certificate (its chain carries the cross certificate).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { makePki, request, startBroker, startUpstream } from '../helpers/broker.ts';
import { rotateRoot } from '../../src/pki/rotate.ts';
import { renew } from '../../src/pki/issue.ts';

test('root rollover: old and new client certificates work, and the old root alone still verifies the broker', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const oldClient = await pki.issue('old-client', ['app']);
  const oldRootOnly = pki.ca;
  const b = await startBroker(t, pki, { routes: [{ name: 'r', path: '/r', upstream: up.url, roles: ['app'] }] });
  assert.equal((await request(b.port, { id: oldClient, ca: oldRootOnly, path: '/r/1' })).status, 200);

  await rotateRoot(pki.store, { overlapMs: 86_400_000 });
  await renew(pki.store, { name: 'localhost', ttlMs: 86_400_000 });
  const reloaded = await b.broker.reload();
  assert.ok(reloaded.ok, reloaded.problems.join('\n'));
  const newClient = await pki.issue('new-client', ['app']);
  const bundle = readFileSync(pki.store.layout.caCert, 'utf8');

  for (const [who, id] of [['old', oldClient], ['new', newClient]] as const) {
    const res = await request(b.port, { id, ca: oldRootOnly, path: `/r/${who}` });
    assert.equal(res.status, 200, `${who} client, partner trusting only the old root: ${res.text}`);
    assert.equal((await request(b.port, { id, ca: bundle, path: `/r/${who}` })).status, 200, `${who} client, partner with the new ca.crt`);
  }
  assert.deepEqual(up.seen.map((s) => s.headers['x-client-name']), ['old-client', 'old-client', 'old-client', 'new-client', 'new-client']);
});
