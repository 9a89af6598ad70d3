/**
 * OpenTelemetry export (tracing.otlp): spans arrive at a local OTLP/HTTP receiver with the ids the
 * partner, the upstream and the request id agree on: the server span continues the partner's
 * traceparent (or roots the trace the request id names), the client span is its child and is what
 * the upstream's traceparent names; attributes say who, which route, what status, which upstream,
 * how many bytes. A refusal exports a server span with its code and no client span; a partner's
 * unsampled trace exports nothing and stays unsampled upstream; sampleRatio decides for the traces
 * the broker starts. Spans are flushed when the broker closes (the generation's tracer shuts down).
 * A collector that is down or refuses costs spans, never requests, and is reported at most once a
 * minute to whoever asked (otlpTracer's onExportError).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makePki, request, startBroker, startUpstream, type Upstream, deadPort } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { eventually } from '../helpers/within.ts';
import { validateConfig } from '../../src/config/index.ts';
import { newTraceId } from '../../src/request/index.ts';
import { otlpTracer } from '../../src/observability/tracing.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  status?: { code?: number; message?: string };
  attrs: Record<string, unknown>;
}

interface Receiver {
  endpoint: string;
  spans: OtlpSpan[];
  posts: Array<{ contentType: string | undefined; service: unknown }>;
}

const SERVER = 2;
const CLIENT = 3;
const STATUS_ERROR = 2;

/** An OTLP attribute value as a plain value (ints as numbers, arrays as arrays). */
function plain(v: Record<string, unknown>): unknown {
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('boolValue' in v) return v.boolValue;
  if ('doubleValue' in v) return v.doubleValue;
  if ('arrayValue' in v) return ((v.arrayValue as { values?: Array<Record<string, unknown>> }).values ?? []).map(plain);
  return undefined;
}

const attrsOf = (list: Array<{ key: string; value: Record<string, unknown> }> = []) => Object.fromEntries(list.map((a) => [a.key, plain(a.value)]));

/** A collector: POST /v1/traces with OTLP/JSON, every span kept with its attributes as an object. */
async function startReceiver(t: TestContext): Promise<Receiver> {
  const spans: OtlpSpan[] = [];
  const posts: Receiver['posts'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') return void res.writeHead(404).end();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: Array<{ resource?: { attributes?: [] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }> };
      for (const rs of body.resourceSpans ?? []) {
        posts.push({ contentType: req.headers['content-type'], service: attrsOf(rs.resource?.attributes)['service.name'] });
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ ...(s as unknown as OtlpSpan), attrs: attrsOf(s.attributes as []) });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, spans, posts };
}


const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';
const T2 = '0af7651916cd43dd8448eb211c80319c';
const P2 = 'b7ad6b7169203331';

const seenAt = (up: Upstream, path: string) => up.seen.find((s) => s.url.startsWith(path));

