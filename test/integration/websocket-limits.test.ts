/**
 * WebSocket limits: message size in both directions (close 1009), backpressure in both directions
 * with a bounded relay buffer, one rate-limit token per client message (close 1008 "rate limit"),
 * and a per-identity cap on open WebSockets (429 BRK_ERR_RATE_WEBSOCKETS before any upstream
 * connection).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { makePki, startBroker, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { eventually, within } from '../helpers/within.ts';

const MiB = 1024 * 1024;

interface WsUpstream {
  url: string;
  /** Every connection the upstream accepted, in order. */
  sockets: WebSocket[];
  /** Bytes of client messages the upstream received. */
  received: number;
}

/**
 * A WebSocket upstream: says hello, echoes text, and on "big:N" sends one N-byte message, on
 * "flood:N" N messages of 1 MiB, on "stop" stops reading its socket.
 */
async function wsUpstream(t: TestContext): Promise<WsUpstream> {
  const server = createServer();
  const wss = new WebSocketServer({ server, maxPayload: 512 * MiB });
  const state: WsUpstream = { url: '', sockets: [], received: 0 };
  wss.on('connection', (ws) => {
    state.sockets.push(ws);
    ws.on('error', () => {});
    ws.send('hello');
    ws.on('message', (m: Buffer, binary: boolean) => {
      state.received += m.length;
      if (binary) return;
      const [cmd, arg] = String(m).split(':');
      if (cmd === 'big') ws.send(Buffer.alloc(Number(arg), 7));
      else if (cmd === 'flood') for (let i = 0; i < Number(arg); i++) ws.send(Buffer.alloc(MiB, i & 0xff));
      else if (cmd === 'stop') ws.pause();
      else ws.send(`echo:${String(m)}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

interface Setup {
  pki: TestPki;
  up: WsUpstream;
  b: RunningBroker;
  carol: Identity;
}

async function setup(t: TestContext, extra: Record<string, unknown>): Promise<Setup> {
  const pki = await makePki(t);
  const up = await wsUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'ws', path: '/ws', upstream: up.url, websocket: true, roles: ['chat'] }], ...extra });
  const carol = await pki.issue('carol', ['chat']);
  return { pki, up, b, carol };
}

function connect(t: TestContext, s: Setup, id: Identity): WebSocket {
  const opts: WebSocket.ClientOptions & { servername: string } = { ca: s.pki.ca, cert: id.cert, key: id.key, servername: 'localhost', handshakeTimeout: 10_000, maxPayload: 512 * MiB };
  const ws = new WebSocket(`wss://127.0.0.1:${s.b.port}/ws/room`, opts);
  t.after(() => ws.terminate());
  ws.on('error', () => {});
  return ws;
}

/** Connects and waits for the upstream's hello. */
async function open(t: TestContext, s: Setup, id: Identity): Promise<WebSocket> {
  const ws = connect(t, s, id);
  const [hello] = (await within(once(ws, 'message'), 10_000, 'the upstream hello')) as [Buffer];
  assert.equal(String(hello), 'hello');
  return ws;
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: String(reason) })));
}

/**
 * Waits until `value` has stopped changing (the same over 16 polls, 100 ms apart): the flow has come
 * to rest. (Not a measurement: where the broker applies backpressure, the value asserted afterwards
 * holds at every moment once the relay has paused; without it the flow drains to 0.)
 */
async function settled(value: () => number, what: string): Promise<void> {
  let last = -1;
  let same = 0;
  await eventually(() => {
    const now = value();
    same = now === last ? same + 1 : 0;
    last = now;
    return same >= 15;
  }, `${what} settled`, 30_000, 100);
}

async function echo(ws: WebSocket, text: string): Promise<void> {
  ws.send(text);
  const [m] = (await within(once(ws, 'message'), 10_000, `echo of ${text}`)) as [Buffer];
  assert.equal(String(m), `echo:${text}`);
}

test('messages are bounded by limits.bodySize by default, in both directions: close 1009', async (t) => {
  const s = await setup(t, { limits: { bodySize: '64kb' } });
  const ws = await open(t, s, s.carol);
  ws.send(Buffer.alloc(60 * 1024, 1)); // within the limit: relayed
  await echo(ws, 'after a 60 KiB message');
  const c = closed(ws);
  ws.send(Buffer.alloc(80 * 1024, 1));
  assert.equal((await within(c, 10_000, 'close after an 80 KiB client message')).code, 1009);
  assert.equal(s.up.received, 60 * 1024 + 'after a 60 KiB message'.length, 'the large message never reached the upstream');
  await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'message-too-big');

  const ws2 = await open(t, s, s.carol);
  const c2 = closed(ws2);
  ws2.send('big:81920');
  assert.equal((await within(c2, 10_000, 'close after an 80 KiB upstream message')).code, 1009);
});

test('limits.websocket.messageSize overrides the body size; limits.websocket.perIdentity sets the cap', async (t) => {
  const s = await setup(t, { limits: { bodySize: '1mb', websocket: { messageSize: '16kb' } } });
  const ws = await open(t, s, s.carol);
  const c = closed(ws);
  ws.send(Buffer.alloc(20 * 1024, 1));
  assert.equal((await within(c, 10_000, 'close after a 20 KiB message')).code, 1009);

  const s2 = await setup(t, { limits: { websocket: { perIdentity: 1 } } });
  await open(t, s2, s2.carol);
  const [, res] = (await within(once(connect(t, s2, s2.carol), 'unexpected-response'), 10_000, 'the second upgrade refused')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 429);
  res.resume();
});

