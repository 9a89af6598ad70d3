/**
 * Routes → upstreams. Each route is its own encapsulated scope holding @fastify/http-proxy for its
 * prefix, a body counter (Fastify's bodyLimit does not cover streamed bodies), the route's ACL as a
 * preHandler, and the header policy. The proxy moves bytes; the decisions come from acl/ and
 * identity/, made before it runs.
 */
import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import type { Logger } from 'pino';
import type { RouteConfig } from '../config/index.ts';
import { parseDuration } from '../config/index.ts';
import { compilePolicy, decide } from '../acl/index.ts';
import { BodyLimiter } from '../filter/body-limit.ts';
import { downstreamHeaders, upstreamHeaders } from './headers.ts';
import { replyError } from './reply-error.ts';
import type { Gate } from '../ratelimit/plugin.ts';
import { kCaller, kGrant, kProxyHeaders, kProxyStart, notesOf } from './notes.ts';
import type { HttpErrorCode } from '../errors.ts';
import type { Caller } from '../identity/index.ts';
import type { AuthGate } from '../auth/gate.ts';
import type { IdentityHeaders } from './headers.ts';

export const kBody = Symbol('broker.body');

export interface ProxyDeps {
  bodyLimit: number;
  errorLog: Logger;
  /** The route's credentials → the caller, before anything else is decided. */
  auth: AuthGate;
  /** Lower-case header carrying API keys: never forwarded unless the route passes credentials. */
  apiKeyHeader: string;
  /** A refusal when one of the caller's roles does not admit its address. */
  roleIps(roles: readonly string[], ip: string): string | undefined;
  /** Rate and concurrency limits, after the ACL. */
  gate: Gate;
}

/** Header values per caller, so that keep-alive requests of one caller reuse one checked set. */
const identityHeaders = new WeakMap<Caller, IdentityHeaders>();

function identityOf(caller: Caller): IdentityHeaders {
  let id = identityHeaders.get(caller);
  if (id === undefined) {
    const c = caller.cert;
    id = Object.freeze({
      name: caller.name,
      roles: caller.roles,
      methods: caller.methods,
      ...(caller.keyId !== undefined ? { keyId: caller.keyId } : {}),
      ...(c ? { serial: c.serial, fingerprint: c.fingerprint, subject: c.subject, ...(c.uri !== undefined ? { uri: c.uri } : {}) } : {}),
    });
    identityHeaders.set(caller, id);
  }
  return id;
}