test('spans at the collector: server span continues the partner, client span names the upstream request, attributes right; refusals and failures too; unsampled partners export nothing', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const rx = await startReceiver(t);
  const dead = await deadPort();
  const b = await startBroker(t, pki, {
    routes: [
      { name: 'api', path: '/api', upstream: `${up.url}/base`, roles: ['user'], stripPath: true },
      { name: 'admin', path: '/admin', upstream: up.url, roles: ['admin'] },
      { name: 'dead', path: '/dead', upstream: `http://127.0.0.1:${dead}`, roles: ['user'] },
    ],
    tracing: { otlp: { endpoint: rx.endpoint, headers: { 'x-collector-key': 'k1' } }, serviceName: 'edge-test' },
  });
  const alice = await pki.issue('alice', ['user', 'ops']);

  // (a) continued: the partner's trace, its span as the parent
  const a = await request(b.port, { id: alice, ca: pki.ca, method: 'POST', path: '/api/items?q=1', body: 'hello', headers: { traceparent: `00-${T}-${P}-01`, tracestate: 'vendor=abc,other=1' } });
  assert.equal(a.status, 200, a.text);
  // (b) started: no traceparent
  const root = await request(b.port, { id: alice, ca: pki.ca, path: '/api/fresh' });
  assert.equal(root.status, 200);
  // (c) refused by the ACL
  const refused = await request(b.port, { id: alice, ca: pki.ca, path: '/admin/x' });
  assert.equal(refused.status, 403);
  // (d) the partner did not sample its trace
  const unsampled = await request(b.port, { id: alice, ca: pki.ca, path: '/api/quiet', headers: { traceparent: `00-${T2}-${P2}-00` } });
  assert.equal(unsampled.status, 200);
  // (f) the upstream is down
  const failed = await request(b.port, { id: alice, ca: pki.ca, path: '/dead/z' });
  assert.equal(failed.status, 502);

  // The generation's tracer flushes when the broker closes.
  await b.broker.close();
  await eventually(() => rx.spans.length >= 7, 'seven spans at the collector');

  await t.test('the exporter speaks OTLP/JSON with the configured service name', () => {
    assert.ok(rx.posts.length > 0);
    for (const p of rx.posts) {
      assert.match(String(p.contentType), /^application\/json/);
      assert.equal(p.service, 'edge-test');
    }
  });

  await t.test('(a) a continued trace: server span child of the partner, client span child of the server span, named by the upstream', () => {
    const [reqTrace, serverId] = String(a.headers['x-request-id']).split('-');
    assert.equal(reqTrace, T);
    const server = rx.spans.find((s) => s.spanId === serverId);
    assert.ok(server, 'the server span the request id names');
    assert.equal(server.traceId, T);
    assert.equal(server.parentSpanId, P);
    assert.equal((server as unknown as { traceState?: string }).traceState, 'vendor=abc,other=1', 'the partner\'s tracestate on the span it continues');
    assert.equal(server.kind, SERVER);
    assert.equal(server.name, 'POST api');
    const client = rx.spans.find((s) => s.parentSpanId === serverId);
    assert.ok(client, 'a client span under the server span');
    assert.equal(client.kind, CLIENT);
    assert.equal(client.traceId, T);
    const seen = seenAt(up, '/base/items');
    assert.ok(seen);
    assert.equal(seen.headers.traceparent, `00-${T}-${client.spanId}-01`);
    assert.equal(seen.headers['x-request-id'], `${T}-${serverId}`);
    assert.ok(BigInt(server.startTimeUnixNano) <= BigInt(client.startTimeUnixNano) && BigInt(client.endTimeUnixNano) <= BigInt(server.endTimeUnixNano), 'the client span within the server span');
    const ms = Number(BigInt(server.startTimeUnixNano) / 1_000_000n);
    assert.ok(Math.abs(ms - Date.now()) < 10 * 60_000, `start time is wall-clock time (${new Date(ms).toISOString()})`);
    assert.deepEqual(
      { ...server.attrs, 'client.port': typeof server.attrs['client.port'], 'broker.cert.serial': typeof server.attrs['broker.cert.serial'] },
      {
        'http.request.method': 'POST',
        'url.scheme': 'https',
        'url.path': '/api/items',
        'broker.route': 'api',
        'http.response.status_code': 200,
        'client.address': '127.0.0.1',
        'client.port': 'number',
        'broker.identity': 'alice',
        'broker.roles': ['user', 'ops'],
        'broker.cert.serial': 'string',
        'broker.request_id': `${T}-${serverId}`,
        'broker.decision': 'allow',
        'http.request.body.size': 5,
        'http.response.body.size': Number(a.headers['content-length']),
        'broker.upstream': up.url,
      },
    );
    assert.equal(server.status?.code ?? 0, 0);
    assert.deepEqual(client.attrs, {
      'http.request.method': 'POST',
      'server.address': '127.0.0.1',
      'server.port': up.port,
      'url.full': `${up.url}/base/items?q=1`,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': up.port,
      'http.response.status_code': 200,
    });
  });

  await t.test('(b) a started trace: a root server span in the trace the request id names', () => {
    const [traceId, serverId] = String(root.headers['x-request-id']).split('-');
    const server = rx.spans.find((s) => s.spanId === serverId);
    assert.ok(server);
    assert.equal(server.traceId, traceId);
    assert.ok(server.parentSpanId === undefined || server.parentSpanId === '', `no parent: ${server.parentSpanId}`);
    const client = rx.spans.find((s) => s.parentSpanId === serverId);
    assert.ok(client);
    assert.equal(seenAt(up, '/base/fresh')?.headers.traceparent, `00-${traceId}-${client.spanId}-01`);
  });

  await t.test('(c) a refusal: a server span with its code, no client span', () => {
    const [, serverId] = String(refused.headers['x-request-id']).split('-');
    const server = rx.spans.find((s) => s.spanId === serverId);
    assert.ok(server);
    assert.equal(server.attrs['http.response.status_code'], 403);
    assert.equal(server.attrs['broker.decision'], 'deny');
    assert.equal(server.attrs['broker.refusal.code'], refused.json().code);
    assert.equal(server.attrs['broker.identity'], 'alice');
    assert.equal(server.attrs['broker.upstream'], undefined);
    assert.equal(rx.spans.find((s) => s.parentSpanId === serverId), undefined);
  });

  await t.test('(d) an unsampled partner trace: nothing exported, the upstream told 00', () => {
    assert.equal(rx.spans.filter((s) => s.traceId === T2).length, 0);
    const seen = seenAt(up, '/base/quiet');
    assert.ok(seen);
    assert.match(String(seen.headers.traceparent), new RegExp(`^00-${T2}-[0-9a-f]{16}-00$`));
    assert.equal(String(unsampled.headers['x-request-id']).split('-')[0], T2);
  });

  await t.test('(f) an upstream failure: both spans in error, with the failure code', () => {
    const [, serverId] = String(failed.headers['x-request-id']).split('-');
    const server = rx.spans.find((s) => s.spanId === serverId);
    assert.ok(server);
    assert.equal(server.status?.code, STATUS_ERROR);
    assert.equal(server.attrs['broker.decision'], 'error');
    assert.equal(server.attrs['error.type'], 'BRK_ERR_UPSTREAM_UNAVAILABLE');
    const client = rx.spans.find((s) => s.parentSpanId === serverId);
    assert.ok(client);
    assert.equal(client.status?.code, STATUS_ERROR);
    assert.equal(client.attrs['error.type'], 'BRK_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(client.attrs['http.response.status_code'], undefined);
    assert.equal(client.attrs['server.port'], dead);
  });

  assert.equal(rx.spans.length, 7, `exactly the seven sampled spans: ${rx.spans.map((s) => s.name).join(', ')}`);
});

