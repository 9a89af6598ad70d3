/**
 * The compile step of a config generation: every duration and size the running broker uses, as
 * numbers, computed once per validated config object and frozen. `serve`, `config check` and
 * reload all go through here; nothing outside config/ parses a duration or a size of the config.
 * (Policies — ACLs, limits, IP sets, routes, header sets — are compiled by their own folders from
 * these numbers, in src/pipeline.ts.)
 */
import type { BrokerConfig } from './schema.ts';
import { parseDuration } from './duration.ts';
import { parseSize } from './size.ts';

/** A token bucket in numbers: `rate` tokens per `perMs`, `burst` at once. */
export interface BucketNumbers {
  readonly rate: number;
  readonly perMs: number;
  readonly burst: number;
}

/** A byte quota in one direction: `bytes` per fixed window of `windowMs`. */
export interface QuotaNumbers {
  readonly bytes: number;
  readonly windowMs: number;
}

/** The forward listener's limits for one identity (or what one role sets). */
export interface ForwardLimitNumbers {
  readonly tunnels: BucketNumbers;
  readonly maxTunnels: number;
  readonly quotaUp: QuotaNumbers | undefined;
  readonly quotaDown: QuotaNumbers | undefined;
}

export interface Settings {
  readonly bodySize: number;
  /** limits.websocket: largest message (either direction), bytes held per slow peer, sockets per identity. */
  readonly websocket: { readonly messageSize: number; readonly buffer: number; readonly perIdentity: number };
  readonly headerSize: number;
  readonly logBufferBytes: number;
  readonly logFlushMs: number;
  readonly handshakeTimeoutMs: number;
  readonly timeouts: { readonly headers: number; readonly request: number; readonly responseWrite: number; readonly keepAlive: number; readonly shutdown: number };
  readonly reloadDebounceMs: number;
  /** Upstream deadline per route name. */
  readonly routeTimeoutMs: ReadonlyMap<string, number>;
  /** How long a replaced generation is kept for the requests still running on it. */
  readonly drainMs: number;
  readonly connectionRate: BucketNumbers;
  readonly banWindowMs: number;
  readonly banMs: number;
  readonly rateLimit: BucketNumbers;
  readonly roleRateLimits: ReadonlyMap<string, BucketNumbers>;
  readonly routeRateLimits: ReadonlyMap<string, BucketNumbers>;
  readonly redisCommandTimeoutMs: number;
  readonly authCacheTtlMs: number;
  readonly jwt: { readonly clockSkewSec: number; readonly cacheMaxAgeMs: number; readonly cooldownMs: number; readonly timeoutMs: number } | undefined;
  readonly adminUpstreamCheckMs: number;
  /** assertion.ttl: lifetime of the identity assertions (jwt identity format). */
  readonly assertionTtlMs: number;
  /** tracing.otlp.timeout, when spans are exported. */
  readonly tracingTimeoutMs: number | undefined;
  /** enrollment: lifetime of renewed certificates, attempts per client address. */
  readonly enrollment: { readonly certTtlMs: number; readonly rate: BucketNumbers };
  /** forward: connect, idle and maximum durations of tunnels and forwarded exchanges, and the per-identity limits, when the forward listener is on. */
  readonly forward:
    | {
        readonly connectTimeoutMs: number;
        readonly idleTimeoutMs: number;
        readonly maxDurationMs: number;
        /** Some rule accepts Proxy-Authorization (apiKey or basic): the listener asks for a client certificate without requiring one. */
        readonly certOptional: boolean;
        readonly limits: ForwardLimitNumbers;
        /** roles.NAME.forward: what each role sets, field by field. */
        readonly roleLimits: ReadonlyMap<string, Partial<ForwardLimitNumbers>>;
      }
    | undefined;
  readonly alerts: {
    readonly dedupWindowMs: number;
    readonly windowMs: number;
    readonly expiryWarningMs: number;
    readonly crlExpiryMs: number;
    readonly webhookTimeoutMs: number;
    /** alerts.clientExpiry: the client-certificate notice thresholds, longest first, without repeats. */
    readonly clientExpiry: ReadonlyArray<{ readonly label: string; readonly ms: number }>;
  };
}

