/**
 * The request path of one config generation, in the order DESIGN.md gives it. Everything a
 * request needs is compiled here once per generation (routes, ACLs, limits, address lists,
 * credential checks, header sets, upstream pools); the stages below then run per request and
 * take their decisions from pure functions of their folders, answering a refusal through one
 * adapter (`refuse`). Before a request arrives, the listener (src/tls/listener.ts) has already
 * run the per-connection stages: the connection guard at accept, the TLS handshake against the
 * CA chain and CRLs, and the identity of the certificate, once per connection.
 *
 * Per request (its context, made first, continues the partner's traceparent or starts a trace,
 * and takes its request id from it: src/request/trace.ts):
 *   1. head       request target length, one canonical path, header count, Host, framing
 *   2. identity   the connection's identity, its roles' address lists, revocation
 *   3. route      the longest route prefix of the canonical path
 *   4. credentials API key / bearer token / Basic where the route asks → one Caller
 *   5. access     roles' address lists (non-certificate callers), ACL (role × method), upgrades
 *   6. limits     rate buckets and the in-flight slot
 *   7. headers    inbound identity and trace headers stripped; the identity in the route's formats
 *                 (headers, XFCC, RFC 9440, signed JWT), traceparent and x-request-id added
 *   8. proxy      bytes to the upstream and back (WebSockets through the relay)
 *   9. log        access line, request event (metrics, alerts), span (tracing on), bans count refusals
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { BrokerConfig, RouteConfig } from './config/index.ts';
import { settingsOf } from './config/index.ts';
import { BrokerError, isBrokerError, type HttpErrorCode } from './errors.ts';
import { RequestContext, connectionId, matchRoute, replyError, routeTable, upstreamTraceparent, type RequestTracer, type Routed } from './request/index.ts';
import type { Caller, Principal } from './identity/index.ts';
import { checkHead, compileRoleIps, normalizePath, overrideMethods, type HeadLimits } from './filter/index.ts';
import type { ConnectionGuard } from './filter/connection-guard.ts';
import { compilePolicy, decide, type RoutePolicy } from './acl/index.ts';
import { compileLimits, type SharedStore } from './ratelimit/index.ts';
import { limitGate } from './ratelimit/gate.ts';
import { anonymousChallenge, authGate, COUNTED_REFUSALS } from './auth/gate.ts';
import { REVOKED_KEY_PREFIX, type Verifiers } from './auth/index.ts';
import { isAdmitted, principalOf, verifiedChainDer } from './tls/listener.ts';
import type { LiveConnections } from './proxy/live.ts';
import { FORMAT_HEADERS, FORMAT_XFCC, headerObject, rfc9440Values, upstreamHeaderList, type ForwardInfo, type IdentityHeaders } from './proxy/headers.ts';
import type { AssertionSigner } from './proxy/assertion.ts';
import { Upstream } from './proxy/upstream.ts';
import { webSocketRelay, type WebSocketRelay } from './proxy/websocket.ts';
import { accessLogger } from './observability/access-log.ts';
import type { Loggers } from './observability/loggers.ts';
import type { Ablations } from './ablation.ts';

/** What a generation shares with the long-lived broker. */
export interface PipelineDeps {
  loggers: Loggers;
  store: SharedStore;
  guard: ConnectionGuard;
  /** Whether a certificate serial (or `key:<id>`) is revoked now: CRL, and revocations heard from other replicas. */
  isRevoked(serial: string): boolean;
  /** API keys, Basic credentials and bearer tokens, as this generation's config and store say. */
  verifiers: Verifiers;
  /** Stages switched off to measure what they cost (benchmark only; see src/ablation.ts). */
  ablations?: Ablations;
  /** WebSockets and keyed keep-alive connections, by the credentials that admitted them (long-lived). */
  live: LiveConnections;
  /** Signs the identity assertions of routes whose identity includes jwt (from the store's current assertion key). */
  assertion?: AssertionSigner | undefined;
}

