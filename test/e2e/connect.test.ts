/**
 * The built `broker connect` in front of a real broker (in this process, with a real upstream):
 * plain HTTP in, mutual TLS out with the partner's identity; one kept-alive TLS connection for many
 * requests; through an HTTP CONNECT proxy (with credentials), and a 502 with the code when the
 * proxy refuses; the certificate files replaced by another identity's are picked up (and a broken
 * pair is not); bad flags are refused with their codes; SIGTERM stops it.
 *
 * The broker lives in this process, so every child process here is asynchronous.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { BIN, NODE, brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';
import { makePki, startBroker, startUpstream, type Identity, type TestPki } from '../helpers/broker.ts';
import { startConnectProxy } from '../helpers/connect-proxy.ts';
import { eventually, within } from '../helpers/within.ts';

type Line = Record<string, unknown>;

interface Running {
  port: number;
  lines: Line[];
  waitFor(pred: (l: Line) => boolean, what: string, ms?: number): Promise<Line>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

/** Certificate, key and CA as files, as a partner holds them. */
function writeIdentity(dir: string, pki: TestPki, id: Identity): { cert: string; key: string; ca: string } {
  const files = { cert: join(dir, 'client.crt'), key: join(dir, 'client.key'), ca: join(dir, 'ca.crt') };
  writeFileSync(files.cert, id.cert);
  writeFileSync(files.key, id.key, { mode: 0o600 });
  writeFileSync(files.ca, pki.ca);
  return files;
}

/** `broker connect …`: resolves once it logs where it listens; killed after the test. */
async function connectCli(t: TestContext, args: string[], env: Record<string, string> = {}): Promise<Running> {
  const child = spawn(NODE, [BIN, 'connect', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  const lines: Line[] = [];
  let raw = '';
  let partial = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.stdout.setEncoding('utf8').on('data', (d: string) => (raw += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    raw += d;
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) if (text.startsWith('{')) lines.push(JSON.parse(text) as Line);
  });
  const waitFor = async (pred: (l: Line) => boolean, what: string, ms = 15_000) => {
    let hit: Line | undefined;
    await eventually(() => Boolean((hit = lines.find(pred))) || child.exitCode !== null, what, ms).catch((err: Error) => {
      throw new Error(`${err.message}; output so far:\n${raw.slice(-4_000)}`);
    });
    if (!hit) throw new Error(`${what}: the process exited (${child.exitCode}); output:\n${raw.slice(-4_000)}`);
    return hit;
  };
  const listening = await waitFor((l) => l.event === 'listening', 'the listening line', 30_000);
  return { port: Number(listening.port), lines, waitFor, exited, kill: (s) => child.kill(s) };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

/** One plain-HTTP request to the local listener. */
function local(port: number, o: { method?: string; path: string; headers?: Record<string, string>; body?: string } = { path: '/' }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: false, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

async function setup(t: TestContext, handler?: Parameters<typeof startUpstream>[1]) {
  const pki = await makePki(t);
  const up = await startUpstream(t, handler);
  const broker = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['partner'] }] });
  const alice = await pki.issue('alice', ['partner']);
  const dir = tempDir(t, 'broker-connect-');
  const files = writeIdentity(dir, pki, alice);
  const flags = ['--url', `https://localhost:${broker.port}`, '--cert', files.cert, '--key', files.key, '--ca', files.ca];
  const handshakes = (name: string) => broker.logs.of('auth').filter((l) => l.outcome === 'ok' && l.principal === name).length;
  return { pki, up, broker, dir, files, flags, handshakes };
}

