/** parseDuration / formatDuration: one number and one unit, nothing else. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../src/config/duration.ts';
import { isBrokerError } from '../../src/errors.ts';

const S = 1_000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

const GOOD: Array<[string, number]> = [
  ['250ms', 250],
  ['1s', S],
  ['90s', 90 * S],
  ['5m', 5 * M],
  ['15m', 15 * M],
  ['12h', 12 * H],
  ['90d', 90 * D],
  ['2w', 14 * D],
  ['1y', 365 * D],
  [' 30d ', 30 * D],
  ['007m', 7 * M],
  ['999999999s', 999_999_999 * S],
];

for (const [text, ms] of GOOD) {
  test(`parseDuration(${JSON.stringify(text)}) = ${ms}`, () => {
    assert.equal(parseDuration(text), ms);
  });
}

const BAD = ['', '5', 'm', '5x', '5M', '5 m', '1h30m', '-5m', '+5m', '1.5h', '0s', '0d', '0ms', '1000000000s', '5mm', 'ms', 'five minutes', '1e3s'];

for (const text of BAD) {
  test(`parseDuration(${JSON.stringify(text)}) is refused with BRK_ERR_USAGE_TTL`, () => {
    assert.throws(
      () => parseDuration(text, '--ttl'),
      (err: unknown) => isBrokerError(err, 'BRK_ERR_USAGE_TTL') && err.message.startsWith('--ttl ') && err.message.includes(JSON.stringify(text)),
    );
  });
}

test('formatDuration picks the largest exact unit', () => {
  const cases: Array<[number, string]> = [
    [365 * D, '1y'],
    [14 * D, '2w'],
    [90 * D, '90d'],
    [D, '1d'],
    [36 * H, '36h'],
    [5 * M, '5m'],
    [90 * S, '90s'],
    [1500, '1500ms'],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `${ms} ms`);
});

test('formatDuration and parseDuration round-trip', () => {
  for (const ms of [250, S, 45 * S, 5 * M, 12 * H, 30 * D, 90 * D, 21 * D, 730 * D]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
});
