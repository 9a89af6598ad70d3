/**
 * The built `broker serve` as an operator runs it: reloads on a config file edit (file watching),
 * on SIGHUP and on POST /reload (422 for a broken config, which changes nothing); `broker pki
 * revoke` cuts the identity's open connection through the CRL file change; SIGTERM lets running
 * requests finish (each answer says Connection: close) and exits 0, closes WebSockets once the
 * grace period is over, and a second SIGTERM exits at once with 1.
 *
 * The upstream lives in this process, so every child process and client here is asynchronous.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type ServerResponse } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { BIN, NODE, brokerAsync, tempDir } from '../helpers/cli.ts';
import { request, type Identity } from '../helpers/broker.ts';
import { eventually, within } from '../helpers/within.ts';

type Line = Record<string, unknown> & { stream: 'stdout' | 'stderr' };

interface Served {
  child: ChildProcess;
  port: number;
  adminPort: number;
  lines: Line[];
  /** The first line (so far or later, either stream) that matches; rejects after `ms` or when the process exits. */
  waitFor(pred: (l: Line) => boolean, what: string, ms?: number): Promise<Line>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `broker serve --config FILE`; resolves once it logs where it listens. Killed after the test. */
async function serve(t: TestContext, dir: string, config: string): Promise<Served> {
  const child = spawn(NODE, [BIN, 'serve', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  let gone = false;
  let raw = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      gone = true;
      for (const w of [...waiters]) w();
      resolve({ code, signal });
    }),
  );
  for (const stream of ['stdout', 'stderr'] as const) {
    let partial = '';
    child[stream].setEncoding('utf8').on('data', (d: string) => {
      raw += d;
      const parts = (partial + d).split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) if (text.startsWith('{')) lines.push({ ...(JSON.parse(text) as Record<string, unknown>), stream });
      for (const w of [...waiters]) w();
    });
  }
  const waitFor = (pred: (l: Line) => boolean, what: string, ms = 15_000) =>
    new Promise<Line>((resolve, reject) => {
      const settle = (hit: Line | undefined, why: string) => {
        waiters.delete(check);
        clearTimeout(timer);
        if (hit) resolve(hit);
        else reject(new Error(`${what}: ${why}; output so far:\n${raw.slice(-4_000)}`));
      };
      const check = () => {
        const hit = lines.find(pred);
        if (hit || gone) settle(hit, `the process exited (${child.exitCode ?? child.signalCode})`);
      };
      const timer = setTimeout(() => settle(undefined, `no such line in ${ms} ms`), ms);
      waiters.add(check);
      check();
    });
  const listening = await waitFor((l) => l.event === 'listening', 'the listening line', 30_000);
  return { child, port: Number(listening.port), adminPort: Number(listening.adminPort), lines, waitFor, exited };
}

interface Upstream {
  port: number;
  /** Requests whose path contains /slow wait here until released. */
  held: ServerResponse[];
  arrivals: EventEmitter;
  release(): void;
}

async function startUpstream(t: TestContext): Promise<Upstream> {
  const held: ServerResponse[] = [];
  const arrivals = new EventEmitter();
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (!req.url?.includes('/slow')) return void res.end(JSON.stringify({ url: req.url, who: req.headers['x-client-name'] }));
    held.push(res);
    arrivals.emit('held', held.length);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const release = () => {
    for (const res of held.splice(0)) res.end(JSON.stringify({ released: true }));
  };
  t.after(async () => {
    release();
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, held, arrivals, release };
}

/** Resolves once `n` requests are held at the upstream. */
function heldCount(up: Upstream, n: number): Promise<void> {
  if (up.held.length >= n) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (count: number) => {
      if (count < n) return;
      up.arrivals.off('held', on);
      resolve();
    };
    up.arrivals.on('held', on);
  });
}

interface Store {
  dir: string;
  ca: string;
  id(name: string): Identity;
}

