/**
 * The forward (egress) listener: a second TLS listener with the main one's certificates and
 * client-certificate policy (src/tls/listener.ts), which takes `CONNECT host:port` (a blind tunnel)
 * and absolute-form `http://` requests, and nothing else. The caller is the certificate's identity
 * or, where a rule accepts it, a Proxy-Authorization credential's (proxy-auth.ts). Each destination
 * is judged against the caller's roles (forward.rules, default deny), resolved once by the SSRF
 * guard, and reached at the address the guard checked. One access line per tunnel or request;
 * refusals count toward bans.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Verifiers } from '../auth/index.ts';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/index.ts';
import { ERRORS, httpErrorBody, type HttpErrorCode } from '../errors.ts';
import { connectionId } from '../request/index.ts';
import type { ConnectionGuard } from '../filter/connection-guard.ts';
import type { Loggers } from '../observability/loggers.ts';
import type { SharedStore } from '../ratelimit/store.ts';
import { answerRefused, createTlsServer, isAdmitted, principalOf, refusalOf, type ListenerHooks, type TlsListener } from '../tls/listener.ts';
import type { TlsMaterial } from '../tls/material.ts';
import { resolveDestination, type LookupFn } from './destination.ts';
import { Exchange } from './exchange.ts';
import { ForwardLimiter } from './limits.ts';
import { destinationPool, relayRequest } from './relay.ts';
import { ForwardRules } from './rules.ts';
import { absoluteTarget, connectTarget, type Target } from './target.ts';
import { openTunnel, type TunnelTiming } from './tunnel.ts';
import { forwardCaller, KeyedConnections, proxyAuthorizationOf, proxyChallenge, reportProxyRefusal } from './proxy-auth.ts';

export interface ForwardDeps {
  loggers: Loggers;
  /** Refusals (400/403/407) count toward bans here, as on the main listener. */
  guard: ConnectionGuard | undefined;
  /** Whether a certificate serial (or `key:<id>` credential) is revoked now (CRL, keys.json, or heard from another replica). */
  isRevoked(serial: string): boolean;
  /** The API key / Basic verifiers in force (Proxy-Authorization; they change on reload). */
  verifiers(): Verifiers;
  hooks: ListenerHooks;
  /** Name resolution for the SSRF guard (tests); default node:dns. */
  lookup?: LookupFn;
  /** Where the per-identity limits are kept (shared between replicas when it is Redis). */
  store: SharedStore;
}

export interface ForwardListener {
  readonly server: TlsListener;
  /** The rules and durations of a reloaded config (the listen address needs a restart). */
  update(c: BrokerConfig): void;
  listen(at: { host: string; port: number }): Promise<number>;
  /** Stops accepting and cuts every open tunnel and request. */
  close(): Promise<void>;
}

interface Policy {
  rules: ForwardRules;
  timing: TunnelTiming;
  assertionHeader: string;
  basicRealm: string;
}

function policyOf(c: BrokerConfig): Policy {
  const f = settingsOf(c).forward;
  if (f === undefined) throw new Error('the forward listener needs a forward section');
  return { rules: new ForwardRules(c), timing: f, assertionHeader: c.assertion.header, basicRealm: c.auth.basicRealm };
}

function limitsOf(c: BrokerConfig) {
  const f = settingsOf(c).forward;
  if (f === undefined) throw new Error('the forward listener needs a forward section');
  return { failOpen: c.rateLimit.failOpen, defaults: f.limits, byRole: f.roleLimits, maxDurationMs: f.maxDurationMs };
}

function ignore(): void {}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 407: 'Proxy Authentication Required', 429: 'Too Many Requests', 502: 'Bad Gateway', 503: 'Service Unavailable' };

