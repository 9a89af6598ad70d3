/**
 * The Node load generator: one process of it (run.ts starts several and merges their reports).
 * HTTPS with client certificates through node:https, one keep-alive Agent per connection
 * (maxSockets 1), so each connection has exactly one identity and the number of connections is
 * exact. run.ts uses it for the idle mode, and for every mode with --gen node; by default the
 * keepalive and handshake loads come from scripts/bench/loadgen.c, which answers the same
 * messages on stdin/stdout at a fraction of this one's CPU per request.
 *
 * Modes:
 * - keepalive: `connections` connections, `concurrency` requests in flight. When they are equal,
 *   each request loop owns one connection; when fewer, the loops take the next free connection in
 *   round-robin order, so every connection (and identity) is used in turn.
 * - handshake: a new connection with a full mTLS handshake per request (agent: false; no
 *   resumption: no session is ever offered), `concurrency` at once.
 * - idle: opens `connections` connections (one GET each, then idle) and keeps them open.
 * - tunnel: as handshake, but each new connection is a forward proxy's tunnel: `CONNECT
 *   <connect>`, then (answered 200) one GET with `Connection: close` in plain HTTP through it to
 *   the destination, read to its end. A non-200 answer to the CONNECT counts as non-200.
 * `hostHeader` replaces the Host header (keepalive with an absolute-form `path` is a forward
 * proxy's absolute-form load).
 *
 * Driven over the IPC channel: {cmd:'prepare'} → {type:'prepared'}; {cmd:'run', startAt, endAt}
 * (epoch ms; requests count when they start and finish inside the window) → {type:'result'};
 * {cmd:'status'} → {type:'status'}; {cmd:'close'} ends the process. Every loop stops at endAt and
 * the process exits by itself if the parent goes away or after `maxLifeMs`.
 */
import { Agent, request, type RequestOptions } from 'node:https';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { Histogram, type HistogramJson } from './hist.ts';

export interface LoadConfig {
  mode: 'keepalive' | 'handshake' | 'idle' | 'tunnel';
  host: string;
  port: number;
  servername: string;
  path: string;
  /** PEM file the client trusts for the server. */
  caFile: string;
  /** tunnel mode: the CONNECT target (host:port), also the Host of the GET inside. */
  connect?: string;
  /** The Host header's value instead of servername:port. */
  hostHeader?: string;
  /** Client identities (PEM files: chain and key); connection i uses identities[(offset + i) % n]. */
  identities: Array<{ cert: string; key: string }>;
  offset: number;
  connections: number;
  concurrency: number;
  /**
   * keepalive only: requests per second this process sends in total (0: as fast as answers come).
   * Each connection then sends on a fixed schedule, and latency is counted from the scheduled
   * start, so a stall shows in the latency instead of lowering the rate (no coordinated omission).
   */
  rate?: number;
  /** Key-exchange groups the client offers (the same for both proxies; nginx's OpenSSL 3.0 has no ML-KEM). */
  groups: string;
  /** Concurrent handshakes while opening connections. */
  openConcurrency: number;
  requestTimeoutMs: number;
  maxLifeMs: number;
}

export interface LoadResult {
  type: 'result';
  ok: number;
  /** Answers with a status other than 200. */
  non2xx: number;
  errors: number;
  errorSamples: string[];
  bytes: number;
  /** Responses that started in the window but ended after it (not counted). */
  late: number;
  resumed: number;
  latency: HistogramJson;
  windowMs: number;
  cpuUs: number;
}

/** argv[2]: the config file (JSON; 1,000 identity paths do not fit in one argument). */
const cfg = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as LoadConfig;
const now = () => performance.timeOrigin + performance.now();
setTimeout(() => process.exit(2), cfg.maxLifeMs ?? 30 * 60_000).unref();
process.on('disconnect', () => process.exit(0));

const ca = readFileSync(cfg.caFile, 'utf8');
const contexts = new Map<number, SecureContext>();
/** One parsed TLS context per identity, so the client does not re-read PEMs per connection. */
function contextFor(i: number): SecureContext {
  const k = i % cfg.identities.length;
  let c = contexts.get(k);
  if (!c) {
    const id = cfg.identities[k] as { cert: string; key: string };
    c = createSecureContext({ ca, cert: readFileSync(id.cert, 'utf8'), key: readFileSync(id.key, 'utf8'), ecdhCurve: cfg.groups, minVersion: 'TLSv1.2' });
    contexts.set(k, c);
  }
  return c;
}

