/**
 * Moving one request to its upstream and the answer back: an undici Pool per route (keep-alive,
 * HTTP/1.1, http or https with optional client certificate), request bodies streamed through a
 * byte counter, answers streamed back with backpressure. It rewrites no policy: the headers to
 * send come from the pipeline (headers.ts), and it imports nothing that decides.
 *
 * Built on undici's dispatch API rather than @fastify/http-proxy for plain HTTP routes: the
 * benchmark (README, "Benchmark") shows the stock Fastify proxy alone above the 16 KiB and
 * keep-alive targets; @fastify/http-proxy still relays WebSockets (websocket.ts).
 */
import { subscribe } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { RequestContext } from '../request/index.ts';
import { replyError } from '../request/index.ts';
import { BodyLimiter } from '../request/body-limit.ts';
import { downstreamHeaders } from './headers.ts';

export interface UpstreamTlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  servername?: string | undefined;
}

export interface UpstreamOptions {
  url: string;
  timeoutMs: number;
  tls?: UpstreamTlsFiles | undefined;
  bodyLimit: number;
  /** The pool's size: connections to this upstream at most. */
  connections: number;
  /** The most exchanges one identity may have under way on this upstream at once (≥ 1; 0: not counted, a benchmark ablation only). */
  share: number;
  /** How long writing the answer to the client may stay blocked before the client is dropped. */
  responseWriteMs: number;
  /** Pass the upstream's Server header on (dropped otherwise). */
  keepServerHeader?: boolean;
  /** Tell the client its request id in x-request-id (off only for the benchmark's traceContext ablation). */
  requestIdHeader?: boolean;
  /** Note on each request the address:port of the pool connection it went over (for the access log). */
  noteAddress?: boolean;
  /** Called for a failure of the upstream (not of the client), before the 502/504 goes out. */
  onFailure(ctx: RequestContext, err: Error, timedOut: boolean): void;
  /** Called when a client that stopped reading its answer is dropped. */
  onWriteTimeout(ctx: RequestContext): void;
}

function tlsOptions(t: UpstreamTlsFiles | undefined): Record<string, unknown> | undefined {
  if (!t) return undefined;
  return {
    ...(t.ca ? { ca: readFileSync(t.ca, 'utf8') } : {}),
    ...(t.cert ? { cert: readFileSync(t.cert, 'utf8') } : {}),
    ...(t.key ? { key: readFileSync(t.key, 'utf8') } : {}),
    ...(t.servername ? { servername: t.servername } : {}),
    rejectUnauthorized: true,
  };
}

function isTimeout(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'ETIMEDOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT') return true;
  }
  return false;
}

/** Whether the request has a body to forward (Node's parser has already refused ambiguous framing). */
function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * The upstream address of each exchange, for the access log. undici tells no handler which pool
 * connection carries its request; its `undici:client:sendHeaders` channel tells the head and the
 * socket, and the head carries the request id the pipeline added. Requests wait here (by id) from
 * dispatch until their head is sent or they end.
 */
const awaitingAddress = new Map<string, RequestContext>();
const addresses = new WeakMap<object, string>();
const REQUEST_ID = '\r\nx-request-id: ';
let listening = false;

function noteAddress(message: unknown): void {
  if (awaitingAddress.size === 0) return;
  const { headers, socket } = message as { headers: string; socket: { remoteAddress?: string; remotePort?: number } };
  const at = headers.indexOf(REQUEST_ID);
  if (at === -1) return;
  const from = at + REQUEST_ID.length;
  const ctx = awaitingAddress.get(headers.slice(from, headers.indexOf('\r', from)));
  if (ctx === undefined) return;
  awaitingAddress.delete(ctx.id);
  let a = addresses.get(socket);
  if (a === undefined) {
    const ip = socket.remoteAddress ?? '';
    addresses.set(socket, (a = `${ip.includes(':') ? `[${ip}]` : ip}:${socket.remotePort ?? ''}`));
  }
  ctx.upstreamAddr = a;
}

/** The reason given to undici when the broker stops an exchange (one object: nothing is allocated to stop one). */
const STOPPED = new Error('exchange stopped by the broker (client gone or deadline passed)');