/** The error answer, in raw bytes (a CONNECT socket or an upgrade has no ServerResponse), with `extra` headers. */
function rawAnswer(code: HttpErrorCode, reqId: string, extra: Readonly<Record<string, string | number>> = {}): string {
  const body = JSON.stringify(httpErrorBody(code, reqId));
  const status = ERRORS[code].status;
  let head = '';
  for (const [name, value] of Object.entries(extra)) head += `${name}: ${value}\r\n`;
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\n${head}Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

type Refusal = { code: HttpErrorCode; reason: string; retryAfterSec?: number };

export function createForwardListener(c: BrokerConfig, material: TlsMaterial, deps: ForwardDeps): ForwardListener {
  let policy = policyOf(c);
  const limiter = new ForwardLimiter(deps.store, limitsOf(c));
  const pool = destinationPool();
  const access = deps.loggers.access;
  const keyed = new KeyedConnections();

  /** The headers a refusal carries beyond the body: Retry-After for a limit, the challenge for a 407. */
  const refusalHeaders = (code: HttpErrorCode, retryAfterSec: number | undefined): Record<string, string | number> => ({
    ...(retryAfterSec !== undefined ? { 'Retry-After': retryAfterSec } : {}),
    ...(ERRORS[code].status === 407 ? { 'Proxy-Authenticate': proxyChallenge(policy.basicRealm) } : {}),
  });

  /** Logs the exchange and counts a 400/403/407 toward bans (a wrong credential like a failed handshake, as on the reverse side). */
  const finish = (x: Exchange) => {
    x.log(access);
    const ip = x.socket.remoteAddress;
    if (deps.guard === undefined || !ip) return;
    if (x.code === 'BRK_ERR_FORWARD_AUTH_INVALID') void deps.guard.failure(ip, 'handshake');
    else if (x.status === 400 || x.status === 403 || x.status === 407) void deps.guard.failure(ip, 'request');
  };

  /**
   * The checks every proxy request passes, in order: a live certificate or a Proxy-Authorization
   * credential (src/forward/proxy-auth.ts), a well-formed target, the caller's rules, the SSRF
   * guard. Resolves with the checked destination or a refusal.
   */
  const check = async (x: Exchange, target: Target, rawHeaders: readonly string[]): Promise<Refusal | { address: string; family: 4 | 6; port: number; target: Extract<Target, { ok: true }> }> => {
    const p = x.principal;
    if (p !== undefined && deps.isRevoked(p.serial)) return { code: 'BRK_ERR_AUTH_REVOKED', reason: 'the client certificate is revoked' };
    if (p !== undefined && p.notAfter.getTime() <= Date.now()) return { code: 'BRK_ERR_AUTH_EXPIRED', reason: 'the client certificate has expired' };
    const who = await forwardCaller(p, proxyAuthorizationOf(rawHeaders), deps, x.socket.remoteAddress);
    if (!who.ok) {
      reportProxyRefusal(deps.loggers.auth, who, { remoteIp: x.socket.remoteAddress, reqId: x.reqId, connId: connectionId(x.socket) });
      return { code: who.code, reason: `${who.method}: ${who.detail}` };
    }
    x.caller = who.caller;
    // the exchange's socket is the client connection (a TLSSocket)
    if (who.caller.keyId !== undefined) keyed.hold(who.caller.keyId, x.socket as unknown as Duplex);
    if (!target.ok) return { code: target.code, reason: target.reason };
    x.host = target.host;
    x.port = target.port;
    const now = policy;
    const decision = now.rules.decide(who.caller.roles, target.host, target.port, who.caller.method);
    if (!decision.ok) return decision;
    // the identity's limits before any lookup: a caller over them costs no DNS query
    const admission = await limiter.admit(who.caller);
    if (!admission.ok) return admission;
    x.meter = admission.meter;
    const d = await resolveDestination(target.host, { allowPrivate: decision.allowPrivate, timeoutMs: now.timing.connectTimeoutMs, ...(deps.lookup ? { lookup: deps.lookup } : {}) });
    if (!d.ok) return { code: d.code, reason: d.reason };
    x.address = d.address;
    return { address: d.address, family: d.family, port: target.port, target };
  };

  const onConnect = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node took its own error listener off the socket with the CONNECT: a reset while the
    // destination is checked must not become an uncaught error (the 'close' that follows is handled).
    socket.on('error', ignore);
    const refused = refusalOf(socket);
    if (refused !== undefined) return answerRefused(socket as Duplex & { writable: boolean }, refused);
    const tls = socket as Duplex & { remoteAddress?: string; remotePort?: number; setTimeout(ms: number): unknown; destroySoon?(): void };
    const x = new Exchange('CONNECT', principalOf(socket), tls);
    const refuse = (code: HttpErrorCode, reason: string, retryAfterSec?: number) => {
      x.refused(ERRORS[code].status, code, reason);
      if (socket.writable) socket.end(rawAnswer(code, x.reqId, refusalHeaders(code, retryAfterSec)));
      tls.destroySoon?.();
      finish(x);
    };
    void check(x, connectTarget(req.url), req.rawHeaders).then(
      (r) => {
        if ('code' in r) return refuse(r.code, r.reason, r.retryAfterSec);
        if (socket.destroyed) {
          x.outcome = 'failed';
          x.end = 'client closed before the destination was checked';
          return finish(x);
        }
        openTunnel(x, tls, head, r.address, r.family, r.port, policy.timing, { failed: (reason) => refuse('BRK_ERR_FORWARD_UPSTREAM', reason), done: () => finish(x) });
      },
      (err: Error) => refuse('BRK_ERR_FORWARD_UPSTREAM', `checking the destination: ${err.message}`),
    );
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const x = new Exchange(req.method ?? '', principalOf(req.socket), req.socket);
    res.once('close', () => finish(x));
    const refuse = (code: HttpErrorCode, reason: string, retryAfterSec?: number) => {
      x.refused(ERRORS[code].status, code, reason);
      if (res.headersSent || res.destroyed) return void res.destroy();
      const body = JSON.stringify(httpErrorBody(code, x.reqId));
      // the request body is not read: the connection cannot be reused
      for (const [name, value] of Object.entries(refusalHeaders(code, retryAfterSec))) res.setHeader(name, value);
      res.writeHead(ERRORS[code].status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
      res.end(body);
    };
    void check(x, absoluteTarget(req.url), req.rawHeaders).then(
      (r) => {
        if ('code' in r) return refuse(r.code, r.reason, r.retryAfterSec);
        if (res.destroyed) return;
        relayRequest(x, req, res, r.address, r.family, r.port, r.target.authority, r.target.path, policy.assertionHeader, policy.timing, pool, { failed: (reason) => refuse('BRK_ERR_FORWARD_UPSTREAM', reason) });
      },
      (err: Error) => refuse('BRK_ERR_FORWARD_UPSTREAM', `checking the destination: ${err.message}`),
    );
  };

  // Fixed at start like forward.listen: a rule listing apiKey or basic lets a connection without a certificate in (a presented one must still verify).
  const server = createTlsServer(c, material, deps.loggers.auth, onRequest, deps.hooks, { certOptional: settingsOf(c).forward?.certOptional === true });
  server.on('connect', onConnect);
  // a revoked API key or Basic credential (`key:<id>`) cuts its connections like a revoked certificate's serial
  const closeOfCert = server.closeConnectionsOf;
  server.closeConnectionsOf = (id) => closeOfCert(id) + keyed.closeOf(id);
  // WebSockets and other upgrades are not forwarded.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', ignore);
    const refused = refusalOf(socket);
    if (refused !== undefined) return answerRefused(socket as Duplex & { writable: boolean }, refused);
    const x = new Exchange(req.method ?? '', principalOf(socket), socket as Duplex & { remoteAddress?: string });
    x.refused(400, 'BRK_ERR_FORWARD_NOT_PROXY', 'upgrade requests are not forwarded (use CONNECT)');
    socket.end(rawAnswer('BRK_ERR_FORWARD_NOT_PROXY', x.reqId));
    finish(x);
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (err.code?.startsWith('HPE_') && socket.writable && isAdmitted(socket)) return void socket.end(rawAnswer('BRK_ERR_HTTP_BAD_REQUEST', '-'));
    socket.destroy();
  });

  return {
    server,
    update(next) {
      if (!next.forward) return;
      policy = policyOf(next);
      limiter.update(limitsOf(next));
    },
    listen(at) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(at.port, at.host, () => {
          server.off('error', reject);
          const a = server.address();
          if (!a || typeof a === 'string') reject(new Error('forward listener has no TCP address'));
          else resolve(a.port);
        });
      });
    },
    close() {
      limiter.close();
      pool.destroy();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeClientConnections();
        server.closeAllConnections();
      });
    },
  };
}