function callerOf(request: FastifyRequest): Caller {
  const c = notesOf(request)[kCaller];
  if (!c) throw new Error('request without an authenticated caller reached the proxy');
  return c;
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

function forwardInfo(request: FastifyRequest) {
  return { clientIp: request.raw.socket.remoteAddress ?? '', proto: 'https' as const, host: request.headers.host ?? '' };
}

function isTimeout(err: unknown): boolean {
  for (let e = err as { code?: string; statusCode?: number; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.statusCode === 504 || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'ETIMEDOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT') return true;
  }
  return false;
}

function upstreamTls(route: RouteConfig) {
  const t = route.upstreamTls;
  if (!t) return undefined;
  return {
    ...(t.ca ? { ca: readFileSync(t.ca, 'utf8') } : {}),
    ...(t.cert ? { cert: readFileSync(t.cert, 'utf8') } : {}),
    ...(t.key ? { key: readFileSync(t.key, 'utf8') } : {}),
    ...(t.servername ? { servername: t.servername } : {}),
    rejectUnauthorized: true,
  };
}

export async function registerRoute(app: FastifyInstance, route: RouteConfig, deps: ProxyDeps): Promise<void> {
  const policy = compilePolicy(route);
  const upstream = new URL(route.upstream);
  const basePath = upstream.pathname === '/' ? '' : upstream.pathname;
  const prefix = route.path === '/' ? '' : route.path;
  const rewritePrefix = route.stripPath ? basePath : basePath + prefix;
  const timeout = parseDuration(route.timeout, `routes.${route.name}.timeout`);
  const tls = upstreamTls(route);

  // Credentials the broker checked stay here unless the route says to pass them; the API key header
  // never travels on (it is the broker's secret), whatever the route's methods.
  const strip = route.passCredentials ? undefined : new Set([deps.apiKeyHeader, ...(route.auth.includes('jwt') || route.auth.includes('basic') ? ['authorization'] : [])]);
  const headersFor = (request: FastifyRequest): Record<string, string> => upstreamHeaders(request.raw.rawHeaders, identityOf(callerOf(request)), forwardInfo(request), strip);

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (request, payload, done) => {
      const limiter = new BodyLimiter(deps.bodyLimit);
      (request as unknown as Record<symbol, BodyLimiter>)[kBody] = limiter;
      pipeline(payload, limiter, () => {});
      done(null, limiter);
    });

    // A body refused before the proxy reads it sits in the counter; Node will not drain a body that
    // is piped somewhere, so the next request on the connection would wait behind it until a
    // timeout. Let it flow into the void, still counted: past bodyLimit the connection is dropped.
    const refuse = (request: FastifyRequest, reply: FastifyReply, code: HttpErrorCode, detail: string) => {
      const limiter = (request as unknown as Record<symbol, BodyLimiter | undefined>)[kBody];
      if (limiter && !request.raw.complete) {
        const socket = request.raw.socket;
        limiter.once('error', () => socket.destroy());
        limiter.resume();
      }
      replyError(reply, code, detail);
    };

    const acl = (request: FastifyRequest, reply: FastifyReply, done: () => void) => deps.auth(request, reply, route, (caller) => authorize(request, reply, caller, done), refuse);

    const authorize = (request: FastifyRequest, reply: FastifyReply, caller: Caller, done: () => void) => {
      notesOf(request)[kCaller] = caller;
      if (caller.cert === undefined || caller.roles !== caller.cert.roles) {
        // Certificate callers had their addresses checked on arrival; other callers' roles are known only now.
        const ipRefusal = deps.roleIps(caller.roles, request.raw.socket.remoteAddress ?? '');
        if (ipRefusal) return void refuse(request, reply, 'BRK_ERR_FILTER_IP_DENIED', ipRefusal);
      }
      const verdict = decide(policy, caller.roles, request.method);
      if (!verdict.allow) return void refuse(request, reply, 'BRK_ERR_ACL_DENIED', `${verdict.reason} not allowed on route ${route.name}`);
      // `raw.upgrade` is only set while some route has installed an 'upgrade' listener; without one,
      // Node hands the request over as a plain one, so look at the header too.
      if (!route.websocket && ((request.raw as { upgrade?: boolean }).upgrade || request.headers.upgrade !== undefined)) {
        return void refuse(request, reply, 'BRK_ERR_HTTP_BAD_REQUEST', `upgrade on route ${route.name} without websocket`);
      }
      notesOf(request)[kGrant] = verdict.role;
      deps.gate(request, reply, caller, route.name, () => {
        notesOf(request)[kProxyStart] = performance.now();
        done();
      }, refuse);
    };

    await scope.register(httpProxy as unknown as FastifyPluginAsync<Record<string, unknown>>, {
      upstream: upstream.origin,
      prefix,
      rewritePrefix,
      // Every method reaches the route, so that the ACL refuses an unlisted one (403, logged as such)
      // instead of the router answering 404 as if the path did not exist.
      httpMethods: ALL_METHODS,
      preHandler: acl,
      // Given a preValidation hook, @fastify/http-proxy adds no body parsers of its own: ours counts.
      preValidation: (_req: FastifyRequest, _reply: FastifyReply, done: () => void) => done(),
      websocket: route.websocket,
      config: { routeName: route.name, upstream: upstream.origin },
      disableRequestLogging: true,
      internalRewriteLocationHeader: false,
      undici: {
        connections: 128,
        pipelining: 1,
        keepAliveTimeout: 4_000,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        connectTimeout: Math.min(timeout, 10_000),
        // Always set: @fastify/reply-from defaults undici's `tls.rejectUnauthorized` to false, so an
        // https upstream without upstreamTls went unverified. `connect` overrides `tls` in undici.
        connect: tls ?? { rejectUnauthorized: true },
      },
      replyOptions: {
        rewriteHeaders: (headers: Record<string, unknown>, request: FastifyRequest) => {
          notesOf(request)[kProxyHeaders] = performance.now();
          return downstreamHeaders(headers);
        },
        rewriteRequestHeaders: (request: FastifyRequest, headers: Record<string, unknown>) => {
          const out = headersFor(request);
          if (typeof headers.host === 'string') out.host = headers.host;
          return out;
        },
        onError: (reply: FastifyReply, { error }: { error: Error }) => {
          const limiter = (reply.request as unknown as Record<symbol, BodyLimiter | undefined>)[kBody];
          if (limiter?.exceeded) return void replyError(reply.header('connection', 'close'), 'BRK_ERR_HTTP_BODY_TOO_LARGE', `streamed body over ${deps.bodyLimit} bytes`);
          const timedOut = isTimeout(error);
          deps.errorLog.error({ event: 'upstream', route: route.name, upstream: upstream.origin, reqId: reply.request.id, err: { message: error.message, code: (error as { code?: string }).code, cause: String((error as { cause?: unknown }).cause ?? '') } }, timedOut ? 'upstream timed out' : 'upstream failed');
          replyError(reply, timedOut ? 'BRK_ERR_UPSTREAM_TIMEOUT' : 'BRK_ERR_UPSTREAM_UNAVAILABLE', `${upstream.origin}: ${error.message}`);
        },
      },
      wsClientOptions: {
        rewriteRequestHeaders: (_headers: Record<string, string>, request: FastifyRequest) => {
          const out = headersFor(request);
          for (const k of Object.keys(out)) if (k.startsWith('sec-websocket-') || k === 'content-length') delete out[k];
          return out;
        },
        ...(tls ?? {}),
      },
    });
  });
}