/** A CA store made with the CLI (no passphrase), a server certificate "edge" and client identities. */
async function makeStore(t: TestContext, clients: string[]): Promise<Store> {
  const dir = tempDir(t);
  const run = async (args: string[]) => {
    const r = await brokerAsync([...args, '--dir', 'pki'], { cwd: dir });
    assert.equal(r.code, 0, `broker ${args.join(' ')}: ${r.stderr}`);
  };
  await run(['pki', 'init', '--no-passphrase']);
  await run(['pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1']);
  for (const name of clients) await run(['pki', 'issue', name, '--role', 'partner', '--out', name]);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { dir, ca: read('pki/ca.crt'), id: (name) => ({ cert: read(`${name}/${name}.crt`), key: read(`${name}/${name}.key`), serial: '' }) };
}

interface ConfigOptions {
  /** Routes named ws… are WebSocket routes. */
  routes?: Array<[name: string, path: string]>;
  shutdown?: string;
  broken?: boolean;
}

function configText(upstreamPort: number, o: ConfigOptions = {}): string {
  const routes = o.routes ?? [['orders', '/orders']];
  return [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { port: 0 }',
    'pki: { dir: ./pki }',
    'tls: { server: edge }',
    'reload: { watch: true, debounce: 100ms }',
    // every request comes from 127.0.0.1: keep the per-address abuse limits out of the way
    'filters: { connectionRate: { rate: 100000, per: 1s, burst: 100000 }, maxConnectionsPerIp: 10000 }',
    'bans: { enabled: false }',
    'rateLimit: { rate: 1000000, per: 1s, burst: 1000000 }',
    // idle keep-alive connections stay open for a minute: a close within the test is the broker's doing
    `timeouts: { keepAlive: 60s, shutdown: ${o.shutdown ?? '30s'} }`,
    'routes:',
    ...routes.map(([name, path]) => `  - { name: ${name}, path: ${path}, upstream: "http://127.0.0.1:${upstreamPort}", roles: [partner]${name.startsWith('ws') ? ', websocket: true' : ''} }`),
    ...(o.broken ? ['  - { name: broken, path: /broken, upstream: "gopher://127.0.0.1:70", roles: [partner] }'] : []),
  ].join('\n');
}

/** Replaces the file the way editors and config management do: a temp file renamed over it. */
function writeAtomically(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function adminPost(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    // State-changing admin requests carry X-Broker-Admin (the admin refuses them otherwise: CSRF).
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'x-broker-admin': '1' }, agent: false, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

interface Answer {
  status: number;
  connection: string | undefined;
  socket: Socket;
}

/** One GET through a keep-alive agent; also says which connection it went over. */
function get(agent: Agent, port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, path, agent, timeout: 30_000 }, (res) => {
      const socket = res.socket; // detached from the response once it ends
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socket }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

function keepAlive(t: TestContext, s: Store, name: string): Agent {
  const id = s.id(name);
  const agent = new Agent({ keepAlive: true, maxSockets: 2, ca: s.ca, cert: id.cert, key: id.key });
  t.after(() => agent.destroy());
  return agent;
}

test('serve reloads on a config file edit, on SIGHUP and on POST /reload; a broken config is refused with 422 and the broker keeps serving', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, ['acme']);
  const file = join(s.dir, 'broker.yaml');
  writeFileSync(file, configText(up.port));
  const b = await serve(t, s.dir, 'broker.yaml');
  const acme = s.id('acme');
  const get = (path: string) => request(b.port, { id: acme, ca: s.ca, path });
  assert.equal((await get('/orders/1')).status, 200);
  assert.equal((await get('/stock/1')).status, 404);

  // (i) file watching: an atomic edit adds a route, which starts answering.
  writeAtomically(file, configText(up.port, { routes: [['orders', '/orders'], ['stock', '/stock']] }));
  await eventually(async () => (await get('/stock/1')).status === 200, 'the added route answering', 15_000, 50);
  const watched = await b.waitFor((l) => l.event === 'reload' && l.stream === 'stdout', 'the audit line of the file-change reload');
  assert.equal(watched.outcome, 'ok');
  assert.match(String(watched.trigger), /^file change: .*broker\.yaml$/);
  assert.equal(watched.routes, 2);

  // (ii) SIGHUP
  b.child.kill('SIGHUP');
  const hup = await b.waitFor((l) => l.event === 'reload' && l.trigger === 'SIGHUP' && l.stream === 'stdout', 'the audit line of the SIGHUP reload');
  assert.equal(hup.outcome, 'ok');

  // (iii) POST /reload on the admin listener: 200 for a good config, 422 with the problems for a broken one.
  const ok = await adminPost(b.adminPort, '/reload');
  assert.equal(ok.status, 200);
  assert.equal(ok.body.ok, true);
  assert.deepEqual(ok.body.problems, []);
  writeAtomically(file, configText(up.port, { routes: [['orders', '/orders'], ['stock', '/stock']], broken: true }));
  const bad = await adminPost(b.adminPort, '/reload');
  assert.equal(bad.status, 422);
  assert.equal(bad.body.ok, false);
  assert.match((bad.body.problems as string[]).join('\n'), /routes\[2\]\.upstream: scheme "gopher" is not supported/);
  const failed = await b.waitFor((l) => l.event === 'reload' && l.outcome === 'failed' && l.trigger === 'admin' && l.stream === 'stderr', 'the error line of the refused reload');
  assert.match((failed.problems as string[]).join('\n'), /gopher/);
  assert.equal((await get('/orders/2')).status, 200, 'still serving');
  assert.equal((await get('/stock/2')).status, 200, 'still serving the last good config');
  assert.equal((await get('/broken/1')).status, 404);

  b.child.kill('SIGTERM');
  assert.deepEqual(await within(b.exited, 20_000, 'exit after SIGTERM'), { code: 0, signal: null });
});

