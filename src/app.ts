/**
 * One configuration generation: the Fastify app that answers requests for one validated config
 * (filters, routes with their ACL, limits and proxy, access log). A reload builds a new
 * generation off to the side and the listener switches to it; requests already running finish on
 * the generation they started with. The app never listens: the long-lived TLS listener in
 * server.ts hands it requests.
 */
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { BrokerConfig } from './config/index.ts';
import { parseSize } from './config/index.ts';
import { checkHead, normalizePath } from './filter/index.ts';
import { isAdmitted, principalOf } from './tls/listener.ts';
import { registerRoute, kBody } from './proxy/plugin.ts';
import { denialOf, replyError } from './proxy/reply-error.ts';
import { accessLog } from './observability/plugin.ts';
import type { Loggers } from './observability/loggers.ts';
import type { HttpErrorCode } from './errors.ts';
import type { Principal } from './identity/index.ts';
import type { BodyLimiter } from './filter/body-limit.ts';
import type { ConnectionGuard } from './filter/connection-guard.ts';
import { compileIpList, plainIp, type IpList } from './filter/ip.ts';
import { compileLimits, type SharedStore } from './ratelimit/index.ts';
import { limitGate } from './ratelimit/plugin.ts';
import { authGate, COUNTED_REFUSALS } from './auth/gate.ts';
import { REVOKED_KEY_PREFIX } from './auth/index.ts';
import type { Verifiers } from './auth/authenticate.ts';
import { kCaller, notesOf } from './proxy/notes.ts';

const kReject = Symbol('broker.reject');

interface RejectMark {
  code: HttpErrorCode;
  detail: string;
}

/** What a generation shares with the long-lived broker. */
export interface AppDeps {
  loggers: Loggers;
  store: SharedStore;
  guard: ConnectionGuard;
  /** Whether a certificate serial is revoked now (CRL, and revocations heard from other replicas). */
  isRevoked(serial: string): boolean;
  /** API keys, Basic credentials and bearer tokens, as this generation's config and store say. */
  verifiers: Verifiers;
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

export async function buildApp(c: BrokerConfig, deps: AppDeps): Promise<FastifyInstance> {
  const { loggers, guard } = deps;
  const limits = { headerCount: c.limits.headerCount, bodySize: parseSize(c.limits.bodySize, 'limits.bodySize') };
  const urlLength = c.limits.urlLength;
  const foldCase = c.http.foldCase;
  const roleIps = compileRoleIps(c.roles);
  const gate = limitGate(compileLimits(c), deps.store);

  const app: FastifyInstance = Fastify({
    // The app never listens; this server only carries the app's own 'upgrade' listeners (WebSocket
    // routes), to which the real listener forwards upgrades.
    serverFactory: () => createHttpServer(),
    loggerInstance: loggers.root as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: the broker's lines carry reqId themselves, and a child of the
    // (redacting) error logger cost a redaction pass over its bindings on every request.
    childLoggerFactory: (logger) => logger,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: false,
    bodyLimit: limits.bodySize,
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
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

  const auth = authGate({
    verifiers: deps.verifiers,
    apiKeyHeader: c.auth.apiKeyHeader,
    basicRealm: c.auth.basicRealm,
    authLog: loggers.auth,
    certOf: (request) => principalOf(request.raw.socket),
    onFailure: (ip) => void guard.failure(ip, 'handshake'),
    isKeyRevoked: (keyId) => deps.isRevoked(`${REVOKED_KEY_PREFIX}${keyId}`),
  });

  app.addHook('onRequest', (request, reply, done) => {
    const raw = request.raw;
    // Node's maxRequestsPerSocket only says "Connection: close" on the last request it allows and
    // then keeps the connection; saying it ourselves makes Node close it after this answer.
    if ((reply.raw as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached) reply.header('connection', 'close');
    const rejected = (raw as unknown as Record<symbol, RejectMark | undefined>)[kReject];
    if (rejected) return void replyError(reply, rejected.code, rejected.detail);
    const head = checkHead(raw.rawHeaders, limits);
    if (!head.ok) return void replyError(reply.header('connection', 'close'), head.code, head.detail);
    const p = principalOf(raw.socket);
    if (!p) {
      // Only the certificate-optional listener admits connections without one: the route decides.
      if (isAdmitted(raw.socket)) return done();
      return void replyError(reply.header('connection', 'close'), 'BRK_ERR_AUTH_NO_IDENTITY', 'no verified principal on this connection');
    }
    const ipRefusal = roleIps(p.roles, raw.socket.remoteAddress ?? '');
    if (ipRefusal) return void replyError(reply, 'BRK_ERR_FILTER_IP_DENIED', ipRefusal);
    if (deps.isRevoked(p.serial)) {
      loggers.auth.warn({ event: 'request', outcome: 'refused', reason: 'revoked', principal: p.name, serial: p.serial, remoteIp: raw.socket.remoteAddress }, 'revoked certificate on an open connection');
      return void replyError(reply.header('connection', 'close'), 'BRK_ERR_AUTH_REVOKED', `serial ${p.serial} is revoked`);
    }
    done();
  });

  accessLog(app, {
    access: loggers.access,
    callerOf: (request) => notesOf(request)[kCaller],
    principalOf: (request) => principalOf(request.raw.socket),
    bytesIn: (request) => (request as unknown as Record<symbol, BodyLimiter | undefined>)[kBody]?.bytes ?? Number(request.headers['content-length'] ?? 0),
    onAnswer: (request, status) => {
      // Refused credentials were counted as failed authentications already.
      if ((status === 401 || status === 403) && !COUNTED_REFUSALS.has(denialOf(request)?.code ?? '')) void guard.failure(request.raw.socket.remoteAddress ?? '', 'request');
    },
  });

  app.setNotFoundHandler((request, reply) => {
    // Without a certificate, nobody learns which paths exist.
    if (!principalOf(request.raw.socket)) return replyError(reply, 'BRK_ERR_AUTH_REQUIRED', `no route for ${request.url.split('?', 1)[0]} (and no certificate)`);
    replyError(reply, 'BRK_ERR_HTTP_NOT_FOUND', `no route for ${request.url.split('?', 1)[0]}`);
  });

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'BRK_ERR_HTTP_BODY_TOO_LARGE') return replyError(reply.header('connection', 'close'), 'BRK_ERR_HTTP_BODY_TOO_LARGE', err.message);
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return replyError(reply, 'BRK_ERR_HTTP_BAD_REQUEST', err.message);
    loggers.error.error({ event: 'internal', reqId: request.id, err }, 'request failed');
    return replyError(reply, 'BRK_ERR_HTTP_INTERNAL', err.message);
  });

  for (const route of c.routes) await registerRoute(app, route, { bodyLimit: limits.bodySize, errorLog: loggers.error, auth, apiKeyHeader: c.auth.apiKeyHeader, roleIps, gate });
  await app.ready();
  return app;
}