test('backpressure, upstream to client: a client that stops reading pauses the upstream; the relay holds at most buffer + one message, and nothing is lost', async (t) => {
  const s = await setup(t, { limits: { bodySize: '2mb' } }); // limits.websocket.buffer: its default, 1mb
  const ws = await open(t, s, s.carol);
  ws.pause(); // stop reading: the broker's writes to this client back up
  ws.send('flood:64');
  const live = (s.b.broker as { live?: { stats: { pauses: number; maxBuffered: number } } }).live;
  await eventually(() => (live?.stats.pauses ?? 0) >= 1, 'the relay paused the upstream', 30_000);
  const up = s.up.sockets[0] as WebSocket;
  // Once nothing moves any more, the upstream still holds most of its 64 MiB: the broker stopped
  // reading it (the kernel's socket buffers on the way take a few MiB).
  await settled(() => up.bufferedAmount, "the upstream's unsent bytes");
  assert.ok(up.bufferedAmount > 16 * MiB, `the upstream holds ${up.bufferedAmount} bytes`);
  assert.ok((live?.stats.maxBuffered ?? Infinity) <= 1 * MiB + 2 * MiB + 256 * 1024, `relay held ${live?.stats.maxBuffered} bytes`);

  // The client reads again: every message arrives, in order, complete.
  let got = 0;
  let inOrder = true;
  ws.on('message', (m: Buffer) => {
    if (m.length !== MiB || m[0] !== (got & 0xff)) inOrder = false;
    got++;
  });
  ws.resume();
  await eventually(() => got === 64, 'all 64 messages delivered after the client resumed', 60_000);
  assert.ok(inOrder);
});

test('backpressure, client to upstream: an upstream that stops reading pauses the client', async (t) => {
  const s = await setup(t, { limits: { bodySize: '2mb' } }); // limits.websocket.buffer: its default, 1mb
  const ws = await open(t, s, s.carol);
  ws.send('stop');
  await eventually(() => (s.up.sockets[0] as WebSocket | undefined)?.isPaused === true, 'the upstream paused', 10_000);
  for (let i = 0; i < 64; i++) ws.send(Buffer.alloc(MiB, 1));
  const live = (s.b.broker as { live?: { stats: { pauses: number; maxBuffered: number } } }).live;
  await eventually(() => (live?.stats.pauses ?? 0) >= 1, 'the relay paused the client', 30_000);
  await settled(() => ws.bufferedAmount, "the client's unsent bytes");
  assert.ok(ws.bufferedAmount > 16 * MiB, `the client holds ${ws.bufferedAmount} bytes`);
  assert.ok((live?.stats.maxBuffered ?? Infinity) <= 3 * MiB + 256 * 1024, `relay held ${live?.stats.maxBuffered} bytes`);
  (s.up.sockets[0] as WebSocket).resume();
  await eventually(() => s.up.received >= 64 * MiB, 'all 64 MiB delivered after the upstream resumed', 60_000);
});

test('every client message takes a token from the identity bucket: over the limit, close 1008 "rate limit", logged', async (t) => {
  const s = await setup(t, { rateLimit: { rate: 5, per: '1h', burst: 5 } });
  const ws = await open(t, s, s.carol); // the upgrade took one token
  await echo(ws, 'one');
  await echo(ws, 'two');
  const c = closed(ws);
  for (let i = 0; i < 10; i++) ws.send(`m${i}`);
  assert.deepEqual(await within(c, 10_000, 'close over the rate limit'), { code: 1008, reason: 'rate limit' });
  assert.ok(s.up.received <= 'onetwom0m1'.length, `messages over the limit were not relayed (${s.up.received} bytes)`);
  const line = await s.b.logs.waitFor((l) => l.log === 'auth' && l.event === 'websocket' && l.reason === 'rate-limited');
  assert.equal(line.principal, 'carol');
});

test('limits.websocket.perIdentity (default 16): beyond it the upgrade gets 429 BRK_ERR_RATE_WEBSOCKETS before any upstream connection; closing one frees a place', async (t) => {
  const s = await setup(t, {});
  const dave = await s.pki.issue('dave', ['chat']);
  const a = await open(t, s, s.carol);
  for (let i = 1; i < 16; i++) await open(t, s, s.carol);
  const third = connect(t, s, s.carol);
  const [, res] = (await within(once(third, 'unexpected-response'), 10_000, 'the 17th upgrade refused')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 429);
  const body = await new Promise<string>((r) => {
    let text = '';
    res.on('data', (c: Buffer) => (text += String(c)));
    res.on('end', () => r(text));
  });
  assert.equal(JSON.parse(body).code, 'BRK_ERR_RATE_WEBSOCKETS');
  assert.equal(s.up.sockets.length, 16, 'no upstream connection for the refused upgrade');
  await open(t, s, dave); // another identity is not affected

  const gone = closed(a);
  a.close();
  await within(gone, 10_000, 'a closing');
  await eventually(async () => {
    const ws = connect(t, s, s.carol);
    const r = await Promise.race([once(ws, 'open').then(() => true), once(ws, 'unexpected-response').then(() => false)]);
    ws.terminate();
    return r;
  }, 'a place freed after one closed', 10_000, 100);
});