interface Answer {
  status: number;
  bytes: number;
  resumed: boolean;
}

const HEADERS = { host: cfg.hostHeader ?? `${cfg.servername}:${cfg.port}`, 'user-agent': 'broker-bench' };

function get(o: RequestOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let resumed = false;
    const req = request({ host: cfg.host, port: cfg.port, path: cfg.path, method: 'GET', headers: HEADERS, timeout: cfg.requestTimeoutMs, ...o }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, resumed }));
      res.on('error', reject);
    });
    req.on('socket', (s) => {
      const tls = s as TLSSocket;
      // only a new socket handshakes; a reused keep-alive socket has nothing to report
      if (tls.connecting && typeof tls.isSessionReused === 'function') tls.once('secureConnect', () => (resumed = tls.isSessionReused()));
    });
    req.on('timeout', () => req.destroy(new Error('request timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** tunnel mode: a new mTLS connection, CONNECT, then one GET through the tunnel, read until the destination closes. */
function tunnel(i: number): Promise<Answer> {
  const authority = cfg.connect as string;
  return new Promise((resolve, reject) => {
    const req = request({ host: cfg.host, port: cfg.port, method: 'CONNECT', path: authority, headers: { host: authority, 'user-agent': 'broker-bench' }, agent: false, secureContext: contextFor(i), servername: cfg.servername, timeout: cfg.requestTimeoutMs } as RequestOptions);
    req.on('connect', (res, socket) => {
      res.resume();
      if (res.statusCode !== 200) {
        socket.destroy();
        return resolve({ status: res.statusCode ?? 0, bytes: 0, resumed: false });
      }
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('end', () => {
        const all = Buffer.concat(chunks);
        const headEnd = all.indexOf('\r\n\r\n');
        const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(all.subarray(0, Math.max(0, headEnd)).toString('latin1'))?.[1] ?? 0);
        socket.destroy();
        if (headEnd < 0) return reject(new Error('tunnel closed before the answer'));
        resolve({ status, bytes: all.length - headEnd - 4, resumed: false });
      });
      socket.write(`GET ${cfg.path} HTTP/1.1\r\nhost: ${authority}\r\nuser-agent: broker-bench\r\nconnection: close\r\n\r\n`);
    });
    req.on('timeout', () => req.destroy(new Error('request timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A keep-alive connection: an agent that holds at most one socket. */
interface Conn {
  agent: Agent;
  index: number;
  closed: boolean;
}

const conns: Conn[] = [];
let closedByPeer = 0;

function makeConn(index: number): Conn {
  const i = cfg.offset + index;
  const agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: 'fifo', secureContext: contextFor(i), servername: cfg.servername } as ConstructorParameters<typeof Agent>[0]);
  const c: Conn = { agent, index, closed: false };
  return c;
}

async function requestOn(c: Conn): Promise<Answer> {
  const r = get({ agent: c.agent });
  return r;
}

function watchSockets(c: Conn): void {
  c.agent.on('free', (socket) => {
    if ((socket as unknown as { __watched?: boolean }).__watched) return;
    (socket as unknown as { __watched?: boolean }).__watched = true;
    socket.once('close', () => {
      if (!c.closed) closedByPeer++;
    });
  });
}

/** Runs `fn` over 0..n-1 with at most `width` at once. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function prepare(): Promise<{ type: 'prepared'; open: number; errors: number; errorSamples: string[]; ms: number }> {
  const t0 = now();
  let errors = 0;
  const samples: string[] = [];
  if (cfg.mode === 'handshake' || cfg.mode === 'tunnel') {
    // warm the client's contexts and check that one request gets through
    try {
      const a = cfg.mode === 'tunnel' ? await tunnel(cfg.offset) : await get({ agent: false, secureContext: contextFor(cfg.offset), servername: cfg.servername } as RequestOptions);
      if (a.status !== 200) throw new Error(`status ${a.status}`);
    } catch (e) {
      errors++;
      samples.push(String((e as Error).message));
    }
    return { type: 'prepared', open: 0, errors, errorSamples: samples, ms: now() - t0 };
  }
  for (let i = 0; i < cfg.connections; i++) conns.push(makeConn(i));
  await pool(conns.length, cfg.openConcurrency, async (i) => {
    const c = conns[i] as Conn;
    watchSockets(c);
    try {
      const a = await requestOn(c);
      if (a.status !== 200) throw new Error(`status ${a.status}`);
    } catch (e) {
      errors++;
      if (samples.length < 5) samples.push(String((e as Error).message));
    }
  });
  closedByPeer = 0;
  return { type: 'prepared', open: conns.length - errors, errors, errorSamples: samples, ms: now() - t0 };
}

async function run(startAt: number, endAt: number): Promise<LoadResult> {
  const hist = new Histogram();
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let bytes = 0;
  let late = 0;
  let resumed = 0;
  const errorSamples: string[] = [];
  const cpu0 = process.cpuUsage();
  const one = async (o: () => Promise<Answer>, scheduled?: number) => {
    const t0 = scheduled ?? now();
    try {
      const a = await o();
      const t1 = now();
      if (t0 < startAt) return;
      if (t1 > endAt) return void late++;
      if (a.resumed) resumed++;
      if (a.status === 200) {
        ok++;
        bytes += a.bytes;
        hist.record((t1 - t0) * 1000);
      } else non2xx++;
    } catch (e) {
      if (t0 >= startAt && now() <= endAt) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(String((e as Error).message));
      }
      await new Promise((r) => setTimeout(r, 5)); // a failing target must not turn this into a busy loop
    }
  };
  let loops: Array<Promise<void>>;
  if (cfg.mode === 'handshake' || cfg.mode === 'tunnel') {
    let k = cfg.offset;
    loops = Array.from({ length: cfg.concurrency }, async () => {
      while (now() < endAt) {
        const i = k++;
        await one(() => (cfg.mode === 'tunnel' ? tunnel(i) : get({ agent: false, secureContext: contextFor(i), servername: cfg.servername } as RequestOptions)));
      }
    });
  } else if (cfg.rate && cfg.rate > 0) {
    const interval = (1000 * conns.length) / cfg.rate;
    const first = now();
    loops = conns.map(async (c, j) => {
      for (let next = first + (j * interval) / conns.length; next < endAt; next += interval) {
        // Behind schedule (the previous answer came late): the wait is the server's, and latency counts
        // from the scheduled time. Ahead: wait for the timer, and count from the actual start, so the
        // timer's own jitter is not charged to the server.
        const behind = now() >= next;
        if (!behind) await new Promise((r) => setTimeout(r, Math.max(0, next - now())));
        await one(() => requestOn(c), behind ? next : undefined);
      }
    });
  } else if (cfg.concurrency >= conns.length) {
    loops = conns.map(async (c) => {
      while (now() < endAt) await one(() => requestOn(c));
    });
  } else {
    // fewer requests in flight than connections: take connections round-robin
    const free = [...conns];
    loops = Array.from({ length: cfg.concurrency }, async () => {
      while (now() < endAt) {
        const c = free.shift() as Conn;
        await one(() => requestOn(c));
        free.push(c);
      }
    });
  }
  await Promise.all(loops);
  const cpu = process.cpuUsage(cpu0);
  return { type: 'result', ok, non2xx, errors, errorSamples, bytes, late, resumed, latency: hist.toJSON(), windowMs: endAt - startAt, cpuUs: cpu.user + cpu.system };
}

process.on('message', (m: { cmd: string; startAt?: number; endAt?: number }) => {
  const send = (x: unknown) => process.send?.(x);
  if (m.cmd === 'prepare') void prepare().then(send, (e: Error) => send({ type: 'failed', error: e.message }));
  else if (m.cmd === 'run') void run(m.startAt as number, m.endAt as number).then(send, (e: Error) => send({ type: 'failed', error: e.message }));
  else if (m.cmd === 'status') send({ type: 'status', open: conns.length - closedByPeer, closedByPeer });
  else if (m.cmd === 'close') {
    for (const c of conns) {
      c.closed = true;
      c.agent.destroy();
    }
    setTimeout(() => process.exit(0), 50);
  }
});
process.send?.({ type: 'hello', pid: process.pid });
