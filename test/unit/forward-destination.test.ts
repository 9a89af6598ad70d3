/** The forward listener's SSRF guard: IP literals in every spelling, the deny set, one lookup whose every answer is checked. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { normaliseIpLiteral, resolveDestination, specialRange, type LookupFn, type SpecialRange } from '../../src/forward/destination.ts';
import { within } from '../helpers/within.ts';

const denyAll = { allowPrivate: (): boolean => false };

/** A rule's allowPrivate CIDRs as the listener would hold them. */
function allow(...cidrs: string[]): (address: string, family: 4 | 6) => boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [a, bits] = c.split('/') as [string, string];
    list.addSubnet(a, Number(bits), a.includes(':') ? 'ipv6' : 'ipv4');
  }
  return (address, family) => list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** A lookup stub answering from a table, counting its calls. */
function stub(answers: Record<string, Array<{ address: string; family: 4 | 6 }>>): LookupFn & { calls: string[] } {
  const calls: string[] = [];
  const fn = async (name: string): Promise<Array<{ address: string; family: 4 | 6 }>> => {
    calls.push(name);
    const a = answers[name];
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return a;
  };
  return Object.assign(fn, { calls });
}

const noLookup: LookupFn = async (name) => {
  throw new Error(`an IP literal was resolved: ${name}`);
};