test('broker pki revoke makes the running broker close the identity\'s open keep-alive connection (the CRL file changes) and refuse it; others carry on', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, ['mallory', 'acme']);
  writeFileSync(join(s.dir, 'broker.yaml'), configText(up.port));
  const b = await serve(t, s.dir, 'broker.yaml');
  const mallory = keepAlive(t, s, 'mallory');
  const acme = keepAlive(t, s, 'acme');
  const open = await get(mallory, b.port, '/orders/1');
  assert.equal(open.status, 200);
  const acmeOpen = await get(acme, b.port, '/orders/1');
  assert.equal(acmeOpen.status, 200);
  let acmeClosed = false;
  acmeOpen.socket.once('close', () => (acmeClosed = true));
  const closed = once(open.socket, 'close');

  const r = await brokerAsync(['pki', 'revoke', 'mallory', '--reason', 'keyCompromise', '--dir', 'pki'], { cwd: s.dir });
  assert.equal(r.code, 0, r.stderr);
  await within(closed, 5_000, "mallory's open connection closing");
  const audit = await b.waitFor((l) => l.event === 'reload' && l.stream === 'stdout' && Array.isArray(l.revoked) && l.revoked.length > 0, 'the audit line of the CRL reload');
  assert.equal(audit.outcome, 'ok');
  assert.match(String(audit.trigger), /^file change: /);
  assert.equal(audit.closedConnections, 1);

  // tls.refusal http (the default): the handshake completes and the one request is answered 495, never forwarded
  assert.equal((await request(b.port, { id: s.id('mallory'), ca: s.ca, path: '/orders/2' })).status, 495, 'a new connection of mallory is refused');
  await b.waitFor((l) => l.event === 'handshake' && l.outcome === 'refused' && l.reason === 'revoked', 'the refused handshake');
  const again = await get(acme, b.port, '/orders/2');
  assert.equal(again.status, 200);
  assert.equal(again.socket, acmeOpen.socket, "acme's open connection carried on");
  assert.equal(acmeClosed, false);

  b.child.kill('SIGTERM');
  assert.deepEqual(await within(b.exited, 20_000, 'exit after SIGTERM'), { code: 0, signal: null });
});

/** A new TLS connection to `port`: resolves with the error code it failed with, or 'connected'. */
function tryConnect(port: number, s: Store): Promise<string> {
  const id = s.id('acme');
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: s.ca, cert: id.cert, key: id.key }, () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}

test('a SIGTERM sent as soon as serve says it is listening is a graceful shutdown (exit 0), not a kill', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, []);
  writeFileSync(join(s.dir, 'broker.yaml'), configText(up.port));
  const b = await serve(t, s.dir, 'broker.yaml');
  b.child.kill('SIGTERM');
  assert.deepEqual(await within(b.exited, 20_000, 'exit after SIGTERM'), { code: 0, signal: null });
  assert.ok(b.lines.some((l) => l.event === 'shutdown'), 'the shutdown was logged');
});

