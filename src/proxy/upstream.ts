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
  /** Called for a failure of the upstream (not of the client), before the 502/504 goes out. */
  onFailure(ctx: RequestContext, err: Error, timedOut: boolean): void;
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

/** One upstream answer relayed to the client; one object per request, its methods on the prototype. */
class Relay implements Dispatcher.DispatchHandler {
  readonly ctx: RequestContext;
  readonly up: Upstream;
  readonly limiter: BodyLimiter | undefined;
  controller: Dispatcher.DispatchController | undefined = undefined;

  constructor(ctx: RequestContext, up: Upstream, limiter: BodyLimiter | undefined) {
    this.ctx = ctx;
    this.up = up;
    this.limiter = limiter;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // The client went away before the upstream was asked: do not ask.
    if (this.ctx.res.destroyed) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: Node's server already said 100 Continue to the client
    const ctx = this.ctx;
    ctx.upstreamAt = performance.now();
    const out = downstreamHeaders(headers) as Record<string, string | string[] | number>;
    const length = headers['content-length'];
    if (typeof length === 'string') ctx.bytesOut = Number(length) || null;
    if (ctx.headers !== undefined) Object.assign(out, ctx.headers);
    ctx.res.writeHead(statusCode, out as Record<string, string | string[]>);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.ctx.res;
    if (!res.write(chunk)) {
      controller.pause();
      res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.ctx.res.end();
  }

  /** The client's connection closed: if the answer is not complete, stop asking the upstream for it. */
  clientClosed(): void {
    if (!this.ctx.res.writableFinished) this.controller?.abort(new Error('client closed the connection'));
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
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
  readonly onFailure: UpstreamOptions['onFailure'];
  /** The TLS options for an https upstream, read once (the WebSocket relay uses them too). */
  readonly tls: Record<string, unknown> | undefined;
  readonly #pool: Pool;

  constructor(o: UpstreamOptions) {
    const url = new URL(o.url);
    this.origin = url.origin;
    this.basePath = url.pathname === '/' ? '' : url.pathname;
    this.bodyLimit = o.bodyLimit;
    this.onFailure = o.onFailure;
    this.tls = tlsOptions(o.tls);
    this.#pool = new Pool(url.origin, {
      connections: 128,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      connectTimeout: Math.min(o.timeoutMs, 10_000),
      // Always verify an https upstream, with the route's CA when it names one.
      connect: this.tls ?? { rejectUnauthorized: true },
    });
  }

  /** Sends the request (`path` already rewritten for the upstream, headers already decided) and relays the answer. */
  forward(ctx: RequestContext, path: string, headers: string[] | Record<string, string>): void {
    const req = ctx.req;
    let limiter: BodyLimiter | undefined;
    if (hasBody(req)) {
      limiter = new BodyLimiter(this.bodyLimit, ctx);
      pipeline(req, limiter, () => {});
    }
    const relay = new Relay(ctx, this, limiter);
    ctx.exchange = relay;
    ctx.proxyStart = performance.now();
    this.#pool.dispatch({ origin: this.origin, path, method: req.method as Dispatcher.HttpMethod, headers, body: limiter ?? null }, relay);
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}