/** [spelling, the canonical address, and the range it is refused for ('public': accepted)] */
const LITERALS: Array<[string, string, SpecialRange | 'public']> = [
  // IPv4 loopback in every inet_aton spelling
  ['127.0.0.1', '127.0.0.1', 'loopback'],
  ['2130706433', '127.0.0.1', 'loopback'],
  ['0177.0.0.1', '127.0.0.1', 'loopback'],
  ['017700000001', '127.0.0.1', 'loopback'],
  ['0x7f.0.0.1', '127.0.0.1', 'loopback'],
  ['0X7F.0.0.1', '127.0.0.1', 'loopback'],
  ['0x7f000001', '127.0.0.1', 'loopback'],
  ['0x7F000001', '127.0.0.1', 'loopback'],
  ['127.1', '127.0.0.1', 'loopback'],
  ['127.0.1', '127.0.0.1', 'loopback'],
  ['0x7f.1', '127.0.0.1', 'loopback'],
  ['0177.1', '127.0.0.1', 'loopback'],
  ['0x7f.0.0x0.01', '127.0.0.1', 'loopback'],
  ['127.0x00.00.1', '127.0.0.1', 'loopback'],
  ['127.000.000.001', '127.0.0.1', 'loopback'],
  ['127.0.0.1.', '127.0.0.1', 'loopback'],
  ['127.255.255.254', '127.255.255.254', 'loopback'],
  ['127.16777215', '127.255.255.255', 'loopback'],
  // private, link-local, metadata, CGNAT
  ['10.0.0.1', '10.0.0.1', 'private'],
  ['012.0.0.1', '10.0.0.1', 'private'],
  ['167772161', '10.0.0.1', 'private'],
  ['10.1', '10.0.0.1', 'private'],
  ['172.16.0.1', '172.16.0.1', 'private'],
  ['172.31.255.255', '172.31.255.255', 'private'],
  ['192.168.1.1', '192.168.1.1', 'private'],
  ['0xc0a80101', '192.168.1.1', 'private'],
  ['192.168.257', '192.168.1.1', 'private'],
  ['169.254.169.254', '169.254.169.254', 'metadata'],
  ['2852039166', '169.254.169.254', 'metadata'],
  ['0xa9fea9fe', '169.254.169.254', 'metadata'],
  ['0251.0376.0251.0376', '169.254.169.254', 'metadata'],
  ['169.254.43518', '169.254.169.254', 'metadata'],
  ['169.254.0.1', '169.254.0.1', 'link-local'],
  ['100.100.100.200', '100.100.100.200', 'metadata'],
  ['100.64.0.1', '100.64.0.1', 'cgnat'],
  ['100.127.255.255', '100.127.255.255', 'cgnat'],
  // unspecified, broadcast, multicast, reserved, documentation, benchmarking
  ['0.0.0.0', '0.0.0.0', 'unspecified'],
  ['0', '0.0.0.0', 'unspecified'],
  ['0x0', '0.0.0.0', 'unspecified'],
  ['0.1.2.3', '0.1.2.3', 'unspecified'],
  ['255.255.255.255', '255.255.255.255', 'broadcast'],
  ['4294967295', '255.255.255.255', 'broadcast'],
  ['224.0.0.1', '224.0.0.1', 'multicast'],
  ['239.255.255.250', '239.255.255.250', 'multicast'],
  ['240.0.0.1', '240.0.0.1', 'reserved'],
  ['192.0.0.8', '192.0.0.8', 'reserved'],
  ['192.0.2.1', '192.0.2.1', 'documentation'],
  ['198.51.100.7', '198.51.100.7', 'documentation'],
  ['203.0.113.9', '203.0.113.9', 'documentation'],
  ['198.18.0.1', '198.18.0.1', 'benchmarking'],
  ['198.19.255.255', '198.19.255.255', 'benchmarking'],
  // IPv4 neighbours of the ranges, and public addresses
  ['93.184.215.14', '93.184.215.14', 'public'],
  ['1572394766', '93.184.215.14', 'public'],
  ['8.8.8.8', '8.8.8.8', 'public'],
  ['172.15.255.255', '172.15.255.255', 'public'],
  ['172.32.0.0', '172.32.0.0', 'public'],
  ['100.63.255.255', '100.63.255.255', 'public'],
  ['100.128.0.0', '100.128.0.0', 'public'],
  ['11.0.0.1', '11.0.0.1', 'public'],
  ['223.255.255.255', '223.255.255.255', 'public'],
  // IPv6: loopback, unspecified, link-local (zone ids), ULA, site-local, multicast
  ['::1', '::1', 'loopback'],
  ['[::1]', '::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', '::1', 'loopback'],
  ['[0000:0000:0000:0000:0000:0000:0000:0001]', '::1', 'loopback'],
  ['::', '::', 'unspecified'],
  ['[::]', '::', 'unspecified'],
  ['fe80::1', 'fe80::1', 'link-local'],
  ['FE80::1', 'fe80::1', 'link-local'],
  ['fe80::1%eth0', 'fe80::1', 'link-local'],
  ['[fe80::1%25eth0]', 'fe80::1', 'link-local'],
  ['febf:ffff::1', 'febf:ffff::1', 'link-local'],
  ['fc00::1', 'fc00::1', 'ula'],
  ['fd12:3456:789a::1', 'fd12:3456:789a::1', 'ula'],
  ['fd00:ec2::254', 'fd00:ec2::254', 'metadata'],
  ['fec0::1', 'fec0::1', 'site-local'],
  ['ff02::1', 'ff02::1', 'multicast'],
  ['ff05::1:3', 'ff05::1:3', 'multicast'],
  // IPv6 forms carrying an IPv4 address: checked as that address
  ['::ffff:127.0.0.1', '::ffff:7f00:1', 'loopback'],
  ['[::ffff:127.0.0.1]', '::ffff:7f00:1', 'loopback'],
  ['::ffff:7f00:1', '::ffff:7f00:1', 'loopback'],
  ['0:0:0:0:0:ffff:7f00:0001', '::ffff:7f00:1', 'loopback'],
  ['::FFFF:a9fe:a9fe', '::ffff:a9fe:a9fe', 'metadata'],
  ['::ffff:10.0.0.1', '::ffff:a00:1', 'private'],
  ['::ffff:192.168.0.1', '::ffff:c0a8:1', 'private'],
  ['::ffff:0.0.0.0', '::ffff:0:0', 'unspecified'],
  ['::127.0.0.1', '::7f00:1', 'loopback'],
  ['::7f00:1', '::7f00:1', 'loopback'],
  ['::10.0.0.1', '::a00:1', 'private'],
  ['::93.184.215.14', '::5db8:d70e', 'ipv4-compatible'],
  ['64:ff9b::7f00:1', '64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::127.0.0.1', '64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', '64:ff9b::a9fe:a9fe', 'metadata'],
  ['64:ff9b::c0a8:101', '64:ff9b::c0a8:101', 'private'],
  ['64:ff9b:1::1', '64:ff9b:1::1', 'nat64'],
  ['2002:7f00:0001::', '2002:7f00:1::', 'loopback'],
  ['2002:a9fe:a9fe::1', '2002:a9fe:a9fe::1', 'metadata'],
  ['2002:c0a8:101::', '2002:c0a8:101::', 'private'],
  ['2002:5db8:d70e::1', '2002:5db8:d70e::1', '6to4'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
  // the rest of the IPv6 special registry
  ['2001:db8::1', '2001:db8::1', 'documentation'],
  ['3fff::1', '3fff::1', 'documentation'],
  ['2001:2::1', '2001:2::1', 'benchmarking'],
  ['2001:10::1', '2001:10::1', 'reserved'],
  ['100::1', '100::1', 'reserved'],
  ['5f00::1', '5f00::1', 'reserved'],
  ['4000::1', '4000::1', 'reserved'],
  ['1:0:0:2::3', '1:0:0:2::3', 'reserved'],
  // IPv6 public
  ['2606:4700::1111', '2606:4700::1111', 'public'],
  ['[2606:4700::1111]', '2606:4700::1111', 'public'],
  ['2606:4700:0:0:0:0:0:1111', '2606:4700::1111', 'public'],
  ['2606:4700:0000:0000:0000:0000:0000:1111', '2606:4700::1111', 'public'],
  ['2606:4700::6810:84E5', '2606:4700::6810:84e5', 'public'],
  ['2a00:1450:4001:0:0:0:0:200e', '2a00:1450:4001::200e', 'public'],
  ['2001:4860:4860::8888', '2001:4860:4860::8888', 'public'],
  ['::ffff:93.184.215.14', '::ffff:5db8:d70e', 'public'],
  ['64:ff9b::5db8:d70e', '64:ff9b::5db8:d70e', 'public'],
];

test(`${LITERALS.length} IP literal spellings: normalised, and refused with their range or accepted when public`, async () => {
  assert.ok(LITERALS.length >= 60);
  for (const [spelling, canonical, expected] of LITERALS) {
    const n = normaliseIpLiteral(spelling);
    assert.equal(n?.address, canonical, spelling);
    assert.equal(specialRange(n.address, n.family), expected === 'public' ? undefined : expected, spelling);
    const d = await resolveDestination(spelling, { ...denyAll, lookup: noLookup });
    if (expected === 'public') {
      const connectTo = canonical.startsWith('::ffff:') ? spelling.slice(7) : canonical; // IPv4-mapped: connect over IPv4
      assert.deepEqual(d, { ok: true, host: connectTo, address: connectTo, family: connectTo.includes(':') ? 6 : 4, literal: true }, spelling);
    } else {
      assert.equal(d.ok, false, spelling);
      assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_PRIVATE' && d.reason.includes(`(${expected})`), `${spelling}: ${JSON.stringify(d)}`);
    }
  }
});

test('an independent parser agrees: the WHATWG URL host parser reads every spelling (zone ids aside) as the same address', () => {
  for (const [spelling, canonical] of LITERALS) {
    if (spelling.includes('%')) continue; // URLs carry no zone ids
    const inner = spelling.replace(/^\[|\]$/g, '');
    const host = new URL(`http://${inner.includes(':') ? `[${inner}]` : inner}/`).hostname;
    assert.equal(host, canonical.includes(':') ? `[${canonical}]` : canonical, spelling);
  }
});

test('not hosts: refused BRK_ERR_FORWARD_BAD_HOST without a lookup', async () => {
  const bad = [
    '', '.', '..', 'a..b', '.example.com', 'example..com', '-a.example', 'a-.example', 'a b.example', 'a/b', 'a:b', 'a@b',
    'ex%41mple.com', 'ünicode.example', 'a'.repeat(64) + '.example', `${'a.'.repeat(127)}com`, 'example.com..',
    // ends in a number but is no IPv4 address: resolvers read these differently, so they are never names
    '1.2.3.4.5', '256.1.1.1', '127.0.0.256', '08.0.0.1', '0x1g.0', '4294967296', '0x100000000', 'host.123', 'host.0x1f',
    // IPv6 that is not: brackets around IPv4 or a name, bad groups, two "::", bad embedded IPv4, empty zone
    '[127.0.0.1]', '[example.com]', '[::1', '::1]', '1::2::3', '12345::1', '::ffff:0177.0.0.1', '::ffff:1.2.3', '1:2:3:4:5:6:7:8:9', 'fe80::1%',
    // a public address with a zone id: zone ids are refused outright
    '2606:4700::1111%eth0',
  ];
  for (const h of bad) {
    const d = await resolveDestination(h, { ...denyAll, lookup: noLookup });
    assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_BAD_HOST', `${JSON.stringify(h)}: ${JSON.stringify(d)}`);
  }
});

test('names: lower-cased, one trailing dot dropped, resolved once; the address returned is the one checked', async () => {
  const lookup = stub({ 'api.partner.example': [{ address: '93.184.215.14', family: 4 }], x_y: [{ address: '2606:4700::1111', family: 6 }] });
  assert.deepEqual(await resolveDestination('API.Partner.Example.', { ...denyAll, lookup }), { ok: true, host: 'api.partner.example', address: '93.184.215.14', family: 4, literal: false });
  assert.deepEqual(await resolveDestination('x_y', { ...denyAll, lookup }), { ok: true, host: 'x_y', address: '2606:4700::1111', family: 6, literal: false });
  assert.deepEqual(lookup.calls, ['api.partner.example', 'x_y']);
});

test('a name that resolves to 127.0.0.1 is refused; the metadata names are refused by address', async () => {
  const lookup = stub({
    'evil.example': [{ address: '127.0.0.1', family: 4 }],
    'metadata.google.internal': [{ address: '169.254.169.254', family: 4 }],
    'mapped.example': [{ address: '::ffff:10.1.2.3', family: 6 }],
  });
  for (const [name, range] of [['evil.example', 'loopback'], ['metadata.google.internal', 'metadata'], ['mapped.example', 'private']] as const) {
    const d = await resolveDestination(name, { ...denyAll, lookup });
    assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_PRIVATE' && d.reason.includes(`(${range})`), `${name}: ${JSON.stringify(d)}`);
  }
});

test('ANY special answer refuses the name, whatever its position: no "good" address is picked', async () => {
  const mixes: Array<Array<{ address: string; family: 4 | 6 }>> = [
    [{ address: '93.184.215.14', family: 4 }, { address: '127.0.0.1', family: 4 }],
    [{ address: '10.0.0.5', family: 4 }, { address: '93.184.215.14', family: 4 }],
    [{ address: '2606:4700::1111', family: 6 }, { address: 'fd00::1', family: 6 }, { address: '93.184.215.14', family: 4 }],
    [{ address: '93.184.215.14', family: 4 }, { address: '::ffff:169.254.169.254', family: 6 }],
  ];
  for (const answer of mixes) {
    const d = await resolveDestination('mixed.example', { ...denyAll, lookup: stub({ 'mixed.example': answer }) });
    assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_PRIVATE', JSON.stringify(answer));
  }
});

test('allowPrivate opens exactly the ranges a rule names, and the address returned is the checked one', async () => {
  const lookup = stub({ 'svc.internal': [{ address: '127.0.0.1', family: 4 }], 'both.internal': [{ address: '127.0.0.2', family: 4 }, { address: '10.0.0.1', family: 4 }] });
  const loopback = { allowPrivate: allow('127.0.0.0/8'), lookup };
  assert.deepEqual(await resolveDestination('svc.internal', loopback), { ok: true, host: 'svc.internal', address: '127.0.0.1', family: 4, literal: false });
  assert.deepEqual(await resolveDestination('0x7f.1', loopback), { ok: true, host: '127.0.0.1', address: '127.0.0.1', family: 4, literal: true });
  assert.deepEqual(await resolveDestination('::ffff:127.0.0.1', loopback), { ok: true, host: '127.0.0.1', address: '127.0.0.1', family: 4, literal: true });
  // one answer outside the allowed range still refuses the name
  const d = await resolveDestination('both.internal', loopback);
  assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_PRIVATE' && d.reason.includes('10.0.0.1'));
  assert.ok(!(await resolveDestination('169.254.169.254', loopback)).ok);
  assert.ok(!(await resolveDestination('::1', loopback)).ok);
  // allowPrivate sees the canonical address and its family
  const seen: string[] = [];
  await resolveDestination('[0:0::1]', { allowPrivate: (a, f) => (seen.push(`${a}/${f}`), true) });
  assert.deepEqual(seen, ['::1/6']);
  // a zone id is refused even where allowPrivate covers the address: the caller would connect without it
  const z = await resolveDestination('fe80::1%eth0', { allowPrivate: allow('fe80::/10') });
  assert.ok(!z.ok && z.reason.includes('zone'));
});

test('lookup failures, empty and malformed answers, and a hanging lookup are BRK_ERR_FORWARD_RESOLVE', async () => {
  const lookup = stub({ 'empty.example': [], 'junk.example': [{ address: 'not-an-ip', family: 4 }], 'liar.example': [{ address: '::1', family: 4 }] });
  for (const name of ['nxdomain.example', 'empty.example', 'junk.example', 'liar.example']) {
    const d = await resolveDestination(name, { ...denyAll, lookup });
    assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_RESOLVE', `${name}: ${JSON.stringify(d)}`);
  }
  const hang: LookupFn = () => new Promise(() => {});
  const d = await within(resolveDestination('slow.example', { ...denyAll, lookup: hang, timeoutMs: 50 }), 10_000, 'the lookup timeout');
  assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_RESOLVE' && d.reason.includes('timed out'), JSON.stringify(d));
});

test('the real resolver: localhost (from /etc/hosts) is refused without allowPrivate, accepted with loopback allowed', async () => {
  const d = await within(resolveDestination('localhost', denyAll), 10_000, 'resolving localhost');
  assert.ok(!d.ok && d.code === 'BRK_ERR_FORWARD_PRIVATE' && d.reason.includes('(loopback)'), JSON.stringify(d));
  const ok = await within(resolveDestination('localhost', { allowPrivate: allow('127.0.0.0/8', '::1/128') }), 10_000, 'resolving localhost');
  assert.ok(ok.ok && (ok.address === '127.0.0.1' || ok.address === '::1'), JSON.stringify(ok));
});

test('specialRange: an address of the wrong family or no address is never ordinary', () => {
  assert.equal(specialRange('127.0.0.1', 6), 'reserved');
  assert.equal(specialRange('::1', 4), 'reserved');
  assert.equal(specialRange('example.com', 4), 'reserved');
  assert.equal(specialRange('93.184.215.14', 4), undefined);
});
