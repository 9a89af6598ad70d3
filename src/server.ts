/**
 * The composition root: builds the broker from a validated config. It wires the TLS listener,
 * the request filters, the routes and the logs together, and never listens by itself.
 *
 * Request path: TLS handshake (chain + CRLs, identity decided once per connection) → rewriteUrl
 * (one canonical path, or a marked rejection) → onRequest (head checks, identity present, not
 * revoked) → route (Fastify's router on the canonical path) → ACL preHandler → proxy → access log.
 */
import type { Server } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { BrokerConfig } from './config/index.ts';
import { parseDuration, parseSize } from './config/index.ts';
import { checkHead, normalizePath } from './filter/index.ts';
import { createTlsServer, principalOf } from './tls/listener.ts';
import { loadTlsMaterial, type TlsMaterial } from './tls/material.ts';
import { registerRoute, kBody } from './proxy/plugin.ts';
import { replyError } from './proxy/reply-error.ts';
import { accessLog, readiness } from './observability/plugin.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { createAlerts, type AlertEngine } from './observability/alerts.ts';
import { buildAdmin } from './admin/plugin.ts';
import { expirySource } from './observability/expiry.ts';
import { createLoggers, type Loggers } from './observability/loggers.ts';
import { ERRORS, httpErrorBody, type HttpErrorCode } from './errors.ts';
import type { Principal } from './identity/index.ts';
import type { BodyLimiter } from './filter/body-limit.ts';
import { ConnectionGuard } from './filter/connection-guard.ts';
import { compileIpList, plainIp, type IpList } from './filter/ip.ts';
import { compileLimits, createStore, type SharedStore } from './ratelimit/index.ts';
import { limitGate } from './ratelimit/plugin.ts';

const kReject = Symbol('broker.reject');

interface RejectMark {
  code: HttpErrorCode;
  detail: string;
}

export interface Broker {
  app: FastifyInstance;
  store: SharedStore;
  guard: ConnectionGuard;
  server: Server;
  material: TlsMaterial;
  loggers: Loggers;
  metrics: Metrics;
  alerts: AlertEngine;
  admin: FastifyInstance | undefined;
  /** Starts listening (and the admin listener); resolves with the bound addresses. */
  listen(): Promise<{ host: string; port: number; adminPort?: number }>;
  close(): Promise<void>;
}

/** Per-role address lists: a refusal reason when one of the identity's roles does not admit `ip`. */
function compileRoleIps(roles: BrokerConfig['roles']): (held: readonly string[], ip: string) => string | undefined {
  const lists = new Map<string, { allow: IpList; deny: IpList }>();
  for (const [role, r] of Object.entries(roles)) {
    if (r.allowIps?.length || r.denyIps?.length) lists.set(role, { allow: compileIpList(r.allowIps ?? []), deny: compileIpList(r.denyIps ?? []) });
  }
  if (lists.size === 0) return () => undefined;
  return (held, ip) => {
    const address = plainIp(ip);
    for (const role of held) {
      const l = lists.get(role);
      if (!l) continue;
      if (l.deny.size && l.deny.has(address)) return `${address} denied for role ${role}`;
      if (l.allow.size && !l.allow.has(address)) return `${address} not allowed for role ${role}`;
    }
    return undefined;
  };
}

export interface BuildOptions {
  loggers?: Loggers;
  /** The shared store, when the caller provides it (a cluster worker talks to its primary's). */
  store?: SharedStore;
  /** Metrics shared by several brokers in one process (tests); by default each makes its own. */
  metrics?: Metrics;
}

function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  // Only HTTP errors (parser, request/headers deadline) on an established connection get an answer.
  // The https server routes TLS errors here too (ERR_TLS_HANDSHAKE_TIMEOUT before the handshake, a
  // TLS alert after it): there is no working channel to answer on, a write would stay queued and
  // `end()` would keep the connection open for ever, so the handshake deadline would never close it.
  const httpError = err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
  if (!httpError || !socket.writable || !principalOf(socket)) return void socket.destroy();
  const code: HttpErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'BRK_ERR_HTTP_HEADERS_TOO_LARGE' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'BRK_ERR_HTTP_BAD_REQUEST' : 'BRK_ERR_HTTP_BAD_REQUEST';
  const body = JSON.stringify(httpErrorBody(code, '-'));
  const status = ERRORS[code].status;
  socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

