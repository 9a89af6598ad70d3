/**
 * "Free when off", checked on the built `broker serve`: a module hook (module.registerHooks, loaded
 * with --import before the broker) writes every module URL the process resolves to a file. With
 * tracing.otlp absent, a request goes through and neither src/observability/tracing nor any
 * @opentelemetry module was ever resolved; with it configured, both were, and the request's spans
 * reach the collector when the broker stops on SIGTERM (the retired generation flushes).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, NODE, tempDir } from '../helpers/cli.ts';
import { makePki, request, startUpstream } from '../helpers/broker.ts';
import { within } from '../helpers/within.ts';

const HOOK = `
import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
const log = process.env.BROKER_TEST_MODULE_LOG;
registerHooks({
  resolve(specifier, context, next) {
    const r = next(specifier, context);
    appendFileSync(log, (context.parentURL ?? '-') + ' ' + r.url + '\\n');
    return r;
  },
});
`;

/** The SDK, exporter, resources… anything OpenTelemetry but the no-op API. */
const OTEL_SDK = /\/@opentelemetry\/(?!api\/)/;
const OTEL_API = /\/@opentelemetry\/api\//;
const TRACING = /\/dist\/observability\/tracing\.js$/;
const PIPELINE = /\/dist\/pipeline\.js$/;

interface Run {
  /** Every module resolved: [the importing module's URL, the module's URL]. */
  modules: Array<[string, string]>;
  status: number;
  exit: number | null;
}

/** `broker serve` with the module hook; one request to /api/x; SIGTERM; what it resolved. */
async function serveOnce(t: TestContext, tracing: string | undefined): Promise<Run> {
  const dir = tempDir(t);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const alice = await pki.issue('alice', ['user']);
  const hook = join(dir, 'hook.mjs');
  const log = join(dir, 'modules.log');
  writeFileSync(hook, HOOK);
  writeFileSync(log, '');
  const config = join(dir, 'broker.yaml');
  writeFileSync(
    config,
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      `pki: { dir: ${JSON.stringify(pki.dir)} }`,
      'tls: { server: localhost }',
      'bans: { enabled: false }',
      'routes:',
      `  - { name: api, path: /api, upstream: "${up.url}", roles: [user] }`,
      ...(tracing === undefined ? [] : [`tracing: { otlp: { endpoint: "${tracing}" } }`]),
    ].join('\n'),
  );
  const child = spawn(NODE, ['--import', pathToFileURL(hook).href, BIN, 'serve', '--config', config], { cwd: dir, env: { ...process.env, BROKER_TEST_MODULE_LOG: log }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  let out = '';
  const exited = once(child, 'exit');
  const port = await within(
    new Promise<number>((resolve, reject) => {
      for (const s of [child.stdout, child.stderr]) {
        s.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          for (const line of out.split('\n')) {
            if (!line.startsWith('{')) continue;
            const l = JSON.parse(line) as Record<string, unknown>;
            if (l.event === 'listening') resolve(Number(l.port));
          }
        });
      }
      void exited.then(() => reject(new Error(`broker exited:\n${out}`)));
    }),
    30_000,
    'the listening line',
  );
  const r = await request(port, { id: alice, ca: pki.ca, path: '/api/x' });
  child.kill('SIGTERM');
  const [code] = (await within(exited, 30_000, 'exit after SIGTERM')) as [number | null];
  const modules = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]);
  return { modules, status: r.status, exit: code };
}

test('tracing off: a request goes through, and neither the tracing module nor the OpenTelemetry SDK or exporter is ever loaded', async (t) => {
  const run = await serveOnce(t, undefined);
  assert.equal(run.status, 200);
  assert.equal(run.exit, 0);
  assert.ok(run.modules.some(([, u]) => PIPELINE.test(u)), 'the hook saw the broker\'s modules');
  assert.deepEqual(run.modules.filter(([, u]) => OTEL_SDK.test(u) || TRACING.test(u)), []);
  // prom-client requires the OpenTelemetry API (a no-op facade with no provider registered) for
  // its exemplars: the one OpenTelemetry module a broker without tracing loads, and nothing of ours asks for it.
  const importers = new Set(run.modules.filter(([from, u]) => OTEL_API.test(u) && !OTEL_API.test(from)).map(([from]) => from));
  for (const from of importers) assert.match(from, /\/prom-client\//, 'only prom-client asks for the OpenTelemetry API');
});

test('tracing on: the tracing module and the OpenTelemetry SDK are loaded, and the spans reach the collector on SIGTERM', async (t) => {
  const bodies: string[] = [];
  const rx = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => rx.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => rx.close(() => resolve())));
  const run = await serveOnce(t, `http://127.0.0.1:${(rx.address() as AddressInfo).port}/v1/traces`);
  assert.equal(run.status, 200);
  assert.equal(run.exit, 0);
  assert.ok(run.modules.some(([, u]) => TRACING.test(u)));
  assert.ok(run.modules.some(([, u]) => u.includes('/@opentelemetry/sdk-trace/')));
  assert.ok(run.modules.some(([, u]) => u.includes('/@opentelemetry/exporter-trace-otlp-http/')));
  const kinds = bodies.flatMap((b) => (JSON.parse(b) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ kind: number }> }> }> }).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => s.kind))));
  assert.deepEqual(kinds.sort(), [2, 3], 'a server span and a client span');
});
