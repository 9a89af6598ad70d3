/**
 * The long-lived TLS listeners: the main one (client certificate required) and, when configured,
 * the certificate-optional one. They hand each request and each upgrade to whichever generation is
 * current, answer HTTP-level client errors, and apply the HTTP deadlines a reload may change.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/index.ts';
import { ERRORS, httpErrorBody, type HttpErrorCode } from '../errors.ts';
import { RequestContext, replyError } from '../request/index.ts';
import { answerRefused, createTlsServer, isAdmitted, refusalOf, type ListenerHooks, type TlsListener } from '../tls/listener.ts';
import type { TlsMaterial } from '../tls/material.ts';

export interface Listeners {
  server: TlsListener;
  optionalServer: TlsListener | undefined;
  all: readonly TlsListener[];
  /** HTTP deadlines and caps of `c` (after a reload). */
  applyLimits(c: BrokerConfig): void;
  /** Closes every open connection of these certificate serials; returns how many. */
  closeConnectionsOf(serials: Iterable<string>): number;
}

export interface Handlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  // Only HTTP errors (parser, request/headers deadline) on an established connection get an answer.
  // TLS errors arrive here too (a handshake timeout, an alert): there is no channel to answer on,
  // and `end()` would keep the connection open for ever; those sockets are destroyed.
  const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  const httpError = err.code !== undefined && (err.code.startsWith('HPE_') || timedOut);
  if (!httpError || !socket.writable || !isAdmitted(socket)) return void socket.destroy();
  // The request under way on this connection, if any (Node's parser reports the socket only).
  const res = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (timedOut) {
    // timeouts.request passed before the whole request (its body included) arrived: Node counts it
    // from the request's first byte and never renews it. A request the pipeline is handling is
    // stopped there: its upstream exchange aborted (the pool connection freed), 408, closed.
    const ctx = RequestContext.of(res);
    if (ctx !== undefined) return requestTimedOut(ctx);
  }
  // An answer already under way must not get a second one written into it.
  if (res?.headersSent) return void socket.destroy();
  const code: HttpErrorCode = timedOut ? 'BRK_ERR_HTTP_REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'BRK_ERR_HTTP_HEADERS_TOO_LARGE' : 'BRK_ERR_HTTP_BAD_REQUEST';
  const body = JSON.stringify(httpErrorBody(code, '-'));
  const status = ERRORS[code].status;
  socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/** A request that missed timeouts.request: its upstream exchange stopped, 408 if nothing was answered yet, the connection closed. */
function requestTimedOut(ctx: RequestContext): void {
  ctx.exchange?.abort();
  ctx.setHeader('connection', 'close');
  // With an answer already started, replyError cuts the connection instead.
  replyError(ctx, 'BRK_ERR_HTTP_REQUEST_TIMEOUT', 'the whole request did not arrive within timeouts.request');
  // Node would read (and drop) the rest of the body before closing; the connection is done now.
  const socket = ctx.res.socket;
  if (socket !== null && !socket.destroyed) (socket as Duplex & { destroySoon(): void }).destroySoon();
}

export function createListeners(c: BrokerConfig, material: TlsMaterial, authLog: Logger, h: Handlers, hooks: ListenerHooks): Listeners {
  const server = createTlsServer(c, material, authLog, h.request, hooks);
  // Routes whose auth drops mtls are reached on a second listener that asks for a certificate without requiring one.
  const optionalServer = c.listenCertOptional ? createTlsServer(c, material, authLog, h.request, hooks, { certOptional: true }) : undefined;
  const all = optionalServer ? [server, optionalServer] : [server];
  for (const s of all) {
    s.on('clientError', clientErrorHandler);
    // A connection refused for its certificate (tls.refusal http) is answered with the reason, never upgraded.
    s.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const refused = refusalOf(socket);
      if (refused !== undefined) return answerRefused(socket as Duplex & { writable: boolean }, refused);
      h.upgrade(req, socket, head);
    });
  }
  const applyLimits = (next: BrokerConfig) => {
    const n = settingsOf(next);
    for (const s of all) {
      s.maxRequestsPerSocket = next.filters.maxRequestsPerConnection;
      s.maxHeadersCount = next.limits.headerCount + 1;
      s.headersTimeout = n.timeouts.headers;
      s.requestTimeout = n.timeouts.request;
      s.keepAliveTimeout = n.timeouts.keepAlive;
    }
  };
  applyLimits(c);
  return {
    server,
    optionalServer,
    all,
    applyLimits,
    closeConnectionsOf(serials) {
      let closed = 0;
      for (const serial of serials) for (const s of all) closed += s.closeConnectionsOf(serial);
      return closed;
    },
  };
}

/** Binds the listeners and the admin listener; a failure closes what was bound and says which one failed. */
export async function listenAll(l: Listeners, c: BrokerConfig, admin: { listen(o: { host: string; port: number }): Promise<unknown>; server: { address(): unknown } } | undefined): Promise<{ host: string; port: number; adminPort?: number; optionalPort?: number }> {
  const bind = (s: TlsListener, at: { host: string; port: number }) =>
    new Promise<{ address: string; port: number }>((resolve, reject) => {
      s.once('error', reject);
      s.listen(at.port, at.host, () => {
        s.off('error', reject);
        const addr = s.address();
        if (!addr || typeof addr === 'string') reject(new Error('listener has no TCP address'));
        else resolve(addr);
      });
    });
  const failed = (what: string, at: { host: string; port: number }, err: unknown, flag: 'optional' | 'admin') =>
    Object.assign(new Error(`${what} ${at.host}:${at.port}: ${(err as NodeJS.ErrnoException).code ?? err}`), { code: (err as NodeJS.ErrnoException).code, [flag]: true });
  const addr = await bind(l.server, c.listen);
  let optionalPort: number | undefined;
  if (l.optionalServer && c.listenCertOptional) {
    try {
      optionalPort = (await bind(l.optionalServer, c.listenCertOptional)).port;
    } catch (err) {
      l.server.close();
      throw failed('certificate-optional listener', c.listenCertOptional, err, 'optional');
    }
  }
  let adminPort: number | undefined;
  if (admin) {
    try {
      await admin.listen({ host: c.admin.host, port: c.admin.port });
    } catch (err) {
      for (const s of l.all) s.close();
      throw failed('admin listener', c.admin, err, 'admin');
    }
    const a = admin.server.address() as { port: number } | string | null;
    adminPort = a && typeof a !== 'string' ? a.port : undefined;
  }
  return { host: addr.address, port: addr.port, ...(adminPort !== undefined ? { adminPort } : {}), ...(optionalPort !== undefined ? { optionalPort } : {}) };
}
