/**
 * The request path's observability, wired in one place: the access log line and the request
 * event (metrics, alerts) for every answer, and the admin listener's readiness checks and
 * expiry sources. Only this file of observability/ touches Fastify.
 */
import { connect } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { channels, type RejectEvent, type RequestEvent } from '../channels.ts';
import { denialOf, decisionOf } from '../proxy/reply-error.ts';
import { kGrant, kProxyHeaders, kProxyStart, notesOf } from '../proxy/notes.ts';
import type { Caller, Principal } from '../identity/index.ts';
import type { ReadinessCheck } from '../admin/plugin.ts';
import type { HttpErrorCode } from '../errors.ts';

/** Which rejection kind each refusal counts as in `broker_rejections_total`. */
const REJECT_KIND: Partial<Record<HttpErrorCode, string>> = {
  BRK_ERR_RATE_LIMITED: 'rate_limit',
  BRK_ERR_CONCURRENCY_LIMITED: 'concurrency',
  BRK_ERR_FILTER_IP_DENIED: 'ip_filter',
  BRK_ERR_HTTP_BODY_TOO_LARGE: 'body_too_large',
  BRK_ERR_HTTP_HEADERS_TOO_LARGE: 'headers_too_large',
  BRK_ERR_HTTP_URI_TOO_LONG: 'uri_too_long',
  BRK_ERR_HTTP_BAD_PATH: 'bad_path',
  BRK_ERR_HTTP_BAD_REQUEST: 'bad_request',
  BRK_ERR_AUTH_REVOKED: 'revoked',
  BRK_ERR_RATELIMIT_UNAVAILABLE: 'store_unavailable',
};

export interface AccessDeps {
  access: Logger;
  /** Who the request was authenticated as, once its route checked the credentials. */
  callerOf(request: FastifyRequest): Caller | undefined;
  /** The connection's certificate identity (for requests refused before authentication). */
  principalOf(request: FastifyRequest): Principal | undefined;
  bytesIn(request: FastifyRequest): number;
  /** Called for every answer (bans count 401/403 answers). */
  onAnswer?(request: FastifyRequest, status: number): void;
}

export function accessLog(app: FastifyInstance, deps: AccessDeps): void {
  app.addHook('onResponse', (request, reply, done) => {
    const status = reply.statusCode;
    deps.onAnswer?.(request, status);
    const caller = deps.callerOf(request);
    const p = caller ?? deps.principalOf(request);
    const cfg = request.routeOptions.config as { routeName?: string; upstream?: string };
    const denial = denialOf(request);
    const decision = decisionOf(denial);
    const notes = notesOf(request);
    const durationMs = Math.round(reply.elapsedTime * 1000) / 1000;
    const start = notes[kProxyStart];
    const headersAt = notes[kProxyHeaders];
    const upstreamMs = start !== undefined && headersAt !== undefined ? Math.round((headersAt - start) * 1000) / 1000 : undefined;
    const remoteIp = request.raw.socket.remoteAddress;
    deps.access.info({
      reqId: request.id,
      principal: p?.name ?? null,
      roles: p?.roles ?? [],
      auth: caller?.methods ?? (p ? ['mtls'] : []),
      ...(caller?.keyId !== undefined ? { keyId: caller.keyId } : {}),
      method: request.method,
      route: cfg.routeName ?? null,
      path: request.url.split('?', 1)[0],
      upstream: decision === 'deny' ? null : (cfg.upstream ?? null),
      status,
      bytesIn: deps.bytesIn(request),
      bytesOut: Number(reply.getHeader('content-length') ?? 0) || null,
      durationMs,
      ...(upstreamMs !== undefined ? { upstreamMs } : {}),
      decision,
      rateLimitRemaining: reply.getHeader('ratelimit-remaining') ?? null,
      ...(denial ? { code: denial.code, detail: denial.detail } : {}),
    });
    if (channels.request.hasSubscribers) {
      channels.request.publish({
        route: cfg.routeName ?? null,
        role: notes[kGrant] ?? '',
        principal: p?.name ?? null,
        status,
        ...(denial ? { code: denial.code } : {}),
        durationMs,
        ...(upstreamMs !== undefined ? { upstreamMs } : {}),
        remoteIp,
      } satisfies RequestEvent);
    }
    const kind = denial ? REJECT_KIND[denial.code] : undefined;
    if (kind && channels.reject.hasSubscribers) channels.reject.publish({ kind, remoteIp, ...(p ? { principal: p.name } : {}) } satisfies RejectEvent);
    done();
  });
}

/** Whether `host:port` accepts a TCP connection within `ms`. */
export function tcpReachable(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(ms, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export interface ReadinessDeps {
  serverNotAfter: () => Date;
  crlNextUpdate: () => Date | undefined;
  upstreams: () => Array<{ route: string; url: string }>;
  upstreamTimeoutMs: number;
  store: { kind: string; ping?(): Promise<boolean> };
}

/** /readyz: certificates and CRL current, every route's upstream accepts TCP, the shared store answers. */
export function readiness(d: ReadinessDeps): () => Promise<ReadinessCheck[]> {
  return async () => {
    const now = Date.now();
    const checks: ReadinessCheck[] = [{ name: 'config', ok: true }];
    const notAfter = d.serverNotAfter();
    checks.push({ name: 'server certificate', ok: notAfter.getTime() > now, detail: `expires ${notAfter.toISOString()}` });
    const next = d.crlNextUpdate();
    checks.push({ name: 'crl', ok: next === undefined || next.getTime() > now, detail: next ? `next update due ${next.toISOString()}` : 'no nextUpdate' });
    const seen = new Map<string, Promise<boolean>>();
    const results = await Promise.all(
      d.upstreams().map(async (u) => {
        const url = new URL(u.url);
        const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
        const key = `${url.hostname}:${port}`;
        if (!seen.has(key)) seen.set(key, tcpReachable(url.hostname, port, d.upstreamTimeoutMs));
        const ok = await (seen.get(key) as Promise<boolean>);
        return { name: `upstream ${u.route}`, ok, detail: ok ? key : `${key} does not accept connections` } satisfies ReadinessCheck;
      }),
    );
    checks.push(...results);
    if (d.store.kind === 'redis') {
      const ok = (await d.store.ping?.()) ?? false;
      checks.push({ name: 'redis', ok, ...(ok ? {} : { detail: 'the shared store does not answer' }) });
    }
    return checks;
  };
}
