/**
 * Forward (egress) listener test helpers: local destinations (an https server with its own CA, a
 * TCP counter), a broker with a forward listener, and CONNECT clients (through node:https, raw).
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { makePki, rawExchange, startBroker, type Identity, type RunningBroker, type TestPki } from './broker.ts';

/** 6 MiB of random bytes: more than any socket buffer, so backpressure is exercised both ways. */
export const BIG = randomBytes(6 * 1024 * 1024);

/** An https destination with its own CA (not the broker's): records the paths it serves, answers "secret from <path>". */
export async function startTlsDestination(t: TestContext): Promise<{ port: number; ca: string; connections: () => number; seen: string[] }> {
  const own = await makePki(t);
  let connections = 0;
  const seen: string[] = [];
  const server = createHttpsServer({ cert: readFileSync(own.store.layout.serverCert('localhost')), key: readFileSync(own.store.layout.serverKey('localhost')) }, (req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (req.url === '/big') return void res.end(BIG);
    if (req.method === 'POST') {
      // echoes the SHA-256 and length of the body it received
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => (h.update(c), (n += c.length)));
      req.on('end', () => res.end(`${n} ${h.digest('hex')}`));
      return;
    }
    res.end(`secret from ${req.url}`);
  });
  // raw sockets too: a tunnel that never started its TLS handshake is not an HTTP connection yet
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (server.close(() => resolve()), sockets.forEach((s) => s.destroy()))));
  return { port: (server.address() as AddressInfo).port, ca: own.ca, connections: () => connections, seen };
}

/** A TCP server that only counts the connections it accepts. */
export async function startCounter(t: TestContext): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = createNetServer((s) => (connections++, s.destroy()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

/** A broker whose forward listener has `rules` (plus `forward`'s other keys); `raw` is the rest of its config. */
export async function startForward(t: TestContext, pki: TestPki, rules: unknown[], forward: Record<string, unknown> = {}, raw: Record<string, unknown> = {}): Promise<RunningBroker & { forwardPort: number }> {
  const b = await startBroker(t, pki, { ...raw, forward: { listen: { host: '127.0.0.1', port: 0 }, rules, ...forward } });
  const a = b.broker.forwardServer?.address();
  assert.ok(a && typeof a !== 'string', 'the forward listener listens');
  return { ...b, forwardPort: a.port };
}

/** CONNECT over mTLS to the forward listener; resolves with the status and the tunnel socket. */
export function connectThrough(port: number, ca: string, id: Identity, authority: string): Promise<{ status: number; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, method: 'CONNECT', path: authority, ca, cert: id.cert, key: id.key, agent: false, timeout: 15_000 });
    req.on('connect', (res, socket) => resolve({ status: res.statusCode ?? 0, socket }));
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A GET over TLS inside an established tunnel, verified against the destination's own CA. */
export function getInside(socket: Socket, ca: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const inner = tlsConnect({ socket, servername: 'localhost', ca }, () => inner.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    inner.on('data', (c: Buffer) => chunks.push(c));
    inner.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    inner.on('error', reject);
  });
}

/** Status and JSON body of a raw answer ("HTTP/1.1 403 …\r\n…\r\n\r\n{…}"). */
export function parseRaw(text: string): { status: number; head: string; body: Record<string, unknown> } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  const end = text.indexOf('\r\n\r\n');
  return { status, head: text.slice(0, end), body: JSON.parse(text.slice(end + 4)) as Record<string, unknown> };
}

export function connectRaw(port: number, ca: string, id: Identity, authority: string): Promise<{ status: number; head: string; body: Record<string, unknown> }> {
  return rawExchange(port, { id, ca, data: `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, ms: 10_000 }).then(parseRaw);
}