test('SIGTERM under load: requests in flight complete 200, new connections are refused, exit 0', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, ['acme', 'globex']);
  writeFileSync(join(s.dir, 'broker.yaml'), configText(up.port));
  const b = await serve(t, s.dir, 'broker.yaml');
  const agents = [keepAlive(t, s, 'acme'), keepAlive(t, s, 'globex')];
  // Warm connections first, so the requests in flight run on kept-alive connections.
  for (const a of agents) assert.equal((await get(a, b.port, '/orders/warm')).status, 200);
  const inFlight = agents.flatMap((a, i) => [0, 1].map((k) => get(a, b.port, `/orders/slow/${i}-${k}`)));
  await within(heldCount(up, inFlight.length), 10_000, 'every request held at the upstream');

  b.child.kill('SIGTERM');
  await b.waitFor((l) => l.event === 'shutdown' && l.stream === 'stderr', 'the shutdown line');
  assert.match(await tryConnect(b.port, s), /^(ECONNREFUSED|ECONNRESET)$/, 'a new connection is refused');
  assert.equal(up.held.length, inFlight.length, 'nothing was cut');

  up.release();
  const answers = await within(Promise.all(inFlight), 10_000, 'the requests in flight');
  for (const a of answers) {
    assert.equal(a.status, 200);
    assert.equal(a.connection, 'close', 'a draining broker closes each connection after its answer');
  }
  assert.deepEqual(await within(b.exited, 20_000, 'exit after the drain'), { code: 0, signal: null });
});

test('a second SIGTERM during a long drain exits at once with 1', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, ['acme']);
  writeFileSync(join(s.dir, 'broker.yaml'), configText(up.port, { shutdown: '10m' }));
  const b = await serve(t, s.dir, 'broker.yaml');
  const agent = keepAlive(t, s, 'acme');
  const pending = get(agent, b.port, '/orders/slow/1');
  pending.catch(() => {}); // cut by the exit
  await within(heldCount(up, 1), 10_000, 'the request held at the upstream');

  b.child.kill('SIGTERM');
  await b.waitFor((l) => l.event === 'shutdown' && l.stream === 'stderr', 'the first shutdown line');
  b.child.kill('SIGTERM');
  assert.deepEqual(await within(b.exited, 10_000, 'exit after the second SIGTERM'), { code: 1, signal: null });
  const second = b.lines.filter((l) => l.event === 'shutdown');
  assert.equal(second.length, 2);
  assert.match(String(second[1]?.msg), /second signal/);
  await assert.rejects(pending, 'the request still running was cut');
});

test('SIGTERM with a WebSocket open: it is closed once the grace period is over and the process exits 0', async (t) => {
  const up = await startUpstream(t);
  const s = await makeStore(t, ['acme']);
  writeFileSync(join(s.dir, 'broker.yaml'), configText(up.port, { routes: [['ws', '/ws']], shutdown: '500ms' }));
  const b = await serve(t, s.dir, 'broker.yaml');
  const id = s.id('acme');
  // ws hands its options to tls.connect, which takes `servername`; its types do not list it.
  const o: WebSocket.ClientOptions & { servername: string } = { ca: s.ca, cert: id.cert, key: id.key, servername: 'localhost', handshakeTimeout: 10_000 };
  const ws = new WebSocket(`wss://127.0.0.1:${b.port}/ws/room`, o);
  t.after(() => ws.terminate());
  ws.on('error', () => {}); // the close below is what is checked
  await within(once(ws, 'open'), 10_000, 'the WebSocket opening');
  const echo = once(ws, 'message');
  ws.send('hi');
  assert.equal(String((await within(echo, 5_000, 'the echo'))[0]), 'echo:hi');
  const closed = once(ws, 'close');

  b.child.kill('SIGTERM');
  await within(closed, 15_000, 'the WebSocket closing after the grace period');
  assert.deepEqual(await within(b.exited, 15_000, 'exit after the grace period'), { code: 0, signal: null });
});
