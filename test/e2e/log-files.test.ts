/**
 * `broker serve` with its log streams routed to files, as an operator runs it: each file holds its
 * own stream only, logrotate's rename + SIGUSR2 loses no line, a stream set to `off` writes nothing,
 * and `broker usage` reads the access log back into per-identity counts. The upstream lives in this
 * process, so every request runs asynchronously.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { broker } from '../helpers/cli.ts';
import { makeCa, PASSPHRASE, type TestCa } from '../helpers/pki.ts';
import { request, type Identity } from '../helpers/broker.ts';
import { serve as serveIn, type Served } from '../helpers/serve.ts';
import { eventually } from '../helpers/within.ts';

type Line = Record<string, unknown>;

/** Every line of a log file, each parsed as JSON (a line that is not JSON fails the test). */
function lines(file: string): Line[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), `${file} ends mid-line`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

const jsonLines = (text: string): Line[] => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);

/** `broker serve` in `ca.root` with `config`; resolves once it logged "listening" (on stderr, the error stream). */
const serve = (t: TestContext, ca: TestCa, config: string): Promise<Served> => serveIn(t, ca.root, config);

function identity(ca: TestCa, name: string, roles: string[]): Identity {
  const r = ca.signing(['pki', 'issue', name, ...roles.flatMap((role) => ['--role', role]), '--out', name]);
  assert.equal(r.code, 0, r.stderr);
  return { cert: readFileSync(join(ca.root, name, `${name}.crt`), 'utf8'), key: readFileSync(join(ca.root, name, `${name}.key`), 'utf8'), serial: '' };
}

async function setup(t: TestContext) {
  const ca = makeCa(t);
  const server = ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']);
  assert.equal(server.code, 0, server.stderr);
  const alice = identity(ca, 'alice', ['user']);
  const bob = identity(ca, 'bob', ['user']);
  const upstream = createServer((req, res) => res.end(JSON.stringify({ url: req.url })));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const config = (log: string) =>
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'pki: { dir: ./pki }',
      'tls: { server: localhost }',
      `log: ${log}`,
      'rateLimit: { rate: 1000000, per: 1s, burst: 1000000 }',
      'bans: { enabled: false }',
      'routes:',
      `  - { name: api, path: /api, upstream: "${up}", roles: [user] }`,
      `  - { name: admin, path: /admin, upstream: "${up}", roles: [admin] }`,
      `  - { name: scarce, path: /scarce, upstream: "${up}", roles: [user], rateLimit: { rate: 1, per: 1h, burst: 1 } }`,
      '',
    ].join('\n');
  return { ca, alice, bob, config, caPem: readFileSync(ca.file('ca.crt'), 'utf8') };
}

const SECRET = { authorization: 'Bearer s3cret-token', cookie: 'session=s3cret-cookie' };

