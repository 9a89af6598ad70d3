/**
 * Integration harness: an in-process CA (real certificates, minted per test), a real upstream on
 * 127.0.0.1:0, the broker built from a config object and listening on 127.0.0.1:0 with its log
 * lines captured as parsed JSON, and an mTLS client. Everything is closed in t.after.
 */
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { WebSocketServer } from 'ws';
import { tempDir } from './cli.ts';
import { initCa } from '../../src/pki/init.ts';
import { CaStore } from '../../src/pki/store.ts';
import { issueClient, issueServer } from '../../src/pki/issue.ts';
import { revoke } from '../../src/pki/revoke.ts';
import { createLeaf, randomSerial } from '../../src/pki/certs.ts';
import { generateKeyPair, privateKeyPem } from '../../src/pki/keys.ts';
import { validateConfig } from '../../src/config/index.ts';
import { buildBroker, type Broker, type BuildOptions } from '../../src/server.ts';
import type { Loggers } from '../../src/observability/loggers.ts';

export interface Identity {
  cert: string;
  key: string;
  serial: string;
}

export interface TestPki {
  dir: string;
  store: CaStore;
  /** Root CA PEM: what clients trust for the server. */
  ca: string;
  issue(name: string, roles: string[], o?: { ttlMs?: number }): Promise<Identity>;
  revoke(nameOrSerial: string): Promise<void>;
  /** A client certificate signed by this CA with a custom window or usage (for refusal tests). */
  custom(o: { name: string; roles?: string[]; notBefore: Date; notAfter: Date; kind?: 'client' | 'server' }): Promise<Identity>;
}

/** A CA store with a server certificate "localhost" (DNS localhost, IP 127.0.0.1). CA keys unencrypted unless `passphrase`. */
export async function makePki(t: TestContext, o: { trustDomain?: string; passphrase?: string } = {}): Promise<TestPki> {
  const root = tempDir(t, 'broker-pki-');
  const dir = join(root, 'pki');
  await initCa({ dir, name: 'Test CA', keyType: 'ec-p256', trustDomain: o.trustDomain ?? 'test.example', passphrase: o.passphrase });
  const store = CaStore.open(dir);
  const pass = o.passphrase === undefined ? {} : { passphrase: o.passphrase };
  await issueServer(store, { name: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'], ttlMs: 86_400_000, ...pass });
  let n = 0;
  const out = () => join(root, `out-${n++}`);
  const read = (f: string) => readFileSync(f, 'utf8');
  return {
    dir,
    store,
    ca: read(store.layout.caCert),
    async issue(name, roles, io = {}) {
      const r = await issueClient(store, { name, roles, ttlMs: io.ttlMs ?? 86_400_000, outDir: out(), ...pass });
      return { cert: read(r.files.cert), key: read(r.files.key as string), serial: r.record.serial };
    },
    async revoke(target) {
      await revoke(store, { target, reason: 'keyCompromise', ...pass });
    },
    async custom(c) {
      const keys = await store.loadKeys(store.readInventory(), o.passphrase);
      const pair = await generateKeyPair('ec-p256');
      const serial = randomSerial();
      const leaf = await createLeaf({ kind: c.kind ?? 'client', name: c.name, roles: c.roles ?? [], publicKey: pair.publicKey, serial, notBefore: c.notBefore, notAfter: c.notAfter, ...(c.kind === 'server' ? { dns: ['localhost'] } : {}) }, keys.intermediate);
      return { cert: `${leaf.toString('pem')}\n${keys.intermediate.cert.toString('pem')}\n`, key: privateKeyPem(pair.privateKey), serial };
    },
  };
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface Upstream {
  url: string;
  port: number;
  seen: SeenRequest[];
  server: HttpServer;
}

/** An HTTP upstream that records every request and answers 200 with a JSON echo; plus a WebSocket echo. */
export async function startUpstream(t: TestContext, handler?: (req: SeenRequest, res: import('node:http').ServerResponse) => void): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const server = createHttpServer((req, res) => {
    req.on('error', () => {}); // a request aborted mid-body must not crash the test process
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
      seen.push(s);
      if (handler) return handler(s, res);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: s.url, method: s.method, headers: s.headers, bodyBytes: s.body.length }));
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    ws.send(JSON.stringify({ hello: true, url: req.url, headers: req.headers }));
    ws.on('message', (m) => ws.send(`echo:${String(m)}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, seen, server };
}

export interface LogSink {
  lines: Array<Record<string, unknown>>;
  of(stream: 'auth' | 'access' | 'error' | 'audit'): Array<Record<string, unknown>>;
  /** Resolves with the first line (existing or future) that matches, or rejects after `ms`. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

export function captureLoggers(): { loggers: Loggers; sink: LogSink } {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const text of String(chunk).split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        for (const w of [...waiters]) if (w.pred(line)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(line);
      }
      cb();
    },
  });
  const root = pino({ level: 'debug', base: undefined }, stream);
  const loggers: Loggers = { auth: root.child({ log: 'auth' }), access: root.child({ log: 'access' }), error: root.child({ log: 'error' }), audit: root.child({ log: 'audit' }), root: root.child({ log: 'error' }), reopen() {}, flush() {} };
  return {
    loggers,
    sink: {
      lines,
      of: (s) => lines.filter((l) => l.log === s),
      waitFor(pred, ms = 5_000) {
        const hit = lines.find(pred);
        if (hit) return Promise.resolve(hit);
        return new Promise((resolve, reject) => {
          const w = { pred, resolve: (l: Record<string, unknown>) => (clearTimeout(timer), resolve(l)) };
          const timer = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error('no matching log line in time'));
          }, ms);
          waiters.push(w);
        });
      },
    },
  };
}

export interface RunningBroker {
  broker: Broker;
  port: number;
  url: string;
  logs: LogSink;
}

/**
 * Abuse limits out of the way of tests about something else: every test's client comes from
 * 127.0.0.1, so the product defaults (60-request burst per identity, bans after 30 denials) would
 * turn an attack table into a ban. Tests about those limits set them explicitly.
 */
export const LENIENT = {
  rateLimit: { rate: 1_000_000, per: '1s', burst: 1_000_000 },
  maxConcurrent: 10_000,
  filters: { connectionRate: { rate: 100_000, per: '1s', burst: 100_000 }, maxConnectionsPerIp: 10_000 },
  bans: { enabled: false },
} as const;

/** Validates `raw` as a config (pki.dir and listen default to the test's; abuse limits LENIENT) and starts the broker. */
export async function startBroker(t: TestContext, pki: TestPki, raw: Record<string, unknown>, options: Omit<BuildOptions, 'loggers'> = {}): Promise<RunningBroker> {
  const { config, problems } = validateConfig({ listen: { host: '127.0.0.1', port: 0 }, admin: { port: 0 }, pki: { dir: pki.dir }, tls: { server: 'localhost' }, ...LENIENT, ...raw }, pki.dir);
  if (!config) throw new Error(`test config invalid:\n${problems.join('\n')}`);
  const { loggers, sink } = captureLoggers();
  const broker = await buildBroker(config, { ...options, loggers });
  const { port } = await broker.listen();
  t.after(() => broker.close());
  return { broker, port, url: `https://localhost:${port}`, logs: sink };
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

export interface ClientOptions {
  id?: Identity;
  ca: string;
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  tls?: ConnectionOptions;
  /** The client's source address (any 127.x.y.z works on Linux loopback). */
  localAddress?: string;
}

/** Reads a whole response into a `Response`. */
export function collectResponse(res: import('node:http').IncomingMessage, resolve: (r: Response) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> });
  });
  res.on('error', reject);
}

