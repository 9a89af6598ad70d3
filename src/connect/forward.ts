/**
 * One local request, forwarded: method, path and query, end-to-end headers and the body (streamed)
 * go to the broker over the current dispatcher; the answer streams back. A failure on the broker
 * side (connect, proxy, TLS, a dropped connection) answers 502 BRK_ERR_CONNECT_UPSTREAM with what
 * went wrong: the local client is the partner's own software, so the detail is theirs to see.
 * One access line per request: method, path (without the query), status, durationMs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { requestHeaders, responseHeaders } from './headers.ts';
import type { Target, Via } from './options.ts';

export interface ForwardDeps {
  target: Target;
  via?: Via | undefined;
  /** Added to every request (the partner's API key), replacing any such header from the local client. */
  apiKey?: { header: string; value: string } | undefined;
  /** The dispatcher of the moment: a certificate reload swaps it. */
  dispatcher(): Dispatcher;
  access: Logger;
  /** True once shutdown began: answers then close their connection, so the listener can stop. */
  draining(): boolean;
}

/** A one-line account of an undici/TLS/socket error, with its code. */
export function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: unknown };
  const proxy = /^Proxy response \((\d+)\) !== 200/.exec(e.message ?? '');
  if (proxy) return `the proxy refused the CONNECT tunnel with status ${proxy[1]}${proxy[1] === '407' ? ' (proxy authentication required or wrong)' : ''}`;
  const parts = [e.code, e.message].filter((p): p is string => Boolean(p));
  if (e instanceof AggregateError) parts.push(...e.errors.map((x) => (x as Error).message));
  const cause = e.cause instanceof Error ? `; cause: ${describe(e.cause)}` : '';
  // TLS 1.3: a broker that refuses the certificate closes the connection after the handshake.
  const refused = parts[0] === 'UND_ERR_SOCKET' ? ' (a broker that refuses the client certificate closes the connection like this: "broker doctor --client" says why)' : '';
  return `${parts.join(': ') || String(err)}${cause}${refused}`;
}

export function answer(res: ServerResponse, status: number, body: { code: string; message: string }): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function forwarder(deps: ForwardDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const where = `the broker at ${deps.target.origin}${deps.via ? ` via the proxy ${deps.via.uri}` : ''}`;
  return (req, res) => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const path = url.split('?', 1)[0];
    if (deps.draining()) res.setHeader('connection', 'close');
    const log = (status: number, extra: Record<string, unknown> = {}) =>
      deps.access.info({ method, path, status, durationMs: Math.round((performance.now() - started) * 1000) / 1000, ...extra }, 'request');
    if (!url.startsWith('/')) {
      // absolute-form: someone pointed HTTP_PROXY here; this is a gateway to one broker, not a proxy
      req.resume();
      answer(res, 400, { code: 'BRK_ERR_HTTP_BAD_REQUEST', message: 'send origin-form requests (GET /path): this listener forwards to one broker, it is not a proxy' });
      return log(400, { code: 'BRK_ERR_HTTP_BAD_REQUEST' });
    }
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    const run = async () => {
      let up: Dispatcher.ResponseData;
      try {
        up = await deps.dispatcher().request({
          origin: deps.target.origin,
          path: deps.target.basePath + url,
          method: method as Dispatcher.HttpMethod,
          headers: deps.apiKey ? { ...requestHeaders(req.headersDistinct), [deps.apiKey.header]: deps.apiKey.value } : requestHeaders(req.headersDistinct),
          body: hasBody ? req : null,
          signal: abort.signal,
        });
      } catch (err) {
        if (abort.signal.aborted) return log(499, { detail: 'the local client went away' });
        req.resume();
        if (deps.draining()) res.setHeader('connection', 'close');
        const message = `cannot forward to ${where}: ${describe(err)}`;
        answer(res, 502, { code: 'BRK_ERR_CONNECT_UPSTREAM', message });
        return log(502, { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: message });
      }
      if (deps.draining()) res.setHeader('connection', 'close');
      res.writeHead(up.statusCode, responseHeaders(up.headers));
      try {
        await pipeline(up.body, res);
        log(up.statusCode);
      } catch (err) {
        res.destroy();
        if (abort.signal.aborted) return log(up.statusCode, { detail: 'the local client went away' });
        log(up.statusCode, { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: `the answer from ${where} was cut: ${describe(err)}` });
      }
    };
    void run();
  };
}