test('sampleRatio 0: traces the broker starts are not exported (and unsampled upstream), a sampled partner trace still is', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const rx = await startReceiver(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }], tracing: { otlp: { endpoint: rx.endpoint }, sampleRatio: 0 } });
  const alice = await pki.issue('alice', ['user']);
  const started = await request(b.port, { id: alice, ca: pki.ca, path: '/api/started' });
  const continued = await request(b.port, { id: alice, ca: pki.ca, path: '/api/continued', headers: { traceparent: `00-${T}-${P}-01` } });
  assert.equal(started.status, 200);
  assert.equal(continued.status, 200);
  await b.broker.close();
  await eventually(() => rx.spans.length >= 2, 'the continued trace\'s spans');
  assert.deepEqual(new Set(rx.spans.map((s) => s.traceId)), new Set([T]));
  assert.match(String(seenAt(up, '/api/started')?.headers.traceparent), /-00$/);
  assert.match(String(seenAt(up, '/api/continued')?.headers.traceparent), /-01$/);
});

test('a collector that is down: requests are answered as usual, the spans are dropped, and one warning says so', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const dead = await deadPort();
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }], tracing: { otlp: { endpoint: `http://127.0.0.1:${dead}/v1/traces`, timeout: '2s' } } });
  const alice = await pki.issue('alice', ['user']);
  for (let i = 0; i < 3; i++) assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: `/api/${i}` })).status, 200);
  await b.broker.close();
  const errors = b.logs.of('error').filter((l) => l.event !== 'alert'); // the test server certificate's expiry alert
  assert.equal(errors.length, 1, JSON.stringify(errors));
  assert.equal(errors[0]?.event, 'tracing');
  assert.equal(errors[0]?.level, 40);
  assert.ok((errors[0]?.dropped as number) >= 3, JSON.stringify(errors[0]));
  assert.match(String((errors[0]?.err as { message?: string })?.message), /ECONNREFUSED/);
});

test('otlpTracer: a collector that refuses exports is reported to onExportError at most once a minute, with the spans dropped', async (t) => {
  let posts = 0;
  const collector = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      posts++;
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"message":"no"}'); // not retryable: dropped at once
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => collector.close(() => resolve())));
  const { config, problems } = validateConfig({ tls: { server: 'localhost' }, tracing: { otlp: { endpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`, timeout: '2s' } } }, tempDir(t));
  assert.ok(config, problems.join('\n'));
  const reports: Array<{ err: Error; dropped: number }> = [];
  const tracer = await otlpTracer(config, { onExportError: (err, dropped) => reports.push({ err, dropped }) });
  t.after(() => tracer.close());
  /** A request as the tracer sees it: started, sent upstream, answered. */
  const one = async () => {
    const note = { traceId: newTraceId(), spanId: '', parentId: '', sampled: false, traceState: undefined, upstreamSpanId: '', span: undefined, id: '', req: { method: 'GET', headers: {}, socket: {} }, path: '/x', query: '', bytesIn: 0, bytesOut: null, upstreamAt: 0 };
    const at = performance.now();
    tracer.start(note, at);
    assert.equal(note.sampled, true);
    note.upstreamSpanId = note.spanId;
    tracer.upstream(note, at);
    assert.notEqual(note.upstreamSpanId, note.spanId, 'a client span for the upstream');
    tracer.end(note, 200, performance.now());
    await tracer.flush();
  };
  await one();
  assert.equal(posts, 1);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]?.dropped, 2);
  await one();
  assert.equal(posts, 2);
  assert.equal(reports.length, 1, 'the second failure within the minute is not reported again');
});

test('an endpoint that is not a URL: config check names it; otlpTracer refuses it too (BRK_ERR_CONFIG_INVALID), not a crash at the first span', async (t) => {
  const bad = validateConfig({ tls: { server: 'localhost' }, tracing: { otlp: { endpoint: 'http://exa mple/v1/traces' } } }, tempDir(t));
  assert.ok(bad.problems.some((p) => /^tracing\.otlp\.endpoint: .*is not a URL/.test(p)), bad.problems.join('\n'));
  const { config, problems } = validateConfig({ tls: { server: 'localhost' }, tracing: { otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces' } } }, tempDir(t));
  assert.ok(config, problems.join('\n'));
  const unchecked = { ...config, tracing: { ...config.tracing, otlp: { ...(config.tracing.otlp as NonNullable<typeof config.tracing.otlp>), endpoint: 'http://exa mple/v1/traces' } } };
  await assert.rejects(otlpTracer(unchecked), { code: 'BRK_ERR_CONFIG_INVALID' });
});