/** One HTTPS request on a fresh connection (no agent pooling). */
export function request(port: number, o: ClientOptions): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        method: o.method ?? 'GET',
        path: o.path,
        headers: o.headers,
        ca: o.ca,
        ...(o.id ? { cert: o.id.cert, key: o.id.key } : {}),
        agent: false,
        timeout: 15_000,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
        ...o.tls,
      },
      (res) => collectResponse(res, resolve, reject),
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Writes raw bytes over an mTLS connection and returns everything read until the server closes (or `ms`). */
export function rawExchange(port: number, o: { id: Identity; ca: string; data: string | Buffer; ms?: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port, ca: o.ca, cert: o.id.cert, key: o.id.key }, () => socket.write(o.data));
    const timer = setTimeout(() => socket.end(), o.ms ?? 2_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => (chunks.length ? undefined : reject(e)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

export interface OpenConnection {
  agent: Agent;
  /** The client side of the keep-alive connection the first request went over. */
  socket: Socket;
  get(path: string): Promise<number>;
}

/** A keep-alive agent with one connection, opened by a first GET (which must answer 200). */
export async function openConnection(t: TestContext, port: number, ca: string, id: Identity, path: string): Promise<OpenConnection> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca, cert: id.cert, key: id.key });
  t.after(() => agent.destroy());
  const get = (p: string) =>
    new Promise<{ status: number; socket: Socket }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, path: p, agent, timeout: 15_000 }, (res) => {
        const socket = res.socket; // detached from the response once it ends
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, socket }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', reject);
      req.end();
    });
  const first = await get(path);
  if (first.status !== 200) throw new Error(`openConnection: the first GET ${path} answered ${first.status}, not 200`);
  return { agent, socket: first.socket, get: async (p) => (await get(p)).status };
}

/** A port that was just free on 127.0.0.1: bound, noted, released (an upstream with nothing listening). */
export async function deadPort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
