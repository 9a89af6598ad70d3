/**
 * `broker usage`'s aggregation: reverse access lines per identity as before, and the forward
 * listener's lines (`"event":"forward"`) counted apart: tunnels, forwarded requests, refusals,
 * failures, egress bytes; a forward line never moves a reverse column.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageAggregator } from '../../src/observability/usage.ts';

const at = (minute: number) => `2026-12-01T10:${String(minute).padStart(2, '0')}:00.000Z`;

const reverse = (minute: number, principal: string | null, status: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ log: 'access', time: at(minute), principal, status, decision: status === 403 ? 'deny' : 'allow', bytesIn: 100, bytesOut: 1000, ...extra });

const forward = (minute: number, principal: string | null, method: string, status: number, outcome: string, bytesUp = 0, bytesDown = 0, code?: string) =>
  JSON.stringify({ log: 'access', event: 'forward', time: at(minute), principal, method, status, bytesUp, bytesDown, outcome, ...(code ? { code } : {}) });

const ZERO_FORWARD = { tunnels: 0, forwardRequests: 0, forwardRefused: 0, forwardFailed: 0, bytesUp: 0, bytesDown: 0 };

function aggregate(lines: string[], window = {}) {
  const agg = new UsageAggregator(window);
  for (const l of lines) agg.add(l);
  return agg;
}

test('reverse lines only: the reverse columns as before, the egress columns zero, no forward lines seen', () => {
  const agg = aggregate([reverse(1, 'acme', 200), reverse(2, 'acme', 403), reverse(3, 'acme', 429), reverse(4, 'acme', 502), reverse(5, 'globex', 200)]);
  assert.equal(agg.forwardLines, 0);
  assert.deepEqual(agg.rows(), [
    { principal: 'acme', requests: 4, allowed: 1, errors: 1, denials: 1, rateLimited: 1, bytesIn: 400, bytesOut: 4000, ...ZERO_FORWARD, first: at(1), last: at(4) },
    { principal: 'globex', requests: 1, allowed: 1, errors: 0, denials: 0, rateLimited: 0, bytesIn: 100, bytesOut: 1000, ...ZERO_FORWARD, first: at(5), last: at(5) },
  ]);
});

test('forward lines: tunnels and forwarded requests, refusals and failures apart from reverse denials and errors, egress bytes summed', () => {
  const agg = aggregate([
    reverse(1, 'acme', 200),
    reverse(2, 'acme', 403),
    forward(3, 'acme', 'CONNECT', 200, 'ok', 5120, 88211),
    forward(4, 'acme', 'CONNECT', 403, 'refused', 0, 0, 'BRK_ERR_FORWARD_DENIED'),
    forward(5, 'acme', 'CONNECT', 502, 'failed', 0, 0, 'BRK_ERR_FORWARD_UPSTREAM'),
    forward(6, 'acme', 'GET', 200, 'ok', 300, 4000),
    forward(7, 'acme', 'GET', 400, 'refused', 0, 0, 'BRK_ERR_FORWARD_NOT_PROXY'),
    // the client went away before an answer: status 0, failed
    forward(8, 'acme', 'CONNECT', 0, 'failed'),
    // only egress: a row of its own, no reverse request
    forward(9, 'initech', 'CONNECT', 200, 'ok', 10, 20),
    // no verified certificate: refused, under (none)
    forward(10, null, 'CONNECT', 401, 'refused', 0, 0, 'BRK_ERR_AUTH_REQUIRED'),
  ]);
  assert.equal(agg.forwardLines, 8);
  assert.deepEqual(agg.rows(), [
    { principal: 'acme', requests: 2, allowed: 1, errors: 0, denials: 1, rateLimited: 0, bytesIn: 200, bytesOut: 2000, tunnels: 4, forwardRequests: 2, forwardRefused: 2, forwardFailed: 2, bytesUp: 5420, bytesDown: 92211, first: at(1), last: at(8) },
    { principal: '(none)', requests: 0, allowed: 0, errors: 0, denials: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0, tunnels: 1, forwardRequests: 0, forwardRefused: 1, forwardFailed: 0, bytesUp: 0, bytesDown: 0, first: at(10), last: at(10) },
    { principal: 'initech', requests: 0, allowed: 0, errors: 0, denials: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0, tunnels: 1, forwardRequests: 0, forwardRefused: 0, forwardFailed: 0, bytesUp: 10, bytesDown: 20, first: at(9), last: at(9) },
  ]);
});

test('forward lines follow the time window like reverse ones; a forward line without outcome is judged by its status', () => {
  const lines = [forward(1, 'acme', 'CONNECT', 200, 'ok', 1, 2), forward(5, 'acme', 'CONNECT', 200, 'ok', 10, 20), reverse(6, 'acme', 200)];
  const rows = aggregate(lines, { from: new Date(at(2)), to: new Date(at(6)) }).rows();
  assert.deepEqual(rows.map((r) => [r.principal, r.requests, r.tunnels, r.bytesUp, r.bytesDown]), [['acme', 0, 1, 10, 20]]);
  const noOutcome = (status: number) => JSON.stringify({ log: 'access', event: 'forward', time: at(1), principal: 'acme', method: 'CONNECT', status, bytesUp: 0, bytesDown: 0 });
  const r = aggregate([noOutcome(403), noOutcome(502), noOutcome(200)]).rows()[0];
  assert.deepEqual([r?.tunnels, r?.forwardRefused, r?.forwardFailed], [3, 1, 1]);
});