test('each stream to its own file; rename + SIGUSR2 moves writing to a new file with no line lost; broker usage counts per identity', async (t) => {
  const { ca, alice, bob, config, caPem } = await setup(t);
  const authFile = join(ca.root, 'logs', 'auth.log');
  const accessFile = join(ca.root, 'logs', 'access.log');
  const rotated = `${accessFile}.1`;
  const b = await serve(t, ca, config('{ auth: logs/auth.log, access: logs/access.log, error: stderr, audit: off }'));

  const send = async (who: Identity, path: string) => (await request(b.port, { id: who, ca: caPem, path, headers: SECRET })).status;
  const batch1: Array<[Identity, string, number]> = [
    [alice, '/api/1', 200],
    [alice, '/api/2', 200],
    [alice, '/api/3', 200],
    [alice, '/admin/1', 403],
    [alice, '/admin/2', 403],
    [alice, '/scarce/1', 200],
    [alice, '/scarce/2', 429],
    [alice, '/scarce/3', 429],
    [bob, '/api/1', 200],
    [bob, '/api/2', 200],
  ];
  const batch2: Array<[Identity, string, number]> = [
    [alice, '/api/4', 200],
    [alice, '/api/5', 200],
    [bob, '/api/3', 200],
    [bob, '/admin/1', 403],
  ];
  for (const [who, path, status] of batch1) assert.equal(await send(who, path), status, path);
  await eventually(() => lines(accessFile).length === batch1.length, `${batch1.length} lines in access.log`);

  // logrotate: move the file, then tell the broker
  const mid = new Date(Math.max(Date.now(), ...lines(accessFile).map((l) => Date.parse(String(l.time)) + 1)));
  renameSync(accessFile, rotated);
  b.child.kill('SIGUSR2');
  await eventually(() => existsSync(accessFile), 'a new access.log after SIGUSR2');
  for (const [who, path, status] of batch2) assert.equal(await send(who, path), status, path);
  await eventually(() => lines(accessFile).length === batch2.length, `${batch2.length} lines in the new access.log`);
  const total = batch1.length + batch2.length;
  await eventually(() => lines(authFile).length === total, `${total} handshakes in auth.log`);
  assert.equal(await b.stop(), 0, b.out.stderr);

  // No line lost or doubled: the first batch in the rotated file, the second in the new one.
  const old = lines(rotated);
  const now = lines(accessFile);
  assert.deepEqual(old.map((l) => l.path), batch1.map(([, path]) => path));
  assert.deepEqual(now.map((l) => l.path), batch2.map(([, path]) => path));
  for (const l of [...old, ...now]) {
    assert.equal(l.log, 'access');
    assert.match(String(l.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  assert.ok(now.every((l) => Date.parse(String(l.time)) >= mid.getTime()), 'the premise of --from/--to below: the second batch is after mid');
  const auth = lines(authFile);
  assert.equal(auth.length, total);
  for (const l of auth) assert.deepEqual({ log: l.log, event: l.event, outcome: l.outcome }, { log: 'auth', event: 'handshake', outcome: 'ok' });

  // error: stderr, JSON lines of the error stream only; audit off and nothing routed to stdout
  const errors = jsonLines(b.out.stderr);
  assert.ok(errors.some((l) => l.event === 'listening') && errors.some((l) => l.event === 'shutdown'));
  for (const l of errors) assert.equal(l.log, 'error', JSON.stringify(l));
  assert.equal(b.out.stdout, '');
  assert.deepEqual(readdirSync(join(ca.root, 'logs')).sort(), ['access.log', 'access.log.1', 'auth.log']);

  // nothing secret in any of it
  const everything = [readFileSync(authFile, 'utf8'), readFileSync(rotated, 'utf8'), readFileSync(accessFile, 'utf8'), b.out.stderr].join('\n');
  for (const needle of ['s3cret', PASSPHRASE, 'PRIVATE KEY', 'BEGIN CERTIFICATE']) assert.ok(!everything.includes(needle), `the logs contain ${needle}`);

  // broker usage: per identity, over both files, then either side of `mid`
  const usage = (args: string[]) => {
    const r = broker(['usage', ...args, '--json'], { cwd: ca.root });
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    return Object.fromEntries(rows.map((row) => [row.principal, { requests: row.requests, allowed: row.allowed, denials: row.denials, rateLimited: row.rateLimited, errors: row.errors }]));
  };
  const both = ['--log', 'logs/access.log.1', '--log', 'logs/access.log'];
  assert.deepEqual(usage(both), {
    alice: { requests: 10, allowed: 6, denials: 2, rateLimited: 2, errors: 0 },
    bob: { requests: 4, allowed: 3, denials: 1, rateLimited: 0, errors: 0 },
  });
  assert.deepEqual(usage(['--log', 'logs/access.log']), {
    alice: { requests: 2, allowed: 2, denials: 0, rateLimited: 0, errors: 0 },
    bob: { requests: 2, allowed: 1, denials: 1, rateLimited: 0, errors: 0 },
  });
  assert.deepEqual(usage([...both, '--to', mid.toISOString()]), {
    alice: { requests: 8, allowed: 4, denials: 2, rateLimited: 2, errors: 0 },
    bob: { requests: 2, allowed: 2, denials: 0, rateLimited: 0, errors: 0 },
  });
  assert.deepEqual(usage([...both, '--from', mid.toISOString()]), usage(['--log', 'logs/access.log']));
  assert.deepEqual(usage([...both, '--from', '1d']), usage(both), 'a duration ago');
  assert.deepEqual(usage([...both, '--to', '2000-01-01']), {});
  // the auth log is not an access log: usage ignores its lines
  assert.deepEqual(usage(['--log', 'logs/auth.log']), {});
});

test('log.access: off writes no access line anywhere', async (t) => {
  const { ca, alice, config, caPem } = await setup(t);
  const b = await serve(t, ca, config('{ auth: stdout, access: off, error: stderr, audit: off }'));
  for (const path of ['/api/1', '/admin/1', '/scarce/1', '/scarce/2']) await request(b.port, { id: alice, ca: caPem, path });
  // the handshakes' auth lines on stdout show the broker was writing; then stop (which flushes)
  await eventually(() => b.out.stdout.split('\n').filter(Boolean).length === 4, 'four auth lines on stdout');
  assert.equal(await b.stop(), 0, b.out.stderr);
  const out = jsonLines(b.out.stdout);
  const err = jsonLines(b.out.stderr);
  assert.deepEqual(out.map((l) => l.log), ['auth', 'auth', 'auth', 'auth']);
  assert.ok(err.every((l) => l.log === 'error'));
  assert.ok(![...out, ...err].some((l) => l.log === 'access' || 'status' in l));
  assert.ok(!existsSync(join(ca.root, 'logs')));
  assert.deepEqual(readdirSync(ca.root).filter((f) => f.endsWith('.log')), []);
});