/** Fires while the answer's writing is blocked; drops the client once it has been blocked for responseWriteMs. */
function checkWrite(relay: Relay): void {
  relay.writeTimer = undefined;
  if (relay.blockedSince === 0 || relay.ctx.res.destroyed) return;
  const waited = performance.now() - relay.blockedSince;
  const limit = relay.up.responseWriteMs;
  if (waited < limit) relay.writeTimer = setTimeout(checkWrite, limit - waited, relay);
  else relay.writeTimedOut();
}

/**
 * One upstream exchange, relayed to the client; one object per request, its methods on the
 * prototype. It holds one of its identity's share of the pool from dispatch until it ends:
 * answer complete, upstream error, client gone, or a deadline; `release` runs once whichever
 * comes first (and the client's close always comes, at the latest).
 */
class Relay implements Dispatcher.DispatchHandler {
  readonly ctx: RequestContext;
  readonly up: Upstream;
  readonly limiter: BodyLimiter | undefined;
  /** The identity whose share this exchange holds; undefined once released. */
  holder: string | undefined;
  controller: Dispatcher.DispatchController | undefined = undefined;
  /** Set when the broker stopped the exchange: whatever undici reports afterwards answers nothing. */
  stopped = false;
  /** performance.now() when writing the answer blocked (res.write returned false); 0 when it is not blocked. */
  blockedSince = 0;
  writeTimer: NodeJS.Timeout | undefined = undefined;
  #onDrain: (() => void) | undefined = undefined;

  constructor(ctx: RequestContext, up: Upstream, limiter: BodyLimiter | undefined, holder: string) {
    this.ctx = ctx;
    this.up = up;
    this.limiter = limiter;
    this.holder = holder;
  }

