/**
 * The CRL rollback rule, issuer by issuer: a higher number moves on; the same bytes are no change;
 * anything else is accepted only when it is not older and still lists every serial the loaded CRL
 * lists (a CA that restarted its numbering, CRLs without numbers), and refused otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crlOrder, type CrlRecord } from '../../src/tls/crl-order.ts';

const ISSUER = 'aa';
const T0 = new Date('2026-12-01T00:00:00Z');
const T1 = new Date('2026-12-02T00:00:00Z');

function rec(o: { number?: bigint; at?: Date; serials?: string[]; digest?: string }): ReadonlyMap<string, CrlRecord> {
  // the issuer Name is not valid DER here: messages fall back to its hex
  return new Map([[ISSUER, { number: o.number, thisUpdate: o.at ?? T1, serials: o.serials ?? [], digest: o.digest ?? `${o.number}-${o.at?.getTime()}-${(o.serials ?? []).join()}`, issuer: Buffer.from([0xaa]) }]]);
}

const loaded = rec({ number: 5n, at: T1, serials: ['01', '02'] });

const cases: Array<[string, ReadonlyMap<string, CrlRecord>, 'ok' | 'renumbered' | 'refused']> = [
  ['a higher number', rec({ number: 6n, at: T1, serials: ['01'] }), 'ok'],
  ['the same CRL (same bytes)', rec({ number: 5n, at: T1, serials: ['01', '02'], digest: loaded.get(ISSUER)!.digest }), 'ok'],
  ['a lower number, older, a serial gone (an old CRL put back)', rec({ number: 4n, at: T0, serials: ['01'] }), 'refused'],
  ['a lower number, older, nothing gone', rec({ number: 4n, at: T0, serials: ['01', '02'] }), 'refused'],
  ['the same number, other content, a serial gone', rec({ number: 5n, at: T1, serials: ['01'] }), 'refused'],
  ['the same number, not older, nothing gone', rec({ number: 5n, at: T1, serials: ['01', '02', '03'] }), 'renumbered'],
  ['a lower number, newer, nothing gone (numbering restarted)', rec({ number: 1n, at: new Date(T1.getTime() + 1000), serials: ['02', '01'] }), 'renumbered'],
  ['a lower number, newer, a serial gone', rec({ number: 1n, at: new Date(T1.getTime() + 1000), serials: ['02'] }), 'refused'],
  ['no number, newer, nothing gone', rec({ at: new Date(T1.getTime() + 1000), serials: ['01', '02'] }), 'renumbered'],
  ['no number, a serial gone', rec({ at: new Date(T1.getTime() + 1000), serials: ['01'] }), 'refused'],
];

for (const [name, next, want] of cases) {
  test(`CRL order: ${name} → ${want}`, () => {
    const r = crlOrder(loaded, next, 'crl.pem');
    assert.equal(r.refused.length, want === 'refused' ? 1 : 0, r.refused.join('\n'));
    assert.equal(r.renumbered.length, want === 'renumbered' ? 1 : 0, r.renumbered.join('\n'));
    for (const line of r.refused) assert.match(line, /^BRK_ERR_TLS_CRL_ROLLBACK: crl\.pem: the CRL of "aa" has .*; still serving the loaded CRL \(.+\)$/);
  });
}

test('CRL order: numberless on both sides are ordered by thisUpdate and content', () => {
  const before = rec({ at: T1, serials: ['01'] });
  assert.equal(crlOrder(before, rec({ at: T0, serials: ['01'] }), 'f').refused.length, 1, 'older');
  assert.equal(crlOrder(before, rec({ at: T1, serials: ['01', '02'] }), 'f').refused.length, 0, 'same time, more serials');
});

test('CRL order: an issuer the loaded bundle did not have is taken as it is', () => {
  const r = crlOrder(loaded, new Map([['bb', { number: 1n, thisUpdate: T0, serials: [], digest: 'x', issuer: Buffer.from([0xbb]) }]]), 'f');
  assert.deepEqual(r, { refused: [], renumbered: [] });
});