export async function buildBroker(c: BrokerConfig, o: BuildOptions = {}): Promise<Broker> {
  const loggers = o.loggers ?? createLoggers(c.log);
  const material = loadTlsMaterial(c);
  const limits = { headerCount: c.limits.headerCount, bodySize: parseSize(c.limits.bodySize, 'limits.bodySize') };
  const urlLength = c.limits.urlLength;
  const foldCase = c.http.foldCase;
  const state = { revoked: material.revoked };
  const store = o.store ?? createStore(c, loggers.error);
  const guard = new ConnectionGuard(c, store, loggers.auth, loggers.audit);
  await guard.start();
  const roleIps = compileRoleIps(c.roles);
  const gate = limitGate(compileLimits(c), store);
  let tlsServer: Server | undefined;

  const app: FastifyInstance = Fastify({
    serverFactory: (handler) => {
      tlsServer = createTlsServer(c, material, loggers.auth, handler, { onRefused: (ip) => void guard.failure(ip, 'handshake') });
      guard.attach(tlsServer);
      tlsServer.maxRequestsPerSocket = c.filters.maxRequestsPerConnection;
      return tlsServer;
    },
    loggerInstance: loggers.root as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: false,
    bodyLimit: limits.bodySize,
    return503OnClosing: true,
    keepAliveTimeout: parseDuration(c.timeouts.keepAlive, 'timeouts.keepAlive'),
    requestTimeout: parseDuration(c.timeouts.request, 'timeouts.request'),
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    clientErrorHandler,
    rewriteUrl(req: IncomingMessage): string {
      const url = req.url ?? '';
      const mark = (code: HttpErrorCode, detail: string) => {
        (req as unknown as Record<symbol, RejectMark>)[kReject] = { code, detail };
        return '/';
      };
      if (url.length > urlLength) return mark('BRK_ERR_HTTP_URI_TOO_LONG', `${url.length} characters`);
      const r = normalizePath(url, { foldCase, maxLength: urlLength });
      return r.ok ? r.path + r.query : mark('BRK_ERR_HTTP_BAD_PATH', r.reason);
    },
  });

  const principal = (request: FastifyRequest): Principal => {
    const p = principalOf(request.raw.socket);
    if (!p) throw new Error('request without a verified principal reached a route');
    return p;
  };

  app.addHook('onRequest', (request, reply, done) => {
    // On a connection's last allowed request (maxRequestsPerSocket) Node sends "Connection: close"
    // but keeps the connection open until keepAlive, answering anything more with a bare 503.
    // Setting the header ourselves makes Node close the connection once this answer is out.
    if ((reply.raw as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached) reply.header('connection', 'close');
    const raw = request.raw;
    const rejected = (raw as unknown as Record<symbol, RejectMark | undefined>)[kReject];
    if (rejected) return void replyError(reply, rejected.code, rejected.detail);
    const head = checkHead(raw.rawHeaders, limits);
    if (!head.ok) return void replyError(reply.header('connection', 'close'), head.code, head.detail);
    const p = principalOf(raw.socket);
    if (!p) return void replyError(reply.header('connection', 'close'), 'BRK_ERR_AUTH_NO_IDENTITY', 'no verified principal on this connection');
    const ipRefusal = roleIps(p.roles, raw.socket.remoteAddress ?? '');
    if (ipRefusal) return void replyError(reply, 'BRK_ERR_FILTER_IP_DENIED', ipRefusal);
    if (state.revoked.has(p.serial)) {
      loggers.auth.warn({ event: 'request', outcome: 'refused', reason: 'revoked', principal: p.name, serial: p.serial, remoteIp: raw.socket.remoteAddress }, 'revoked certificate on an open connection');
      return void replyError(reply.header('connection', 'close'), 'BRK_ERR_AUTH_REVOKED', `serial ${p.serial} is revoked`);
    }
    done();
  });

  accessLog(app, {
    access: loggers.access,
    principalOf: (request) => principalOf(request.raw.socket),
    bytesIn: (request) => (request as unknown as Record<symbol, BodyLimiter | undefined>)[kBody]?.bytes ?? Number(request.headers['content-length'] ?? 0),
    onAnswer: (request, status) => {
      if (status === 401 || status === 403) void guard.failure(request.raw.socket.remoteAddress ?? '', 'request');
    },
  });

  app.setNotFoundHandler((request, reply) => {
    replyError(reply, 'BRK_ERR_HTTP_NOT_FOUND', `no route for ${request.url.split('?', 1)[0]}`);
  });

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'BRK_ERR_HTTP_BODY_TOO_LARGE') return replyError(reply.header('connection', 'close'), 'BRK_ERR_HTTP_BODY_TOO_LARGE', err.message);
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return replyError(reply, 'BRK_ERR_HTTP_BAD_REQUEST', err.message);
    loggers.error.error({ event: 'internal', reqId: request.id, err }, 'request failed');
    return replyError(reply, 'BRK_ERR_HTTP_INTERNAL', err.message);
  });

  for (const route of c.routes) await registerRoute(app, route, { bodyLimit: limits.bodySize, errorLog: loggers.error, principalOf: principal, gate });
  await app.ready();
  const server = tlsServer as unknown as Server;

  const metrics = o.metrics ?? createMetrics();
  const expiry = expirySource(c, () => material);
  metrics.setExpirySource(expiry);
  metrics.setBansActive(() => guard.activeBans);
  const alerts = createAlerts(
    {
      webhook: c.alerts.webhook,
      dedupWindowMs: parseDuration(c.alerts.dedupWindow, 'alerts.dedupWindow'),
      windowMs: parseDuration(c.alerts.window, 'alerts.window'),
      failedHandshakesPerIp: c.alerts.failedHandshakesPerIp,
      failedHandshakesTotal: c.alerts.failedHandshakesTotal,
      rateLimitHits: c.alerts.rateLimitHits,
      expiryWarningMs: parseDuration(c.alerts.expiryWarning, 'alerts.expiryWarning'),
      webhookTimeoutMs: parseDuration(c.alerts.webhookTimeout, 'alerts.webhookTimeout'),
    },
    loggers.error,
  );
  alerts.checkExpiry(expiry());
  const expiryTimer = setInterval(() => alerts.checkExpiry(expiry()), 3_600_000).unref();
  const admin = c.admin.enabled
    ? await buildAdmin({
        registry: metrics.registry,
        token: c.admin.tokenFile ? readFileSync(c.admin.tokenFile, 'utf8').split(/\r?\n/, 1)[0] : undefined,
        readiness: readiness({
          serverNotAfter: () => material.server.notAfter,
          crlNextUpdate: () => material.crlNextUpdate,
          upstreams: c.routes.map((r) => ({ route: r.name, url: r.upstream })),
          upstreamTimeoutMs: parseDuration(c.admin.upstreamCheckTimeout, 'admin.upstreamCheckTimeout'),
          store,
        }),
      })
    : undefined;

  return {
    app,
    store,
    guard,
    metrics,
    alerts,
    admin,
    server,
    material,
    loggers,
    async listen() {
      await app.listen({ host: c.listen.host, port: c.listen.port, listenTextResolver: (address) => `TLS listener on ${address.replace(/^http:/, 'https:')}` });
      const addr = server.address();
      if (!addr || typeof addr === 'string') throw new Error('listener has no TCP address');
      let adminPort: number | undefined;
      if (admin) {
        await admin.listen({ host: c.admin.host, port: c.admin.port });
        const a = admin.server.address();
        adminPort = a && typeof a !== 'string' ? a.port : undefined;
      }
      return { host: addr.address, port: addr.port, ...(adminPort !== undefined ? { adminPort } : {}) };
    },
    async close() {
      guard.close();
      clearInterval(expiryTimer);
      alerts.close();
      if (!o.metrics) metrics.close();
      await Promise.all([app.close(), admin?.close()]);
      await store.close();
      loggers.flush();
    },
  };
}