/** One config generation's request path. */
export interface Generation {
  readonly config: BrokerConfig;
  handle(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Each route's upstream pool: exchanges under way and the pool's size (metrics, on scrape). */
  pools(): Array<{ route: string; inUse: number; max: number }>;
  /** Closes the upstream pools once the requests running on this generation are done. */
  close(): Promise<void>;
}

interface Route extends Routed {
  readonly name: string;
  readonly origin: string;
  readonly auth: RouteConfig['auth'];
  readonly policy: RoutePolicy;
  readonly websocket: boolean;
  /** Credential headers the broker checked and does not pass on (lower case, "-" form). */
  readonly strip: ReadonlySet<string> | undefined;
  /** The upstream URL's own path, put before the forwarded path (the whole path, or what follows the prefix with stripPath). */
  readonly base: string;
  readonly stripPrefix: boolean;
  /** Method-override headers travel on, and each method they name is judged by the ACL. */
  readonly methodOverride: boolean;
  /** routes[].identity: headers and xfcc as FORMAT_* bits; rfc9440 fields; the jwt assertion's audience (undefined: none). */
  readonly formats: number;
  readonly rfc9440: boolean;
  readonly audience: string | undefined;
  readonly upstream: Upstream;
}

const kCtx = Symbol('broker.request');
const ALL_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Header values per caller, so that keep-alive requests of one caller reuse one checked set. */
const identities = new WeakMap<Caller, IdentityHeaders>();

function identityOf(caller: Caller): IdentityHeaders {
  let id = identities.get(caller);
  if (id === undefined) {
    const c = caller.cert;
    id = Object.freeze({
      name: caller.name,
      roles: caller.roles,
      methods: caller.methods,
      ...(caller.keyId !== undefined ? { keyId: caller.keyId } : {}),
      ...(c ? { serial: c.serial, fingerprint: c.fingerprint, subject: c.subject, ...(c.uri !== undefined ? { uri: c.uri } : {}) } : {}),
    });
    identities.set(caller, id);
  }
  return id;
}

/** RFC 9440 fields per certificate (the principal is shared by every connection with that certificate). */
const certFieldCache = new WeakMap<Principal, readonly string[]>();

function certFields(p: Principal, socket: unknown): readonly string[] | undefined {
  let f = certFieldCache.get(p);
  if (f === undefined) {
    const ders = verifiedChainDer(socket, p.fingerprint);
    if (ders === undefined) return undefined;
    certFieldCache.set(p, (f = rfc9440Values(ders.leaf, ders.chain)));
  }
  return f;
}

/** Forwarding facts per connection (and Host), so that their checked header values are reused. */
const forwardInfos = new WeakMap<object, ForwardInfo>();

function forwardInfo(req: IncomingMessage): ForwardInfo {
  const host = req.headers.host ?? '';
  let f = forwardInfos.get(req.socket);
  if (f === undefined || f.host !== host) forwardInfos.set(req.socket, (f = Object.freeze({ clientIp: req.socket.remoteAddress ?? '', proto: 'https', host })));
  return f;
}

/** Whether the request still has body bytes on the wire. */
function unreadBody(req: IncomingMessage): boolean {
  return !req.complete && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined);
}

