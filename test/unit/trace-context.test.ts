/**
 * W3C Trace Context parsing (src/request/trace.ts): which `traceparent` values the broker continues
 * and which it replaces, the tracestate it passes on, and the ids it draws itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acceptableTracestate, beginTrace, newSpanId, newTraceId, parseTraceparent, upstreamTraceparent, type TraceNote } from '../../src/request/trace.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const good = (flags = '01', version = '00') => `${version}-${TRACE}-${SPAN}-${flags}`;

test('a version 00 traceparent of exactly 55 characters is accepted, with its ids and sampled flag', () => {
  assert.deepEqual(parseTraceparent(good('01')), { traceId: TRACE, parentId: SPAN, sampled: true });
  assert.deepEqual(parseTraceparent(good('00')), { traceId: TRACE, parentId: SPAN, sampled: false });
});

test('the sampled flag is bit 0 of the flags, whatever the other bits', () => {
  const cases: Array<[string, boolean]> = [['00', false], ['01', true], ['02', false], ['03', true], ['fe', false], ['ff', true], ['80', false], ['81', true]];
  for (const [flags, sampled] of cases) assert.equal(parseTraceparent(good(flags))?.sampled, sampled, flags);
});

test('malformed traceparents are refused', () => {
  const refused: Array<[string, string | undefined]> = [
    ['absent', undefined],
    ['empty', ''],
    ['version 00 with a trailing field', `${good()}-abc`],
    ['version 00 with a trailing dash', `${good()}-`],
    ['version 00 one character short', good().slice(0, 54)],
    ['upper-case trace id', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['upper-case span id', `00-${TRACE}-${SPAN.toUpperCase()}-01`],
    ['upper-case flags', `00-${TRACE}-${SPAN}-0A`],
    ['upper-case version', `0A-${TRACE}-${SPAN}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', good('01', 'ff')],
    ['version ff with a further field', `${good('01', 'ff')}-abc`],
    ['non-hex character in the trace id', `00-${TRACE.slice(0, 31)}g-${SPAN}-01`],
    ['non-hex version', good('01', 'xx')],
    ['underscores instead of dashes', `00_${TRACE}_${SPAN}_01`],
    ['dash moved (trace id 31, span id 17)', `00-${TRACE.slice(0, 31)}-${SPAN}0-01`],
    ['dash missing before the flags', `00-${TRACE}-${SPAN}001`],
    ['flags of one digit', `00-${TRACE}-${SPAN}-1`],
    ['two headers joined by ", " (Node joins repeated headers so)', `${good()}, ${good()}`],
    ['leading space', ` ${good()}`],
    ['trailing space', `${good()} `],
    ['space inside the trace id', `00-${TRACE.slice(0, 31)} -${SPAN}-01`],
    ['a future version followed by text without a dash', `01-${TRACE}-${SPAN}-01abc`],
    ['a future version followed by a space', `01-${TRACE}-${SPAN}-01 x`],
    ['a future version with an all-zero trace id', `01-${'0'.repeat(32)}-${SPAN}-01-x`],
  ];
  for (const [what, v] of refused) assert.equal(parseTraceparent(v), undefined, `${what}: ${JSON.stringify(v)}`);
});

test('a future version is read as far as version 00 goes: extra "-" fields ignored, exact length accepted too', () => {
  assert.deepEqual(parseTraceparent(`01-${TRACE}-${SPAN}-01-what-comes-next`), { traceId: TRACE, parentId: SPAN, sampled: true });
  assert.deepEqual(parseTraceparent(`01-${TRACE}-${SPAN}-00`), { traceId: TRACE, parentId: SPAN, sampled: false });
  assert.deepEqual(parseTraceparent(`fe-${TRACE}-${SPAN}-03-x`), { traceId: TRACE, parentId: SPAN, sampled: true });
});

test('tracestate: passed on when printable, at most 512 characters and at most 32 members; refused otherwise', () => {
  assert.equal(acceptableTracestate('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'), 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
  assert.equal(acceptableTracestate(undefined), undefined);
  assert.equal(acceptableTracestate(''), undefined);
  const at512 = `k=${'v'.repeat(510)}`;
  assert.equal(acceptableTracestate(at512), at512);
  assert.equal(acceptableTracestate(`${at512}v`), undefined, '513 characters');
  const members = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join(',');
  assert.equal(acceptableTracestate(members(32)), members(32));
  assert.equal(acceptableTracestate(members(33)), undefined, '33 members');
  for (const bad of ['a=b\r\nx-injected: 1', 'a=b\n', 'a=\u0000', 'a=\u00e9', 'a=b\u007f', 'a=\tb']) assert.equal(acceptableTracestate(bad), undefined, JSON.stringify(bad));
});

test('new trace and span ids: lower-case hex of 32 and 16 digits, never all zero, distinct over many draws', () => {
  const traces = new Set<string>();
  const spans = new Set<string>();
  // more than one 4 KiB pool refill: 5000 * 24 bytes
  for (let i = 0; i < 5000; i++) {
    const tr = newTraceId();
    const sp = newSpanId();
    assert.match(tr, /^[0-9a-f]{32}$/);
    assert.match(sp, /^[0-9a-f]{16}$/);
    assert.notEqual(tr, '0'.repeat(32));
    assert.notEqual(sp, '0'.repeat(16));
    traces.add(tr);
    spans.add(sp);
  }
  assert.equal(traces.size, 5000);
  assert.equal(spans.size, 5000);
});

function note(): TraceNote {
  return { traceId: '', spanId: '', parentId: '', sampled: true, traceState: 'stale', upstreamSpanId: '', span: undefined };
}

test('beginTrace continues a well-formed traceparent (tracestate kept) and starts a fresh trace otherwise (flags 00, tracestate dropped)', () => {
  const t = note();
  beginTrace(t, good('01'), 'a=1');
  assert.deepEqual({ traceId: t.traceId, parentId: t.parentId, sampled: t.sampled, traceState: t.traceState }, { traceId: TRACE, parentId: SPAN, sampled: true, traceState: 'a=1' });
  t.upstreamSpanId = 'aaaaaaaaaaaaaaaa';
  assert.equal(upstreamTraceparent(t), `00-${TRACE}-aaaaaaaaaaaaaaaa-01`);

  const u = note();
  beginTrace(u, `00-${TRACE.toUpperCase()}-${SPAN}-01`, 'a=1');
  assert.match(u.traceId, /^[0-9a-f]{32}$/);
  assert.notEqual(u.traceId, TRACE);
  assert.deepEqual({ parentId: u.parentId, sampled: u.sampled, traceState: u.traceState }, { parentId: '', sampled: false, traceState: undefined });
  u.upstreamSpanId = 'bbbbbbbbbbbbbbbb';
  assert.equal(upstreamTraceparent(u), `00-${u.traceId}-bbbbbbbbbbbbbbbb-00`);
});