function bucket(b: { rate: number; per: string; burst?: number | undefined }, where: string): BucketNumbers {
  return Object.freeze({ rate: b.rate, perMs: parseDuration(b.per, `${where}.per`), burst: b.burst ?? b.rate });
}

type ForwardLimitsConfig = { tunnels?: { rate: number; per: string; burst?: number | undefined } | undefined; maxTunnels?: number | undefined; quota?: { window: string; up?: string | undefined; down?: string | undefined } | undefined };

/** The fields `l` sets, in numbers. */
function forwardLimits(l: ForwardLimitsConfig, where: string): Partial<ForwardLimitNumbers> {
  const windowMs = l.quota ? parseDuration(l.quota.window, `${where}.quota.window`) : 0;
  const quota = (v: string | undefined, dir: string): QuotaNumbers | undefined => (v === undefined ? undefined : Object.freeze({ bytes: parseSize(v, `${where}.quota.${dir}`), windowMs }));
  const out: { -readonly [K in keyof ForwardLimitNumbers]?: ForwardLimitNumbers[K] } = {};
  if (l.tunnels) out.tunnels = bucket(l.tunnels, `${where}.tunnels`);
  if (l.maxTunnels !== undefined) out.maxTunnels = l.maxTunnels;
  const up = quota(l.quota?.up, 'up');
  const down = quota(l.quota?.down, 'down');
  if (up) out.quotaUp = up;
  if (down) out.quotaDown = down;
  return Object.freeze(out);
}

