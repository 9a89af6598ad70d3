/**
 * The last stage of every request: one access log line and one request event (metrics, alerts),
 * written when the answer is done. Reads the request's notes only.
 */
import type { Logger } from 'pino';
import { channels, type RejectEvent, type RequestEvent } from '../channels.ts';
import { decisionOf, type RequestContext } from '../request/index.ts';
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

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

export interface AccessLogOptions {
  /** The access log; undefined when `log.access` is off (then no line is built at all). */
  access: Logger | undefined;
}

export function accessLogger(o: AccessLogOptions): (ctx: RequestContext, status: number, end: number) => void {
  const access = o.access;
  return (ctx, status, end) => {
    const caller = ctx.caller;
    const p = caller ?? ctx.principal;
    const route = ctx.route;
    const denial = ctx.denial;
    const decision = decisionOf(denial);
    const durationMs = round3(end - ctx.start);
    const upstreamMs = ctx.upstreamAt !== 0 ? round3(ctx.upstreamAt - ctx.proxyStart) : undefined;
    if (access !== undefined) {
      access.info({
        reqId: ctx.id,
        principal: p?.name ?? null,
        roles: p?.roles ?? [],
        auth: caller?.methods ?? (p ? ['mtls'] : []),
        ...(caller?.keyId !== undefined ? { keyId: caller.keyId } : {}),
        method: ctx.req.method,
        route: route?.name ?? null,
        path: ctx.path,
        upstream: decision === 'deny' ? null : (route?.origin ?? null),
        status,
        bytesIn: ctx.bytesIn,
        bytesOut: ctx.bytesOut || null,
        durationMs,
        ...(upstreamMs !== undefined ? { upstreamMs } : {}),
        decision,
        rateLimitRemaining: ctx.limit?.remaining ?? null,
        ...(denial ? { code: denial.code, detail: denial.detail } : {}),
      });
    }
    if (channels.request.hasSubscribers) {
      channels.request.publish({
        route: route?.name ?? null,
        role: ctx.grant,
        principal: p?.name ?? null,
        status,
        ...(denial ? { code: denial.code } : {}),
        durationMs,
        ...(upstreamMs !== undefined ? { upstreamMs } : {}),
        remoteIp: ctx.req.socket?.remoteAddress,
      } satisfies RequestEvent);
    }
    const kind = denial ? REJECT_KIND[denial.code] : undefined;
    if (kind && channels.reject.hasSubscribers) channels.reject.publish({ kind, remoteIp: ctx.req.socket?.remoteAddress, ...(p ? { principal: p.name } : {}) } satisfies RejectEvent);
  };
}
