/**
 * Alerts: rules over the diagnostics channels that raise an error-level log line and, when a
 * webhook is configured, a JSON POST to it. Alerts are de-duplicated by key within a window (a
 * storm makes one alert), and the webhook has a bounded queue and retries in the background: a
 * slow or dead webhook never slows a request.
 */
import type { Logger } from 'pino';
import { listen, type CredentialEvent, type ForwardEvent, type HandshakeEvent, type ReloadEvent, type RequestEvent } from '../channels.ts';

export interface AlertRules {
  webhook?: string | undefined;
  dedupWindowMs: number;
  failedHandshakesPerIp: number;
  failedHandshakesTotal: number;
  windowMs: number;
  rateLimitHits: number;
  expiryWarningMs: number;
  /** alerts.crlExpiry: a loaded CRL this close to its nextUpdate raises crl_expiring. */
  crlExpiryMs?: number;
  webhookTimeoutMs: number;
  /** alerts.clientExpiry, longest first: each a `client_certificate_expiring` notice per identity. */
  clientExpiry?: ReadonlyArray<{ label: string; ms: number }>;
}

/** What a client expiry notice needs of a certificate (src/observability/expiry.ts reads them from the inventory). */
export interface ExpiringClient {
  identity: string;
  serial: string;
  notAfter: Date;
  contact?: string | undefined;
}

export interface Alert {
  alert: string;
  severity: 'critical' | 'warning';
  key: string;
  message: string;
  details: Record<string, unknown>;
  time: string;
}

