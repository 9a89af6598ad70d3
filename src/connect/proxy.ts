/**
 * `broker connect --forward`: the local port is a plain HTTP proxy for tools that only know
 * HTTP_PROXY / HTTPS_PROXY, and the broker's forward listener is the proxy behind it, reached over
 * mutual TLS. CONNECT becomes a tunnel through the broker (connect/proxy-tunnel.ts); an
 * absolute-form `http://` request is sent to the broker in absolute form over the kept-alive pool
 * of the moment (the same pool, certificate reload and renewal as the gateway mode) and its answer
 * streamed back, hop-by-hop headers dropped both ways; an origin-form request is refused with
 * 400 BRK_ERR_CONNECT_NOT_PROXY. The broker decides what may be reached: its refusals come
 * back to the tool as it wrote them. One access line per request or tunnel.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { ClientTls } from './client-tls.ts';
import { describe, answer } from './forward.ts';
import { requestHeaders, responseHeaders } from './headers.ts';
import type { Target, Via } from './options.ts';
import { tunnel } from './proxy-tunnel.ts';

/** Where the broker's forward listener is, for tunnels. */
export interface BrokerAddress {
  origin: string;
  host: string;
  port: number;
  /** SNI and the name checked in its certificate; none for an IP address. */
  servername?: string;
}

export function brokerAddress(target: Target): BrokerAddress {
  const u = new URL(target.origin);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return { origin: target.origin, host, port: u.port === '' ? 443 : Number(u.port), ...(isIP(host) === 0 ? { servername: host } : {}) };
}

export interface ProxyDeps {
  target: Target;
  via?: Via | undefined;
  dispatcher(): Dispatcher;
  tls(): ClientTls;
  access: Logger;
  draining(): boolean;
}

export interface LocalProxy {
  request(req: IncomingMessage, res: ServerResponse): void;
  connect(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /** Cuts every open tunnel (shutdown, after the grace period). */
  closeTunnels(): void;
  tunnels(): number;
}

/** Counts the bytes that pass. */
function counter(add: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      add(chunk.length);
      done(null, chunk);
    },
  });
}

export function localProxy(deps: ProxyDeps): LocalProxy {
  const open = new Set<Socket>();
  const where = `the broker at ${deps.target.origin}${deps.via ? ` via the proxy ${deps.via.uri}` : ''}`;

  const request = (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    let host: string | null = null;
    let port: number | null = null;
    let bytesUp = 0;
    let bytesDown = 0;
    if (deps.draining()) res.setHeader('connection', 'close');
    const log = (status: number, extra: Record<string, unknown> = {}) =>
      deps.access.info({ method, host, port, status, bytesUp, bytesDown, durationMs: Math.round((performance.now() - started) * 1000) / 1000, ...extra }, 'request');
    let dest: URL | undefined;
    try {
      dest = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) ? new URL(url) : undefined;
    } catch {
      dest = undefined;
    }
    if (dest === undefined) {
      req.resume();
      answer(res, 400, { code: 'BRK_ERR_CONNECT_NOT_PROXY', message: `"${method} ${url.slice(0, 100)}" is not a proxy request: this port is an HTTP proxy to the broker's forward listener; point HTTP_PROXY / HTTPS_PROXY at it` });
      return log(400, { code: 'BRK_ERR_CONNECT_NOT_PROXY' });
    }
    host = dest.hostname;
    port = dest.port === '' ? (dest.protocol === 'https:' ? 443 : 80) : Number(dest.port);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    const body = hasBody ? req.pipe(counter((n) => (bytesUp += n))) : null;
    if (body) req.once('error', (err) => body.destroy(err));
    const run = async () => {
      let up: Dispatcher.ResponseData;
      try {
        up = await deps.dispatcher().request({
          origin: deps.target.origin,
          // absolute-form, as a proxy is asked; the broker judges the destination
          path: url,
          method: method as Dispatcher.HttpMethod,
          headers: { ...requestHeaders(req.headersDistinct), host: dest.host },
          body,
          signal: abort.signal,
        });
      } catch (err) {
        if (abort.signal.aborted) return log(499, { detail: 'the local client went away' });
        // drain what is left of the body, so the connection can serve the next request
        if (body) req.unpipe(body);
        req.resume();
        const message = `cannot forward to ${where}: ${describe(err)}`;
        answer(res, 502, { code: 'BRK_ERR_CONNECT_UPSTREAM', message });
        return log(502, { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: message });
      }
      if (deps.draining()) res.setHeader('connection', 'close');
      res.writeHead(up.statusCode, responseHeaders(up.headers));
      // The broker's own refusals are JSON with a code: note it.
      let code: string | undefined;
      const refusal = up.statusCode >= 400 && String(up.headers['content-type'] ?? '').startsWith('application/json');
      const chunks: Buffer[] = [];
      const tap = counter((n) => (bytesDown += n));
      if (refusal) tap.on('data', (c: Buffer) => chunks.length < 16 && chunks.push(c));
      try {
        await pipeline(up.body, tap, res);
        if (refusal) {
          try {
            const c = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: unknown }).code;
            if (typeof c === 'string') code = c;
          } catch {
            // not the broker's JSON: nothing to note
          }
        }
        log(up.statusCode, code === undefined ? {} : { code });
      } catch (err) {
        res.destroy();
        if (abort.signal.aborted) return log(up.statusCode, { detail: 'the local client went away' });
        log(up.statusCode, { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: `the answer from ${where} was cut: ${describe(err)}` });
      }
    };
    void run();
  };

  return {
    request,
    connect: tunnel({ broker: brokerAddress(deps.target), via: deps.via, tls: deps.tls, access: deps.access, open }),
    closeTunnels() {
      for (const s of open) s.destroy();
    },
    tunnels: () => open.size,
  };
}