test('GET and POST reach the upstream as the partner, end-to-end headers only, logged per request', async (t) => {
  const { up, flags } = await setup(t);
  const c = await connectCli(t, flags);

  const got = await local(c.port, { path: '/api/items?x=1&y=2', headers: { 'x-trace': 't1', connection: 'x-hop', 'x-hop': 'secret' } });
  assert.equal(got.status, 200);
  const seenGet = up.seen.at(-1);
  assert.equal(seenGet?.method, 'GET');
  assert.equal(seenGet?.url, '/api/items?x=1&y=2');
  assert.equal(seenGet?.headers['x-client-name'], 'alice');
  assert.equal(seenGet?.headers['x-client-roles'], 'partner');
  assert.equal(seenGet?.headers['x-trace'], 't1');
  assert.equal(seenGet?.headers['x-hop'], undefined, 'a header named in Connection is hop-by-hop');

  const body = JSON.stringify({ order: 42, note: 'x'.repeat(100_000) });
  const posted = await local(c.port, { method: 'POST', path: '/api/orders', headers: { 'content-type': 'application/json' }, body });
  assert.equal(posted.status, 200);
  assert.equal(posted.json().bodyBytes, Buffer.byteLength(body));
  const seenPost = up.seen.at(-1);
  assert.equal(seenPost?.method, 'POST');
  assert.equal(seenPost?.body.toString(), body);
  assert.equal(seenPost?.headers['x-client-name'], 'alice');

  // the broker's own answers pass through unchanged
  const missing = await local(c.port, { path: '/nowhere' });
  assert.equal(missing.status, 404);
  assert.equal(missing.json().code, 'BRK_ERR_HTTP_NOT_FOUND');

  const access = await c.waitFor((l) => l.log === 'access' && l.method === 'POST', 'the POST access line');
  assert.equal(access.path, '/api/orders');
  assert.equal(access.status, 200);
  assert.equal(typeof access.durationMs, 'number');
  const getLine = await c.waitFor((l) => l.log === 'access' && l.method === 'GET' && l.status === 200, 'the GET access line');
  assert.equal(getLine.path, '/api/items', 'the query is not logged');
});

test('keep-alive: many requests share one mutual-TLS connection to the broker', async (t) => {
  const { up, flags, handshakes } = await setup(t);
  const c = await connectCli(t, flags);
  for (let i = 0; i < 6; i++) assert.equal((await local(c.port, { path: `/api/n/${i}` })).status, 200);
  assert.equal(up.seen.length, 6);
  assert.equal(handshakes('alice'), 1, 'one handshake for six requests');
});

test('through an HTTP CONNECT proxy with credentials from BROKER_PROXY_AUTH', async (t) => {
  const { up, broker, flags, handshakes } = await setup(t);
  const proxy = await startConnectProxy(t, { auth: 'partner:s3cret' });
  const c = await connectCli(t, [...flags, '--via', proxy.url], { BROKER_PROXY_AUTH: 'partner:s3cret' });
  for (let i = 0; i < 3; i++) {
    const r = await local(c.port, { path: `/api/via/${i}` });
    assert.equal(r.status, 200, r.text);
  }
  assert.equal(up.seen.at(-1)?.headers['x-client-name'], 'alice');
  assert.deepEqual(proxy.seen, [{ target: `localhost:${broker.port}`, proxyAuthorization: `Basic ${Buffer.from('partner:s3cret').toString('base64')}` }], 'one tunnel, kept alive');
  assert.equal(handshakes('alice'), 1);
  assert.ok(!JSON.stringify(c.lines).includes('s3cret'), 'the proxy password is never logged');
});

for (const c of [
  { name: 'a proxy that wants other credentials (407)', proxy: { auth: 'partner:right' }, via: (url: string) => url.replace('http://', 'http://partner:wrong@'), status: '407' },
  { name: 'a proxy that refuses CONNECT (403)', proxy: { refuse: 403 as const }, via: (url: string) => url, status: '403' },
]) {
  test(`${c.name}: the local client gets 502 BRK_ERR_CONNECT_UPSTREAM`, async (t) => {
    const { up, flags } = await setup(t);
    const proxy = await startConnectProxy(t, c.proxy);
    const run = await connectCli(t, [...flags, '--via', c.via(proxy.url)]);
    const r = await local(run.port, { path: '/api/x' });
    assert.equal(r.status, 502);
    assert.equal(r.json().code, 'BRK_ERR_CONNECT_UPSTREAM');
    assert.match(String(r.json().message), new RegExp(`proxy refused the CONNECT tunnel with status ${c.status}`));
    assert.equal(proxy.seen.length >= 1, true);
    assert.equal(up.seen.length, 0);
    const line = await run.waitFor((l) => l.log === 'access' && l.status === 502, 'the 502 access line');
    assert.equal(line.code, 'BRK_ERR_CONNECT_UPSTREAM');
  });
}