  release(): void {
    const who = this.holder;
    if (who === undefined) return;
    this.holder = undefined;
    this.up.release(who);
    if (this.up.noteAddress && this.ctx.upstreamAddr === undefined) awaitingAddress.delete(this.ctx.id);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // The client went away, or the request was stopped, before the upstream was asked: do not ask.
    const res = this.ctx.res;
    if (this.stopped || res.destroyed || res.writableEnded) controller.abort(STOPPED);
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: Node's server already said 100 Continue to the client
    const ctx = this.ctx;
    if (this.stopped) return; // stopped by a deadline: whatever was answered stands
    ctx.upstreamAt = performance.now();
    const out = downstreamHeaders(headers, !this.up.keepServerHeader) as Record<string, string | string[] | number>;
    const length = headers['content-length'];
    if (typeof length === 'string') ctx.bytesOut = Number(length) || null;
    if (ctx.headers !== undefined) Object.assign(out, ctx.headers);
    if (this.up.requestIdHeader) out['x-request-id'] = ctx.id;
    ctx.res.writeHead(statusCode, out as Record<string, string | string[]>);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.ctx.res;
    if (this.stopped || res.write(chunk)) return;
    controller.pause();
    this.blockedSince = performance.now();
    res.once('drain', (this.#onDrain ??= () => this.drained()));
    this.writeTimer ??= setTimeout(checkWrite, this.up.responseWriteMs, this);
  }

  drained(): void {
    this.blockedSince = 0;
    if (!this.stopped) this.controller?.resume();
  }

  onResponseEnd(): void {
    this.release();
    if (this.stopped) return;
    this.stopped = true;
    this.ctx.res.end();
    // A client that is not reading the last of the answer still has blockedSince set: the timer stays.
    if (this.blockedSince === 0) this.clearTimer();
  }

  clearTimer(): void {
    if (this.writeTimer !== undefined) clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
  }

  /** Stops the exchange: the pool connection is freed and nothing more is relayed or answered from it. */
  abort(): void {
    this.release();
    if (this.stopped) return;
    this.stopped = true;
    this.controller?.abort(STOPPED);
  }

  /** The client's connection closed: if the answer is not complete, stop asking the upstream for it. */
  clientClosed(): void {
    this.clearTimer();
    this.abort();
  }

  /** The client read nothing for responseWriteMs: drop it, and free the upstream connection. */
  writeTimedOut(): void {
    const ctx = this.ctx;
    ctx.denial = { code: 'BRK_ERR_HTTP_RESPONSE_WRITE_TIMEOUT', detail: `the client read nothing for ${this.up.responseWriteMs} ms` };
    this.up.onWriteTimeout(ctx);
    this.abort();
    ctx.res.destroy();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.release();
    if (this.stopped) return; // the broker stopped it: the answer (if any) was decided there
    this.stopped = true;
    this.clearTimer();
    const ctx = this.ctx;
    if (ctx.res.destroyed) return; // the client left first: nothing to answer
    if (this.limiter?.exceeded) {
      ctx.setHeader('connection', 'close');
      return replyError(ctx, 'BRK_ERR_HTTP_BODY_TOO_LARGE', `streamed body over ${this.up.bodyLimit} bytes`);
    }
    const timedOut = isTimeout(err);
    this.up.onFailure(ctx, err, timedOut);
    replyError(ctx, timedOut ? 'BRK_ERR_UPSTREAM_TIMEOUT' : 'BRK_ERR_UPSTREAM_UNAVAILABLE', `${this.up.origin}: ${err.message}`);
  }
}

export class Upstream {
  readonly origin: string;
  /** The upstream URL's own path ("" for "/"), put before every forwarded path. */
  readonly basePath: string;
  readonly bodyLimit: number;
  /** The pool's size, and the most exchanges one identity may have under way (the share). */
  readonly connections: number;
  readonly share: number;
  readonly responseWriteMs: number;
  readonly keepServerHeader: boolean;
  readonly requestIdHeader: boolean;
  readonly noteAddress: boolean;
  readonly onFailure: UpstreamOptions['onFailure'];
  readonly onWriteTimeout: UpstreamOptions['onWriteTimeout'];
  /** The TLS options for an https upstream, read once (the WebSocket relay uses them too). */
  readonly tls: Record<string, unknown> | undefined;
  /** Exchanges under way (dispatched and not ended): the pool's connections in use, or asked for. */
  inUse = 0;
  /** The same, per identity (caller name); identities holding none are not kept. */
  readonly #held = new Map<string, number>();
  readonly #pool: Pool;

  constructor(o: UpstreamOptions) {
    const url = new URL(o.url);
    this.origin = url.origin;
    this.basePath = url.pathname === '/' ? '' : url.pathname;
    this.bodyLimit = o.bodyLimit;
    this.connections = o.connections;
    this.share = o.share === 0 ? 0 : Math.max(1, Math.min(o.share, o.connections));
    this.responseWriteMs = o.responseWriteMs;
    this.keepServerHeader = o.keepServerHeader === true;
    this.requestIdHeader = o.requestIdHeader !== false;
    this.noteAddress = o.noteAddress === true;
    if (this.noteAddress && !listening) {
      listening = true;
      subscribe('undici:client:sendHeaders', noteAddress);
    }
    this.onFailure = o.onFailure;
    this.onWriteTimeout = o.onWriteTimeout;
    this.tls = tlsOptions(o.tls);
    this.#pool = new Pool(url.origin, {
      connections: o.connections,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      connectTimeout: Math.min(o.timeoutMs, 10_000),
      // Always verify an https upstream, with the route's CA when it names one.
      connect: this.tls ?? { rejectUnauthorized: true },
    });
  }

  /**
   * Sends the request (`path` already rewritten for the upstream, headers already decided) and
   * relays the answer, as one of `who`'s share of the pool; false (nothing sent) when `who`
   * already has its share under way.
   */
  forward(ctx: RequestContext, who: string, path: string, headers: string[] | Record<string, string>): boolean {
    if (this.share !== 0) {
      const held = this.#held.get(who) ?? 0;
      if (held >= this.share) return false;
      this.#held.set(who, held + 1);
    }
    this.inUse++;
    const req = ctx.req;
    let limiter: BodyLimiter | undefined;
    if (hasBody(req)) {
      limiter = new BodyLimiter(this.bodyLimit, ctx);
      pipeline(req, limiter, () => {});
    }
    const relay = new Relay(ctx, this, limiter, who);
    ctx.exchange = relay;
    if (this.noteAddress) awaitingAddress.set(ctx.id, ctx);
    ctx.proxyStart = performance.now();
    this.#pool.dispatch({ origin: this.origin, path, method: req.method as Dispatcher.HttpMethod, headers, body: limiter ?? null }, relay);
    return true;
  }

  /** One exchange of `who` ended (Relay.release calls it once per exchange). */
  release(who: string): void {
    this.inUse--;
    if (this.share === 0) return;
    const held = (this.#held.get(who) ?? 1) - 1;
    if (held <= 0) this.#held.delete(who);
    else this.#held.set(who, held);
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}