/** Counts per key within a fixed window; bounded by a sweep of finished windows. */
class WindowCounter {
  readonly #counts = new Map<string, { n: number; ends: number }>();
  readonly windowMs: number;
  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }
  add(key: string, now: number): number {
    const c = this.#counts.get(key);
    if (!c || c.ends <= now) {
      if (this.#counts.size > 100_000) this.sweep(now);
      this.#counts.set(key, { n: 1, ends: now + this.windowMs });
      return 1;
    }
    return ++c.n;
  }
  sweep(now: number): void {
    for (const [k, c] of this.#counts) if (c.ends <= now) this.#counts.delete(k);
  }
}

export interface AlertEngine {
  raise(a: Omit<Alert, 'time'>): boolean;
  /** Certificates expiring within the warning window raise one alert each (CRLs are left to checkCrl). */
  checkExpiry(items: Array<{ kind: string; name: string; notAfter: Date }>): void;
  /**
   * The loaded CRL bundle's earliest nextUpdate within `alerts.crlExpiry` (or past) raises
   * `crl_expiring`: once per nextUpdate and dedup window, so a republished CRL is a new alert.
   * Returns whether it raised one.
   */
  checkCrl(nextUpdate: Date | undefined, file: string | undefined): boolean;
  /**
   * Client certificates within an `alerts.clientExpiry` threshold of their end raise one
   * `client_certificate_expiring` alert per (serial, threshold), once in this process's life (not
   * subject to dedupWindow, not repeated by reloads or the hourly check). Returns how many it raised.
   */
  checkClientExpiry(certs: readonly ExpiringClient[]): number;
  /** Webhook deliveries still queued or in flight (for tests and shutdown). */
  pending(): number;
  readonly sent: number;
  readonly dropped: number;
  close(): void;
}

const QUEUE_MAX = 100;
const RETRIES = 3;

export function createAlerts(rules: AlertRules, log: Logger): AlertEngine {
  const lastRaised = new Map<string, number>();
  /** `serial/threshold` of every client expiry notice raised: a notice is never raised twice. */
  const noticed = new Set<string>();
  const perIp = new WindowCounter(rules.windowMs);
  const total = new WindowCounter(rules.windowMs);
  const limited = new WindowCounter(rules.windowMs);
  const queue: Alert[] = [];
  let inFlight = 0;
  let sent = 0;
  let dropped = 0;
  let closed = false;

  const deliver = async (a: Alert): Promise<void> => {
    for (let attempt = 1; attempt <= RETRIES && !closed; attempt++) {
      try {
        const res = await fetch(rules.webhook as string, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(a),
          signal: AbortSignal.timeout(rules.webhookTimeoutMs),
        });
        if (res.ok) {
          sent++;
          return;
        }
      } catch {
        // retried below
      }
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt).unref());
    }
    log.warn({ event: 'alert', outcome: 'undelivered', alert: a.alert, key: a.key }, 'alert webhook did not accept the alert');
  };

  const pump = () => {
    while (inFlight < 2 && queue.length) {
      const a = queue.shift() as Alert;
      inFlight++;
      void deliver(a).finally(() => {
        inFlight--;
        pump();
      });
    }
  };

  const raise = (a: Omit<Alert, 'time'>): boolean => {
    const now = Date.now();
    const last = lastRaised.get(a.key);
    if (last !== undefined && now - last < rules.dedupWindowMs) return false;
    if (lastRaised.size > 10_000) for (const [k, t] of lastRaised) if (now - t >= rules.dedupWindowMs) lastRaised.delete(k);
    lastRaised.set(a.key, now);
    const alert: Alert = { ...a, time: new Date(now).toISOString() };
    log.error({ event: 'alert', alert: a.alert, severity: a.severity, key: a.key, ...a.details }, a.message);
    if (rules.webhook && !closed) {
      if (queue.length >= QUEUE_MAX) {
        queue.shift();
        dropped++;
      }
      queue.push(alert);
      pump();
    }
    return true;
  };

  const onHandshake = (m: unknown) => {
    const e = m as HandshakeEvent;
    if (e.outcome !== 'refused') return;
    const now = Date.now();
    if (e.reason === 'revoked') raise({ alert: 'revoked_certificate_used', severity: 'critical', key: `revoked:${e.serial ?? e.remoteIp}`, message: 'a revoked certificate was presented', details: { remoteIp: e.remoteIp, serial: e.serial } });
    if (e.remoteIp && perIp.add(e.remoteIp, now) === rules.failedHandshakesPerIp) {
      raise({ alert: 'failed_handshakes_from_ip', severity: 'warning', key: `hs-ip:${e.remoteIp}`, message: `${rules.failedHandshakesPerIp} failed handshakes from one address`, details: { remoteIp: e.remoteIp, windowMs: rules.windowMs } });
    }
    if (total.add('*', now) === rules.failedHandshakesTotal) {
      raise({ alert: 'failed_handshakes_total', severity: 'warning', key: 'hs-total', message: `${rules.failedHandshakesTotal} failed handshakes in total`, details: { windowMs: rules.windowMs } });
    }
  };
  /** A refused API key, token or Basic password counts like a failed handshake (guessing looks the same). */
  const onCredential = (m: unknown) => {
    const e = m as CredentialEvent;
    if (e.outcome !== 'refused' || e.reason === 'missing') return;
    if (e.reason === 'revoked') raise({ alert: 'revoked_credential_used', severity: 'critical', key: `revoked-credential:${e.method}:${e.principal ?? e.remoteIp}`, message: `a revoked ${e.method} credential was presented`, details: { remoteIp: e.remoteIp, principal: e.principal } });
    onHandshake({ outcome: 'refused', reason: `credential:${e.reason}`, remoteIp: e.remoteIp } satisfies HandshakeEvent);
  };
  const onRequest = (m: unknown) => {
    const e = m as RequestEvent;
    if (e.code === 'BRK_ERR_AUTH_REVOKED') raise({ alert: 'revoked_certificate_used', severity: 'critical', key: `revoked:${e.principal}`, message: 'a revoked certificate was used on an open connection', details: { principal: e.principal, remoteIp: e.remoteIp } });
    if (e.code === 'BRK_ERR_RATE_LIMITED' && e.principal && limited.add(e.principal, Date.now()) === rules.rateLimitHits) {
      raise({ alert: 'rate_limit_repeated', severity: 'warning', key: `rl:${e.principal}`, message: `${e.principal} hit its rate limit ${rules.rateLimitHits} times`, details: { principal: e.principal, windowMs: rules.windowMs } });
    }
    if (e.code === 'BRK_ERR_UPSTREAM_UNAVAILABLE' || e.code === 'BRK_ERR_UPSTREAM_TIMEOUT') {
      raise({ alert: 'upstream_down', severity: 'critical', key: `upstream:${e.route}`, message: `the upstream of route ${e.route} is failing`, details: { route: e.route, code: e.code } });
    }
  };
  /** The forward listener: the same revocation and rate alerts, and a spent quota. */
  const onForward = (m: unknown) => {
    const e = m as ForwardEvent;
    if (e.code === 'BRK_ERR_AUTH_REVOKED') raise({ alert: 'revoked_certificate_used', severity: 'critical', key: `revoked:${e.principal}`, message: 'a revoked certificate was used on an open connection', details: { principal: e.principal, remoteIp: e.remoteIp } });
    if ((e.code === 'BRK_ERR_FORWARD_RATE_LIMITED' || e.code === 'BRK_ERR_FORWARD_TUNNELS') && e.principal && limited.add(e.principal, Date.now()) === rules.rateLimitHits) {
      raise({ alert: 'rate_limit_repeated', severity: 'warning', key: `rl:${e.principal}`, message: `${e.principal} hit its rate limit ${rules.rateLimitHits} times`, details: { principal: e.principal, windowMs: rules.windowMs } });
    }
    if (e.principal && (e.code === 'BRK_ERR_FORWARD_QUOTA' || e.end?.endsWith('quota spent'))) {
      raise({ alert: 'forward_quota_spent', severity: 'warning', key: `fq:${e.principal}`, message: `${e.principal} spent its forward traffic quota`, details: { principal: e.principal, end: e.end ?? null } });
    }
  };
  /** A refused reload: the broker keeps serving the previous generation, and someone should know. */
  const onReload = (m: unknown) => {
    const e = m as ReloadEvent;
    if (e.outcome !== 'failed') return;
    const problems = e.problems ?? [];
    raise({
      alert: 'reload_failed',
      severity: 'critical',
      // the same problem reported again (a watcher firing twice) is one alert; a new problem is another
      key: `reload:${problems[0] ?? e.code ?? 'unknown'}`,
      message: `a reload (${e.trigger ?? 'unknown trigger'}) was refused; still serving the previous configuration and certificates`,
      details: { trigger: e.trigger ?? null, code: e.code ?? null, problems },
    });
  };
  const unlisten = listen({ handshake: onHandshake, credential: onCredential, forward: onForward, request: onRequest, reload: onReload });

  return {
    raise,
    checkExpiry(items) {
      const now = Date.now();
      for (const it of items) {
        if (it.kind === 'crl') continue;
        const left = it.notAfter.getTime() - now;
        if (left < rules.expiryWarningMs) {
          raise({
            alert: left <= 0 ? 'certificate_expired' : 'certificate_expiring',
            severity: left <= 0 || it.kind !== 'client' ? 'critical' : 'warning',
            key: `expiry:${it.kind}:${it.name}`,
            message: `${it.kind} ${it.name} ${left <= 0 ? 'has expired' : `expires in ${Math.ceil(left / 86_400_000)} days`}`,
            details: { kind: it.kind, name: it.name, notAfter: it.notAfter.toISOString() },
          });
        }
      }
    },
    checkCrl(nextUpdate, file) {
      if (!nextUpdate || rules.crlExpiryMs === undefined) return false;
      const left = nextUpdate.getTime() - Date.now();
      if (left > rules.crlExpiryMs) return false;
      const at = nextUpdate.toISOString();
      return raise({
        alert: 'crl_expiring',
        severity: 'critical',
        key: `crl:${at}`,
        message:
          left <= 0
            ? `the loaded CRL passed its nextUpdate (${at}): every client certificate is refused; run "broker pki crl" and let the broker reload`
            : `the loaded CRL expires in ${Math.ceil(left / 60_000)} minutes (${at}); after that every client certificate is refused: run "broker pki crl" and let the broker reload`,
        details: { file: file ?? null, nextUpdate: at, secondsLeft: Math.floor(left / 1000), marginSeconds: Math.floor(rules.crlExpiryMs / 1000) },
      });
    },
    checkClientExpiry(certs) {
      const thresholds = rules.clientExpiry ?? [];
      if (!thresholds.length) return 0;
      const now = Date.now();
      let raised = 0;
      for (const c of certs) {
        const left = c.notAfter.getTime() - now;
        if (left <= 0) continue;
        for (const th of thresholds) {
          if (left > th.ms) continue;
          const once = `${c.serial}/${th.ms}`;
          if (noticed.has(once)) continue;
          noticed.add(once);
          const daysLeft = Math.floor(left / 86_400_000);
          const thresholdDays = th.ms / 86_400_000;
          // the smallest threshold is the last call: critical; the earlier ones are notices
          const last = th === thresholds[thresholds.length - 1];
          raise({
            alert: 'client_certificate_expiring',
            severity: last ? 'critical' : 'warning',
            key: `client-expiry:${once}`,
            message: `the client certificate of ${c.identity} expires in ${daysLeft} day${daysLeft === 1 ? '' : 's'} (${c.notAfter.toISOString()}), within ${th.label}${c.contact ? `; contact ${c.contact}` : ''}`,
            details: {
              identity: c.identity,
              serial: c.serial,
              notAfter: c.notAfter.toISOString(),
              daysLeft,
              secondsLeft: Math.floor(left / 1000),
              threshold: th.label,
              thresholdDays,
              contact: c.contact ?? null,
            },
          });
          raised++;
        }
      }
      return raised;
    },
    pending: () => queue.length + inFlight,
    get sent() {
      return sent;
    },
    get dropped() {
      return dropped;
    },
    close() {
      closed = true;
      queue.length = 0;
      unlisten();
    },
  };
}