test('a broker that is not there: 502 BRK_ERR_CONNECT_UPSTREAM', async (t) => {
  const { broker, files } = await setup(t);
  const port = broker.port;
  await broker.broker.close();
  const c = await connectCli(t, ['--url', `https://localhost:${port}`, '--cert', files.cert, '--key', files.key, '--ca', files.ca]);
  const r = await local(c.port, { path: '/api/x' });
  assert.equal(r.status, 502);
  assert.equal(r.json().code, 'BRK_ERR_CONNECT_UPSTREAM');
  assert.match(String(r.json().message), /ECONNREFUSED/);
});

test('certificate files replaced by another identity: a broken pair is refused, the new identity is picked up', async (t) => {
  const { pki, up, dir, files, flags } = await setup(t);
  const c = await connectCli(t, flags);
  assert.equal((await local(c.port, { path: '/api/before' })).status, 200);
  assert.equal(up.seen.at(-1)?.headers['x-client-name'], 'alice');

  // a key that does not belong to the certificate: logged, and alice stays
  const carol = await pki.issue('carol', ['partner']);
  writeFileSync(join(dir, 'key.tmp'), carol.key);
  renameSync(join(dir, 'key.tmp'), files.key);
  const failed = await c.waitFor((l) => l.event === 'reload' && l.outcome === 'error', 'the failed reload line');
  assert.equal(failed.code, 'BRK_ERR_CONNECT_CERT');
  assert.equal((await local(c.port, { path: '/api/still' })).status, 200);
  assert.equal(up.seen.at(-1)?.headers['x-client-name'], 'alice');

  // bob's certificate and key, each written aside and renamed into place
  const bob = await pki.issue('bob', ['partner']);
  writeFileSync(join(dir, 'cert.tmp'), bob.cert);
  writeFileSync(join(dir, 'key.tmp'), bob.key);
  renameSync(join(dir, 'cert.tmp'), files.cert);
  renameSync(join(dir, 'key.tmp'), files.key);
  await eventually(async () => {
    const r = await local(c.port, { path: '/api/after' });
    return r.status === 200 && up.seen.at(-1)?.headers['x-client-name'] === 'bob';
  }, 'requests as bob', 15_000, 100);
  const ok = await c.waitFor((l) => l.event === 'reload' && l.outcome === 'ok', 'the reload line');
  assert.equal(ok.principal, 'bob');
  assert.ok(!JSON.stringify(c.lines).includes('PRIVATE KEY'), 'no key material in the logs');
});

test('SIGTERM: a running request finishes (its connection then closes), exit 0', async (t) => {
  const held: Array<() => void> = [];
  const { up, flags } = await setup(t, (seen, res) => {
    const answer = () => res.end(JSON.stringify({ url: seen.url }));
    if (seen.url.includes('/slow')) held.push(answer);
    else answer();
  });
  t.after(() => held.forEach((f) => f()));
  const c = await connectCli(t, flags);
  assert.equal((await local(c.port, { path: '/api/x' })).status, 200);
  const slow = local(c.port, { path: '/api/slow', headers: { connection: 'keep-alive' } });
  await eventually(() => held.length === 1, 'the slow request at the upstream');
  c.kill('SIGTERM');
  await c.waitFor((l) => l.event === 'shutdown', 'the shutdown line');
  held.splice(0).forEach((f) => f());
  const r = await within(slow, 15_000, 'the slow answer');
  assert.equal(r.status, 200);
  assert.equal(r.headers.connection, 'close');
  assert.equal(up.seen.length, 2);
  const { code } = await within(c.exited, 15_000, 'exit after SIGTERM');
  assert.equal(code, 0);
});

