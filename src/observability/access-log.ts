/**
 * The last stage of every request: one access log line and one request event (metrics, alerts),
 * written when the answer is done. Reads the request's notes only.
 *
 * The line is formatted here, straight into a string (raw-line.ts: the line pino would write, from
 * the logger's own level, time and bindings), rather than handed to pino as an object: building and
 * serialising an object per request was the largest single cost of the log in the profile. The
 * fragments that do not change per request (the caller's name, roles and credentials, the route and
 * its upstream) are serialised once per caller and per route.
 */
import type { Logger } from 'pino';
import { rawLine } from '../raw-line.ts';
import { channels, type RejectEvent, type RequestEvent } from '../channels.ts';
import { connectionId, decisionOf, type RequestContext, type RouteNote } from '../request/index.ts';
import type { Caller, Principal } from '../identity/index.ts';
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
  BRK_ERR_RATE_UPSTREAM_SHARE: 'upstream_share',
  BRK_ERR_HTTP_REQUEST_TIMEOUT: 'request_timeout',
  BRK_ERR_HTTP_RESPONSE_WRITE_TIMEOUT: 'response_write_timeout',
};

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;
/** `"principal":…,"roles":…,"auth":…[,"keyId":…]`, once per caller (or per certificate for refusals before the route). */
const whoCache = new WeakMap<Caller | Principal, string>();
const ANONYMOUS = '"principal":null,"roles":[],"auth":[]';

function whoOf(caller: Caller | undefined, p: Principal | undefined): string {
  const key = caller ?? p;
  if (key === undefined) return ANONYMOUS;
  let s = whoCache.get(key);
  if (s === undefined) {
    s = `"principal":${JSON.stringify(key.name)},"roles":${JSON.stringify(key.roles)},"auth":${JSON.stringify(caller?.methods ?? ['mtls'])}`;
    if (caller?.keyId !== undefined) s += `,"keyId":${JSON.stringify(caller.keyId)}`;
    whoCache.set(key, s);
  }
  return s;
}

/** `"route":…` and `"upstream":…`, once per route. */
const routeCache = new WeakMap<RouteNote, { route: string; upstream: string }>();

const NO_ROUTE = Object.freeze({ route: 'null', upstream: 'null' });

function routeOf(r: RouteNote | undefined): { route: string; upstream: string } {
  if (r === undefined) return NO_ROUTE;
  let s = routeCache.get(r);
  if (s === undefined) routeCache.set(r, (s = { route: JSON.stringify(r.name), upstream: JSON.stringify(r.origin) }));
  return s;
}

const ACCESS_FIELDS = [
  'reqId', 'connId', 'clientIp', 'clientPort', 'tlsVersion', 'resumed', 'serial', 'fingerprint',
  'principal', 'roles', 'auth', 'keyId', 'method', 'route', 'path', 'userAgent', 'upstream', 'upstreamAddr',
  'status', 'bytesIn', 'bytesOut', 'durationMs', 'upstreamMs', 'decision', 'rateLimitRemaining', 'code', 'detail',
];

/** `"connId":…,"clientIp":…,"clientPort":…,"tlsVersion":…,"resumed":…,"serial":…,"fingerprint":…`, once per connection. */
const kConnectionFields = Symbol('broker.accessConnection');

interface ConnectionSocket {
  [kConnectionFields]?: string;
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  getProtocol?(): string | null;
  isSessionReused?(): boolean;
}

function connectionFields(ctx: RequestContext): string {
  const socket = ctx.req.socket as unknown as ConnectionSocket | null;
  if (socket === null) return '"connId":null';
  let s = socket[kConnectionFields];
  if (s === undefined) {
    const p = ctx.principal;
    s = `"connId":"${connectionId(socket)}","clientIp":${JSON.stringify(socket.remoteAddress ?? null)},"clientPort":${socket.remotePort ?? null},"tlsVersion":${JSON.stringify(socket.getProtocol?.() ?? null)},"resumed":${socket.isSessionReused?.() ?? false},"serial":${p ? `"${p.serial}"` : null},"fingerprint":${p ? `"${p.fingerprint}"` : null}`;
    socket[kConnectionFields] = s;
  }
  return s;
}

/** Methods Node's parser accepts are tokens: only these need no escaping (anything else is escaped). */
const TOKEN = /^[A-Z]{1,16}$/;

export interface AccessLogOptions {
  /** The access log; undefined when `log.access` is off (then no line is built at all). */
  access: Logger | undefined;
}

export interface AccessLog {
  (ctx: RequestContext, status: number, end: number): void;
  /** Whether lines are written, and so the upstream address of each exchange is worth noting. */
  readonly wantsUpstreamAddress: boolean;
}

export function accessLogger(o: AccessLogOptions): AccessLog {
  const access = o.access;
  // pino formats the line only for a logger set up in a way the raw line does not reproduce
  const raw = access === undefined ? undefined : rawLine(access, ACCESS_FIELDS);
  const log = (ctx: RequestContext, status: number, end: number): void => {
    const caller = ctx.caller;
    const p = caller ?? ctx.principal;
    const route = ctx.route;
    const denial = ctx.denial;
    const decision = decisionOf(denial);
    const durationMs = round3(end - ctx.start);
    const upstreamMs = ctx.upstreamAt !== 0 ? round3(ctx.upstreamAt - ctx.proxyStart) : undefined;
    if (access !== undefined) {
      const r = routeOf(route);
      const method = ctx.req.method ?? '';
      const ua = ctx.req.headers['user-agent'];
      let line = `"reqId":"${ctx.id}",${connectionFields(ctx)},${whoOf(caller, ctx.principal)},"method":${TOKEN.test(method) ? `"${method}"` : JSON.stringify(method)},"route":${r.route},"path":${JSON.stringify(ctx.path)},"userAgent":${ua === undefined ? null : JSON.stringify(ua)},"upstream":${decision === 'deny' ? 'null' : r.upstream},"upstreamAddr":${ctx.upstreamAddr === undefined ? null : `"${ctx.upstreamAddr}"`},"status":${status},"bytesIn":${ctx.bytesIn},"bytesOut":${ctx.bytesOut || null},"durationMs":${durationMs}`;
      if (upstreamMs !== undefined) line += `,"upstreamMs":${upstreamMs}`;
      line += `,"decision":"${decision}","rateLimitRemaining":${ctx.limit?.remaining ?? null}`;
      if (denial) line += `,"code":"${denial.code}"${denial.detail !== undefined ? `,"detail":${JSON.stringify(denial.detail)}` : ''}`;
      if (raw !== undefined) raw.write(`${raw.head()},${line}${raw.end()}`);
      else access.info(JSON.parse(`{${line}}`) as object);
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
        reqId: ctx.id,
        // the principal itself (it has subject, serial, fingerprint): nothing copied per request
        ...(ctx.principal ? { certificate: ctx.principal } : {}),
      } satisfies RequestEvent);
    }
    const kind = denial ? REJECT_KIND[denial.code] : undefined;
    if (kind && channels.reject.hasSubscribers) channels.reject.publish({ kind, remoteIp: ctx.req.socket?.remoteAddress, ...(p ? { principal: p.name } : {}) } satisfies RejectEvent);
  };
  return Object.assign(log, { wantsUpstreamAddress: access !== undefined });
}