function compile(c: BrokerConfig): Settings {
  const routeTimeoutMs = new Map(c.routes.map((r) => [r.name, parseDuration(r.timeout, `routes.${r.name}.timeout`)]));
  const timeouts = Object.freeze({
    headers: parseDuration(c.timeouts.headers, 'timeouts.headers'),
    request: parseDuration(c.timeouts.request, 'timeouts.request'),
    responseWrite: parseDuration(c.timeouts.responseWrite, 'timeouts.responseWrite'),
    keepAlive: parseDuration(c.timeouts.keepAlive, 'timeouts.keepAlive'),
    shutdown: parseDuration(c.timeouts.shutdown, 'timeouts.shutdown'),
  });
  const j = c.auth.jwt;
  const bodySize = parseSize(c.limits.bodySize, 'limits.bodySize');
  const ws = c.limits.websocket;
  return Object.freeze({
    bodySize,
    websocket: Object.freeze({
      messageSize: ws.messageSize === undefined ? bodySize : parseSize(ws.messageSize, 'limits.websocket.messageSize'),
      buffer: parseSize(ws.buffer, 'limits.websocket.buffer'),
      perIdentity: ws.perIdentity,
    }),
    headerSize: parseSize(c.limits.headerSize, 'limits.headerSize'),
    logBufferBytes: parseSize(c.log.buffer, 'log.buffer'),
    logFlushMs: parseDuration(c.log.flushInterval, 'log.flushInterval'),
    handshakeTimeoutMs: parseDuration(c.tls.handshakeTimeout, 'tls.handshakeTimeout'),
    timeouts,
    reloadDebounceMs: parseDuration(c.reload.debounce, 'reload.debounce'),
    routeTimeoutMs,
    drainMs: Math.max(...routeTimeoutMs.values(), timeouts.request) + 5_000,
    connectionRate: bucket(c.filters.connectionRate, 'filters.connectionRate'),
    banWindowMs: parseDuration(c.bans.window, 'bans.window'),
    banMs: parseDuration(c.bans.duration, 'bans.duration'),
    rateLimit: bucket(c.rateLimit, 'rateLimit'),
    roleRateLimits: new Map(Object.entries(c.roles).flatMap(([role, r]) => (r.rateLimit ? [[role, bucket(r.rateLimit, `roles.${role}.rateLimit`)] as const] : []))),
    routeRateLimits: new Map(c.routes.flatMap((r) => (r.rateLimit ? [[r.name, bucket(r.rateLimit, `routes.${r.name}.rateLimit`)] as const] : []))),
    redisCommandTimeoutMs: parseDuration(c.redis.commandTimeout, 'redis.commandTimeout'),
    authCacheTtlMs: parseDuration(c.auth.cacheTtl, 'auth.cacheTtl'),
    jwt: j
      ? Object.freeze({
          clockSkewSec: parseDuration(j.clockSkew, 'auth.jwt.clockSkew') / 1000,
          cacheMaxAgeMs: parseDuration(j.cacheMaxAge, 'auth.jwt.cacheMaxAge'),
          cooldownMs: parseDuration(j.cooldown, 'auth.jwt.cooldown'),
          timeoutMs: parseDuration(j.timeout, 'auth.jwt.timeout'),
        })
      : undefined,
    adminUpstreamCheckMs: parseDuration(c.admin.upstreamCheckTimeout, 'admin.upstreamCheckTimeout'),
    assertionTtlMs: parseDuration(c.assertion.ttl, 'assertion.ttl'),
    tracingTimeoutMs: c.tracing.otlp ? parseDuration(c.tracing.otlp.timeout, 'tracing.otlp.timeout') : undefined,
    enrollment: Object.freeze({ certTtlMs: parseDuration(c.enrollment.certTtl, 'enrollment.certTtl'), rate: bucket(c.enrollment.rateLimit, 'enrollment.rateLimit') }),
    forward: c.forward
      ? Object.freeze({
          connectTimeoutMs: parseDuration(c.forward.connectTimeout, 'forward.connectTimeout'),
          idleTimeoutMs: parseDuration(c.forward.idleTimeout, 'forward.idleTimeout'),
          maxDurationMs: parseDuration(c.forward.maxDuration, 'forward.maxDuration'),
          limits: Object.freeze({ quotaUp: undefined, quotaDown: undefined, ...forwardLimits(c.forward.limits, 'forward.limits') }) as ForwardLimitNumbers,
          roleLimits: new Map(Object.entries(c.roles).flatMap(([role, r]) => (r.forward ? [[role, forwardLimits(r.forward, `roles.${role}.forward`)] as const] : []))),
          certOptional: c.forward.rules.some((r) => r.auth.some((m) => m !== 'mtls')),
        })
      : undefined,
    alerts: Object.freeze({
      dedupWindowMs: parseDuration(c.alerts.dedupWindow, 'alerts.dedupWindow'),
      windowMs: parseDuration(c.alerts.window, 'alerts.window'),
      expiryWarningMs: parseDuration(c.alerts.expiryWarning, 'alerts.expiryWarning'),
      crlExpiryMs: parseDuration(c.alerts.crlExpiry, 'alerts.crlExpiry'),
      webhookTimeoutMs: parseDuration(c.alerts.webhookTimeout, 'alerts.webhookTimeout'),
      clientExpiry: Object.freeze(
        [...new Map(c.alerts.clientExpiry.map((d, i) => [parseDuration(d, `alerts.clientExpiry[${i}]`), d])).entries()]
          .sort((a, b) => b[0] - a[0])
          .map(([ms, label]) => Object.freeze({ label, ms })),
      ),
    }),
  });
}

const compiled = new WeakMap<BrokerConfig, Settings>();

/**
 * The numbers of a validated config, compiled on first use and remembered for that config object
 * (a generation): every module that needs one asks here, and only the first asks the parser.
 */
export function settingsOf(c: BrokerConfig): Settings {
  let s = compiled.get(c);
  if (s === undefined) compiled.set(c, (s = compile(c)));
  return s;
}