test('bad flags and unreadable files are refused with their codes', async (t) => {
  const dir = tempDir(t, 'broker-connect-');
  const pem = join(dir, 'x.pem');
  writeFileSync(pem, 'not a certificate');
  const base = ['connect', '--url', 'https://localhost:1', '--cert', pem, '--key', pem];
  const cases = [
    { args: [...base, '--listen', '0.0.0.0:0'], code: 'BRK_ERR_CONNECT_LISTEN_REMOTE', exit: 2 },
    { args: [...base, '--listen', '192.0.2.1:8080'], code: 'BRK_ERR_CONNECT_LISTEN_REMOTE', exit: 2 },
    { args: [...base, '--listen', 'nonsense'], code: 'BRK_ERR_USAGE', exit: 2 },
    { args: ['connect', '--url', 'http://localhost:1', '--cert', pem, '--key', pem], code: 'BRK_ERR_CONNECT_URL', exit: 2 },
    { args: [...base, '--via', 'socks5://127.0.0.1:1080'], code: 'BRK_ERR_CONNECT_URL', exit: 2 },
    { args: [...base, '--listen', '127.0.0.1:0'], code: 'BRK_ERR_CONNECT_CERT', exit: 1 },
    { args: ['connect', '--url', 'https://localhost:1', '--cert', join(dir, 'missing.crt'), '--key', pem, '--listen', '127.0.0.1:0'], code: 'BRK_ERR_CONNECT_CERT', exit: 1 },
    { args: ['connect', '--url', 'https://localhost:1', '--cert', pem], code: 'BRK_ERR_USAGE', exit: 2 },
  ];
  const results = await Promise.all(cases.map((c) => brokerAsync(c.args)));
  for (const [i, r] of results.entries()) {
    const c = cases[i]!;
    assert.equal(errorCode(r.stderr), c.code, `${c.args.join(' ')}: ${r.stderr}`);
    assert.equal(r.code, c.exit, c.args.join(' '));
  }
});

test('--api-key-file: a route that wants the certificate and an API key gets both; a malformed key file is refused', async (t) => {
  const { createKey } = await import('../../src/pki/credentials.ts');
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const broker = await startBroker(t, pki, { routes: [{ name: 'both', path: '/both', upstream: up.url, roles: ['partner'], auth: ['mtls', 'apiKey'] }] });
  const alice = await pki.issue('alice', ['partner']);
  const key = await createKey(pki.store, { name: 'alice', roles: ['partner'], kind: 'apiKey' });
  await broker.broker.reload();
  const dir = tempDir(t, 'broker-connect-');
  const files = writeIdentity(dir, pki, alice);
  const keyFile = join(dir, 'api.key');
  writeFileSync(keyFile, `${key.secret}\n`, { mode: 0o600 });
  const flags = ['--url', `https://localhost:${broker.port}`, '--cert', files.cert, '--key', files.key, '--ca', files.ca];

  const withKey = await connectCli(t, [...flags, '--api-key-file', keyFile]);
  const ok = await local(withKey.port, { path: '/both/1', headers: { 'x-api-key': 'brk_000000000000_local-client-value-is-replaced-by-the-file-one' } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(up.seen.at(-1)?.headers['x-client-auth'], 'mtls,apiKey');
  assert.equal(up.seen.at(-1)?.headers['x-api-key'], undefined, 'the broker strips the key');

  const without = await connectCli(t, flags);
  const refused = await local(without.port, { path: '/both/1' });
  assert.equal(refused.status, 401);
  assert.equal(refused.json().code, 'BRK_ERR_AUTH_REQUIRED');

  writeFileSync(keyFile, 'not-a-key\n');
  const bad = await brokerAsync(['connect', '--listen', '127.0.0.1:0', ...flags, '--api-key-file', keyFile]);
  assert.equal(bad.code, 2);
  assert.equal(errorCode(bad.stderr), 'BRK_ERR_USAGE_SECRET_FILE');
  assert.ok(!bad.stderr.includes(key.secret));
});