export async function compilePipeline(c: BrokerConfig, deps: PipelineDeps): Promise<Generation> {
  const n = settingsOf(c);
  const off = deps.ablations ?? {};
  const { loggers, guard } = deps;
  const head: HeadLimits = { headerCount: c.limits.headerCount, bodySize: n.bodySize, skipHost: off.hostCheck };
  const target = { foldCase: c.http.foldCase, maxLength: c.limits.urlLength };
  const roleIps = compileRoleIps(c.roles);
  const limits = off.limits ? undefined : limitGate(compileLimits(c), deps.store);
  // The one challenge every caller without a certificate gets when a credential is missing, on any
  // path: a route-specific one would tell anonymous callers which paths are routes, and how guarded.
  const anonymous = anonymousChallenge(c.routes, c.auth.basicRealm);
  const credentials = authGate({
    verifiers: deps.verifiers,
    apiKeyHeader: c.auth.apiKeyHeader,
    basicRealm: c.auth.basicRealm,
    anonymousChallenge: anonymous,
    authLog: loggers.auth,
    onFailure: (ip) => void guard.failure(ip, 'handshake'),
    isKeyRevoked: (keyId) => deps.isRevoked(`${REVOKED_KEY_PREFIX}${keyId}`),
  });
  const ws = n.websocket;
  /** A bearer token is honoured until exp + auth.jwt.clockSkew, as its verifier does. */
  const skewMs = (n.jwt?.clockSkewSec ?? 0) * 1000;
  const log = accessLogger({ access: off.accessLog || !loggers.access.isLevelEnabled('info') ? undefined : loggers.access });
  const assertionHeader = c.assertion.header;
  const signer = deps.assertion;
  if (signer === undefined && c.routes.some((r) => r.identity.includes('jwt'))) {
    throw new BrokerError('BRK_ERR_ASSERTION_KEY_MISSING', `route ${c.routes.find((r) => r.identity.includes('jwt'))?.name} has identity jwt, and no assertion signing key was loaded`);
  }
  const tracer: (RequestTracer & { close(): Promise<void> }) | undefined = c.tracing.otlp === undefined ? undefined : await (await import('./observability/tracing.ts')).otlpTracer(c, {
          // at most once a minute (the tracer's own limit): a collector that is down must not flood the error log
          onExportError: (err, dropped) => loggers.error.warn({ event: 'tracing', dropped, err: { message: err.message } }, 'span export failed: spans dropped'),
        });
  /** What each request's context traces with: null, no trace context at all (benchmark ablation only). */
  const traceWith = off.traceContext ? null : tracer;
  /** enrollment.enabled: /.well-known/broker/{ca,enroll,renew} (src/enroll/ is loaded only then). */
  const lifecycle = c.enrollment.enabled ? await (await import('./enroll/index.ts')).lifecycleEndpoints(c, { store: deps.store, log: loggers.auth, audit: loggers.audit, errorLog: loggers.error }) : undefined;

  const routes: Route[] = c.routes.map((r) => {
    const upstream = new Upstream({
      url: r.upstream,
      timeoutMs: n.routeTimeoutMs.get(r.name) as number,
      tls: r.upstreamTls,
      bodyLimit: n.bodySize,
      connections: c.limits.upstreamConnections,
      // 0: not counted (benchmark ablation only, BROKER_ABLATE=upstreamShare).
      share: off.upstreamShare ? 0 : Math.floor(c.limits.upstreamShare * c.limits.upstreamConnections),
      responseWriteMs: n.timeouts.responseWrite,
      keepServerHeader: r.keepServerHeader,
      requestIdHeader: !off.traceContext,
      noteAddress: log.wantsUpstreamAddress,
      onWriteTimeout: (ctx) => loggers.error.warn({ event: 'client', route: r.name, reqId: ctx.id, principal: ctx.caller?.name, code: 'BRK_ERR_HTTP_RESPONSE_WRITE_TIMEOUT', remoteIp: ctx.req.socket?.remoteAddress }, 'client stopped reading its answer: dropped, upstream exchange aborted'),
      onFailure: (ctx, err, timedOut) =>
        loggers.error.error({ event: 'upstream', route: r.name, upstream: upstream.origin, reqId: ctx.id, err: { message: err.message, code: (err as { code?: string }).code, cause: String((err as { cause?: unknown }).cause ?? '') } }, timedOut ? 'upstream timed out' : 'upstream failed'),
    });
    const prefix = r.path === '/' ? '' : r.path;
    const credentialHeaders = r.auth.includes('jwt') || r.auth.includes('basic') ? ['authorization'] : [];
    return {
      name: r.name,
      prefix,
      origin: upstream.origin,
      auth: r.auth,
      policy: compilePolicy(r),
      websocket: r.websocket,
      // The API key header never travels on (it is the broker's secret) unless the route passes
      // credentials; a client's copy of the assertion header never does.
      strip: new Set(r.passCredentials ? [assertionHeader] : [c.auth.apiKeyHeader, ...credentialHeaders, assertionHeader]),
      base: upstream.basePath,
      stripPrefix: r.stripPath,
      methodOverride: r.methodOverride,
      formats: (r.identity.includes('headers') ? FORMAT_HEADERS : 0) | (r.identity.includes('xfcc') ? FORMAT_XFCC : 0),
      rfc9440: r.identity.includes('rfc9440'),
      audience: r.identity.includes('jwt') ? (r.audience ?? r.name) : undefined,
      upstream,
    };
  });
  const table = routeTable(routes);
  const wsRoutes = routes.filter((r) => r.websocket);
  const relay: WebSocketRelay | undefined = wsRoutes.length
    ? await webSocketRelay(
        wsRoutes.map((r) => ({ prefix: r.prefix, rewritePrefix: r.base + (r.stripPrefix ? '' : r.prefix), origin: r.origin, tls: r.upstream.tls })),
        (req) => {
          const h = ((req as unknown as Record<symbol, RequestContext>)[kCtx] as RequestContext).upstreamHeaders as string[] | Record<string, string>;
          return Array.isArray(h) ? headerObject(h) : h;
        },
        deps.live,
        ws,
      )
    : undefined;

  // ------------------------------------------------------------------ the stages, in order

  /** 1. The request head: target length, one canonical path (the one judged and forwarded), header count, Host, framing. */
  function requestHead(ctx: RequestContext): boolean {
    const req = ctx.req;
    // Node's maxRequestsPerSocket only says "Connection: close" on the last request it allows and
    // then keeps the connection; saying it ourselves makes Node close it after this answer.
    if ((ctx.res as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached) ctx.setHeader('connection', 'close');
    const url = req.url ?? '';
    ctx.path = '/';
    if (url.length > target.maxLength) return refuse(ctx, 'BRK_ERR_HTTP_URI_TOO_LONG', `${url.length} characters`);
    const p = normalizePath(url, target);
    if (!p.ok) return refuse(ctx, 'BRK_ERR_HTTP_BAD_PATH', p.reason);
    ctx.path = p.path;
    ctx.query = p.query;
    const h = checkHead(req.rawHeaders, head, req.httpVersionMinor === 0);
    if (!h.ok) return refuse(ctx, h.code, h.detail, true);
    return true;
  }

  /** 2. The connection's identity (decided at the handshake), its roles' address lists, revocation. */
  function connectionIdentity(ctx: RequestContext): boolean {
    const socket = ctx.req.socket;
    const p = ctx.principal;
    if (p === undefined) {
      // Only the certificate-optional listener admits connections without one: the route decides.
      return isAdmitted(socket) || refuse(ctx, 'BRK_ERR_AUTH_NO_IDENTITY', 'no verified principal on this connection', true);
    }
    const ipRefusal = roleIps(p.roles, socket.remoteAddress ?? '');
    if (ipRefusal) return refuse(ctx, 'BRK_ERR_FILTER_IP_DENIED', ipRefusal);
    if (deps.isRevoked(p.serial)) {
      loggers.auth.warn({ event: 'request', outcome: 'refused', reason: 'revoked', principal: p.name, serial: p.serial, remoteIp: socket.remoteAddress, reqId: ctx.id, connId: connectionId(socket) }, 'revoked certificate on an open connection');
      return refuse(ctx, 'BRK_ERR_AUTH_REVOKED', `serial ${p.serial} is revoked`, true);
    }
    // The connection outlived its certificate (the listener closes it at notAfter; this covers the gap).
    if (p.notAfter.getTime() <= Date.now()) {
      loggers.auth.warn({ event: 'request', outcome: 'refused', reason: 'expired', principal: p.name, serial: p.serial, remoteIp: socket.remoteAddress, reqId: ctx.id, connId: connectionId(socket) }, 'expired certificate on an open connection');
      return refuse(ctx, 'BRK_ERR_AUTH_EXPIRED', `serial ${p.serial} expired at ${p.notAfter.toISOString()}`, true);
    }
    return true;
  }

  /**
   * 3. The route: longest prefix of the canonical path. Without a certificate, nobody learns which
   * paths exist: no route answers what a route answers a caller without credentials.
   */
  function route(ctx: RequestContext): Route | undefined {
    const r = matchRoute(table, ctx.path);
    if (r === undefined || !ALL_METHODS.has(ctx.req.method ?? '')) {
      if (ctx.principal === undefined) {
        if (anonymous !== undefined) ctx.setHeader('www-authenticate', anonymous);
        refuse(ctx, 'BRK_ERR_AUTH_REQUIRED', `no route for ${ctx.path} (and no certificate)`);
      } else refuse(ctx, 'BRK_ERR_HTTP_NOT_FOUND', `no route for ${ctx.path}`);
      return undefined;
    }
    ctx.route = r;
    return r;
  }

  // 4. credentials: auth/gate.ts (certificate-only routes: the connection's caller, no work).

  /** 5. Access: address lists of roles known only now, the ACL, and upgrades only where the route relays WebSockets. */
  function access(ctx: RequestContext, caller: Caller): void {
    ctx.caller = caller;
    const r = ctx.route as Route;
    if (caller.cert === undefined || caller.roles !== caller.cert.roles) {
      // Certificate callers had their addresses checked in stage 2; other callers' roles are known only now.
      const ipRefusal = roleIps(caller.roles, ctx.req.socket.remoteAddress ?? '');
      if (ipRefusal) return void refuse(ctx, 'BRK_ERR_FILTER_IP_DENIED', ipRefusal);
    }
    const verdict = decide(r.policy, caller.roles, ctx.req.method as string);
    if (!verdict.allow) return void refuse(ctx, 'BRK_ERR_ACL_DENIED', `${verdict.reason} not allowed on route ${r.name}`);
    if (r.methodOverride) {
      const denied = overrideDenied(ctx, r, caller);
      if (denied !== undefined) return void refuse(ctx, 'BRK_ERR_ACL_DENIED', denied);
    }
    if (!r.websocket && (ctx.upgrade || ctx.req.headers.upgrade !== undefined)) return void refuse(ctx, 'BRK_ERR_HTTP_BAD_REQUEST', `upgrade on route ${r.name} without websocket`);
    ctx.grant = verdict.role;
    // A keep-alive connection admitted with an API key or Basic credential closes when it is revoked.
    if (caller.keyId !== undefined) deps.live.noteKey(ctx.req.socket, caller.keyId);
    // 6. limits
    if (limits === undefined) return proxy(ctx);
    limits(ctx, caller, r.name, proxy, refuse);
  }

  /** On a route that forwards method overrides: why a method one of them names is not allowed to `caller`. */
  function overrideDenied(ctx: RequestContext, r: Route, caller: Caller): string | undefined {
    const named = overrideMethods(ctx.req.rawHeaders);
    if (named === undefined) return undefined;
    for (const m of named) {
      if (!ALL_METHODS.has(m)) return `method override ${JSON.stringify(m)} is not a method on route ${r.name}`;
      const v = decide(r.policy, caller.roles, m);
      if (!v.allow) return `method override ${m}: ${v.reason} not allowed on route ${r.name}`;
    }
    return undefined;
  }

  /**
   * 7. The headers the upstream receives: the client's minus anything that could speak for the
   * broker, plus the verified identity in the route's formats, the trace context and the request id.
   */
  function headerList(ctx: RequestContext): string[] | Record<string, string> {
    const req = ctx.req;
    if (off.identityHeaders) return req.headers as Record<string, string>;
    const r = ctx.route as Route;
    const caller = ctx.caller as Caller;
    const id = identityOf(caller);
    const list = upstreamHeaderList(req.rawHeaders, id, forwardInfo(req), r.strip, r.methodOverride, r.formats);
    if (r.rfc9440 && caller.cert !== undefined) {
      const fields = certFields(caller.cert, req.socket);
      if (fields === undefined) throw new BrokerError('BRK_ERR_PROXY_IDENTITY_VALUE', 'the connection\'s certificate could not be read for Client-Cert');
      for (const x of fields) list.push(x);
    }
    if (r.audience !== undefined) list.push(assertionHeader, (signer as AssertionSigner).token(id, r.audience));
    if (off.traceContext) return list;
    if (tracer !== undefined) tracer.upstream(ctx, performance.now());
    list.push('traceparent', upstreamTraceparent(ctx), 'x-request-id', ctx.id);
    if (ctx.traceState !== undefined) list.push('tracestate', ctx.traceState);
    return list;
  }

  /** 8. The proxy: the canonical path under the upstream's base, the decided headers, bytes both ways. */
  function proxy(ctx: RequestContext): void {
    const r = ctx.route as Route;
    let headers: string[] | Record<string, string>;
    try {
      headers = headerList(ctx);
    } catch (err) {
      // An identity value that cannot travel as a header (a comma or space in a name or role from
      // a certificate or an identities rule) is a refusal of this request, not a broker failure.
      if (isBrokerError(err, 'BRK_ERR_PROXY_IDENTITY_VALUE')) return void refuse(ctx, 'BRK_ERR_PROXY_IDENTITY_VALUE', err.message);
      return internalError(ctx, err);
    }
    if (ctx.upgrade) {
      ctx.upstreamHeaders = headers;
      return relayUpgrade(ctx, r);
    }
    const rest = r.stripPrefix ? ctx.path.slice(r.prefix.length) : ctx.path;
    const path = r.base + rest;
    const who = (ctx.caller as Caller).name;
    if (r.upstream.forward(ctx, who, (path === '' ? '/' : path) + ctx.query, headers)) return;
    // The identity has its share of this route's upstream connections under way: refused at once
    // rather than queued behind itself, so that other identities always find connections.
    ctx.setHeader('retry-after', 1);
    refuse(ctx, 'BRK_ERR_RATE_UPSTREAM_SHARE', `${who} has ${r.upstream.share} of the ${r.upstream.connections} upstream connections of route ${r.name} in use`);
  }

  /**
   * 8b. A WebSocket: within the identity's cap, filed under the credentials that admitted it (a
   * revocation closes it), with a deadline at the first of certificate notAfter and token exp + skew,
   * and a rate-limit token per client message; then handed to the relay.
   */
  function relayUpgrade(ctx: RequestContext, r: Route): void {
    const caller = ctx.caller as Caller;
    const live = deps.live;
    if (live.count(caller.name) >= ws.perIdentity) {
      ctx.setHeader('retry-after', 1);
      loggers.auth.warn({ event: 'websocket', outcome: 'refused', reason: 'cap', principal: caller.name, route: r.name, reqId: ctx.id, open: live.count(caller.name) }, 'WebSocket refused: too many open for this identity');
      return void refuse(ctx, 'BRK_ERR_RATE_WEBSOCKETS', `${ws.perIdentity} WebSockets open for ${caller.name} (limits.websocket.perIdentity)`);
    }
    const ids: string[] = [];
    let at = Infinity;
    if (caller.cert !== undefined) {
      ids.push(caller.cert.serial);
      at = caller.cert.notAfter.getTime();
    } else if (ctx.principal !== undefined) {
      // a certificate on the connection that the route did not ask for still vouched for the name
      ids.push(ctx.principal.serial);
      at = ctx.principal.notAfter.getTime();
    }
    if (caller.keyId !== undefined) ids.push(`${REVOKED_KEY_PREFIX}${caller.keyId}`);
    if (caller.tokenExpiresAt !== undefined) at = Math.min(at, caller.tokenExpiresAt + skewMs);
    ctx.req.url = ctx.path + ctx.query;
    ctx.proxyStart = performance.now();
    const socket = ctx.res.socket as Duplex | null;
    // Gone while its credentials were checked: nothing to relay (the answer's 'close' logs it as 499).
    if (socket === null || socket.destroyed) return;
    ctx.res.detachSocket(socket as never);
    socket.once('close', () => finish(ctx, 101));
    live.open({ name: caller.name, route: r.name, reqId: ctx.id, ids, at, take: limits?.message(caller, r.name), socket });
    (relay as WebSocketRelay).relay(ctx.req, socket, ctx.upgradeHead as Buffer);
  }

  /** 9. The answer is done (or the connection gone): log it, count it, free the in-flight slot. */
  function finish(ctx: RequestContext, status: number): void {
    ctx.release?.();
    if (status === 401 || status === 403) {
      // Refused credentials were counted as failed authentications already.
      if (!COUNTED_REFUSALS.has(ctx.denial?.code ?? '')) void guard.failure(ctx.req.socket?.remoteAddress ?? '', 'request');
    }
    const end = performance.now();
    if (tracer !== undefined) tracer.end(ctx, status, end);
    log(ctx, status, end);
  }

  // ------------------------------------------------------------------ the refusal adapter

  /**
   * Answers a refusal. A body the request still has on the wire is let flow into the void, counted:
   * past the body limit the connection is dropped (Node would otherwise discard it without limit).
   */
  function refuse(ctx: RequestContext, code: HttpErrorCode, detail: string, close = false): false {
    if (close) ctx.setHeader('connection', 'close');
    const req = ctx.req;
    if (!ctx.upgrade && unreadBody(req)) {
      let seen = 0;
      req.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > n.bodySize) req.socket.destroy();
      });
    }
    replyError(ctx, code, detail);
    return false;
  }

  function onClose(this: ServerResponse): void {
    const ctx = RequestContext.of(this) as RequestContext;
    ctx.exchange?.clientClosed();
    if (ctx.res.headersSent) return finish(ctx, ctx.res.statusCode);
    // Closed before any answer: the client left, or Node's parser refused the rest of the request
    // (a malformed body, a deadline) and answered on the socket itself. Logged as nginx does, 499.
    ctx.denial ??= { code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: 'connection closed before the answer (client gone, malformed body or deadline)' };
    finish(ctx, 499);
  }

  function run(ctx: RequestContext): void {
    ctx.principal = principalOf(ctx.req.socket);
    if (!requestHead(ctx) || !connectionIdentity(ctx)) return;
    if (lifecycle !== undefined && ctx.path.startsWith('/.well-known/broker/')) return lifecycle.handle(ctx, refuse);
    const r = route(ctx);
    if (r === undefined) return;
    credentials(ctx, r, access, refuse);
  }

  /** Starts a request on the pipeline; an unexpected exception in a stage answers 500 and is logged. */
  function start(ctx: RequestContext): void {
    ctx.attach();
    ctx.res.once('close', onClose);
    try {
      run(ctx);
    } catch (err) {
      internalError(ctx, err);
    }
  }

  function internalError(ctx: RequestContext, err: unknown): void {
    loggers.error.error({ event: 'internal', reqId: ctx.id, err }, 'request failed');
    replyError(ctx, 'BRK_ERR_HTTP_INTERNAL', (err as Error).message);
  }

  return {
    config: c,
    handle(req, res) {
      start(new RequestContext(req, res, performance.now(), traceWith));
    },
    upgrade(req, socket, headBytes) {
      // Refusals are answered in HTTP on the raw socket, which is closed after the answer.
      const res = new ServerResponse(req);
      res.assignSocket(socket as never);
      res.once('finish', () => socket.destroy());
      const ctx = new RequestContext(req, res, performance.now(), traceWith);
      ctx.upgrade = true;
      ctx.upgradeHead = headBytes;
      (req as unknown as Record<symbol, RequestContext>)[kCtx] = ctx;
      start(ctx);
    },
    pools() {
      return routes.map((r) => ({ route: r.name, inUse: r.upstream.inUse, max: r.upstream.connections }));
    },
    async close() {
      await Promise.all([...routes.map((r) => r.upstream.close().catch(() => {})), relay?.close()]);
      await tracer?.close();
    },
  };
}
