/**
 * What the operator's console knows about traffic: it listens on the diagnostics channels
 * (src/channels.ts) and keeps, bounded in memory, per identity the last time it was seen and its
 * requests and refusals per minute (60 buckets) and per hour (24 buckets); the live series (10 s
 * intervals over the last 15 minutes); and the most recent refusals. Only created when
 * `admin.console` is on, so the request path publishes to no one otherwise.
 *
 * Per process: with --workers each worker keeps its own and the workers share the admin port, so a
 * view shows the worker that answered; nothing is aggregated or persisted.
 */
import { listen, type BanEvent, type ForwardEvent, type HandshakeEvent, type RejectEvent, type ReloadEvent, type RequestEvent } from '../channels.ts';
import type { LivePoint, RefusalView } from './model.ts';

const MINUTE = 60_000;
const HOUR = 3_600_000;
export const INTERVAL_MS = 10_000;
/** 15 minutes of 10 s intervals. */
const INTERVALS = 90;
const MAX_REFUSALS = 100;
/** Identities tracked at most; past that the least recently inserted is forgotten. */
const MAX_IDENTITIES = 10_000;
/** Latency histogram upper bounds (ms); the last bucket is everything above. */
const BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

/** Counts in a ring of fixed buckets (`n` of `width` ms); a bucket from an earlier lap reads as 0. */
class Ring {
  readonly #counts: Float64Array;
  readonly #stamps: Float64Array;
  readonly n: number;
  readonly width: number;
  constructor(n: number, width: number) {
    this.n = n;
    this.width = width;
    this.#counts = new Float64Array(n);
    this.#stamps = new Float64Array(n).fill(-1);
  }
  add(now: number, k = 1): void {
    const index = Math.floor(now / this.width);
    const i = index % this.n;
    if (this.#stamps[i] !== index) {
      this.#stamps[i] = index;
      this.#counts[i] = 0;
    }
    (this.#counts[i] as number) += k;
  }
  /** The total of the buckets covering the last `n` widths (the current one included). */
  sum(now: number): number {
    const index = Math.floor(now / this.width);
    let total = 0;
    for (let i = 0; i < this.n; i++) {
      const stamp = this.#stamps[i] as number;
      if (stamp > index - this.n && stamp <= index) total += this.#counts[i] as number;
    }
    return total;
  }
}

/** Last hour from minute buckets, last day from hour buckets. */
class Window {
  readonly #minutes = new Ring(60, MINUTE);
  readonly #hours = new Ring(24, HOUR);
  add(now: number): void {
    this.#minutes.add(now);
    this.#hours.add(now);
  }
  counts(now: number): { hour: number; day: number } {
    return { hour: this.#minutes.sum(now), day: this.#hours.sum(now) };
  }
}

interface IdentityActivity {
  lastSeen: number;
  requests: Window;
  refusals: Window;
}

interface Interval {
  index: number;
  requests: number;
  errors: number;
  handshakes: number;
  latency: Uint32Array;
}

export interface ActivityCounts {
  lastSeen: string | null;
  requests: { hour: number; day: number };
  refusals: { hour: number; day: number };
}

export interface Activity {
  /**
   * An identity's activity. Refused handshakes carry a certificate serial but no name: they are
   * filed under `serial:<hex>`, and `serials` adds those of the identity's certificates.
   */
  of(name: string, serials?: readonly string[]): ActivityCounts;
  /** The live series, oldest first, every interval of the last 15 minutes (empty ones as zeros). */
  series(): LivePoint[];
  /** Newest first. */
  refusals(): RefusalView[];
  /** Reloads of this process since it started (the last 50), newest first. */
  reloads(): Array<{ time: string; outcome: 'ok' | 'failed'; trigger: string | null; problems: string[] }>;
  close(): void;
}

function percentile(h: Uint32Array, total: number, q: number, max: number): number | null {
  if (total === 0) return null;
  const want = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i] as number;
    if (seen >= want) return i < BOUNDS.length ? Math.min(BOUNDS[i] as number, max) : max;
  }
  return max;
}

export function createActivity(now: () => number = Date.now): Activity {
  const identities = new Map<string, IdentityActivity>();
  const intervals: Interval[] = [];
  /** The slowest request per interval index, for the open-ended top bucket and to cap the bounds. */
  const slowest = new Map<number, number>();
  const refusals: RefusalView[] = [];
  const reloads: ReturnType<Activity['reloads']> = [];

  const identity = (key: string): IdentityActivity => {
    let a = identities.get(key);
    if (a === undefined) {
      if (identities.size >= MAX_IDENTITIES) identities.delete(identities.keys().next().value as string);
      identities.set(key, (a = { lastSeen: 0, requests: new Window(), refusals: new Window() }));
    }
    return a;
  };
  const interval = (t: number): Interval => {
    const index = Math.floor(t / INTERVAL_MS);
    let last = intervals.at(-1);
    if (last?.index !== index) {
      last = { index, requests: 0, errors: 0, handshakes: 0, latency: new Uint32Array(BOUNDS.length + 1) };
      intervals.push(last);
      while (intervals.length > INTERVALS || (intervals[0] as Interval).index <= index - INTERVALS) slowest.delete((intervals.shift() as Interval).index);
    }
    return last;
  };
  const refused = (r: RefusalView) => {
    refusals.unshift(r);
    if (refusals.length > MAX_REFUSALS) refusals.pop();
  };
  const seen = (key: string, t: number, refusal: boolean) => {
    const a = identity(key);
    a.lastSeen = t;
    if (refusal) a.refusals.add(t);
    else a.requests.add(t);
  };

  const onRequest = (message: unknown) => {
    const e = message as RequestEvent;
    const t = now();
    const iv = interval(t);
    iv.requests++;
    if (e.status >= 500) iv.errors++;
    let b = 0;
    while (b < BOUNDS.length && e.durationMs > (BOUNDS[b] as number)) b++;
    (iv.latency[b] as number)++;
    if (e.durationMs > (slowest.get(iv.index) ?? 0)) slowest.set(iv.index, e.durationMs);
    // A refusal is a request the broker answered itself with a coded denial (401, 403, 429, …), not an upstream's status.
    const denied = e.code !== undefined && e.status >= 400 && e.status < 500;
    if (e.principal !== null) seen(e.principal, t, denied);
    else if (denied && e.certificate) seen(`serial:${e.certificate.serial}`, t, true);
    if (denied) {
      refused({
        time: new Date(t).toISOString(),
        reqId: e.reqId ?? null,
        principal: e.principal,
        remoteIp: e.remoteIp ?? null,
        code: e.code as string,
        reason: `${e.status} on ${e.route === null ? 'no route' : `route ${e.route}`}`,
        certificate: e.certificate ? { subject: e.certificate.subject, serial: e.certificate.serial, fingerprint: e.certificate.fingerprint } : null,
      });
    }
  };
  const onHandshake = (message: unknown) => {
    const e = message as HandshakeEvent;
    const t = now();
    if (e.outcome === 'ok') {
      interval(t).handshakes++;
      if (e.principal !== undefined) identity(e.principal).lastSeen = t;
      return;
    }
    if (e.serial !== undefined) seen(`serial:${e.serial}`, t, true);
    refused({
      time: new Date(t).toISOString(),
      reqId: null,
      principal: e.principal ?? null,
      remoteIp: e.remoteIp ?? null,
      code: 'BRK_ERR_TLS_CLIENT_CERT_REFUSED',
      reason: `handshake refused: ${e.reason ?? 'unknown'}`,
      certificate: e.serial !== undefined || e.subject !== undefined ? { subject: e.subject ?? null, serial: e.serial ?? null, fingerprint: e.fingerprint ?? null } : null,
    });
  };
  const onForward = (message: unknown) => {
    const e = message as ForwardEvent;
    const t = now();
    if (e.principal !== null) seen(e.principal, t, e.outcome === 'refused');
    if (e.outcome === 'refused') {
      refused({ time: new Date(t).toISOString(), reqId: null, principal: e.principal, remoteIp: e.remoteIp ?? null, code: e.code ?? 'forward', reason: 'forward refused', certificate: null });
    }
  };
  const onReject = (message: unknown) => {
    const e = message as RejectEvent;
    // Request refusals come with their request event; only connections refused before any request are listed from here.
    if (!e.kind.startsWith('accept:') && e.kind !== 'handshake:banned') return;
    refused({ time: new Date(now()).toISOString(), reqId: null, principal: e.principal ?? null, remoteIp: e.remoteIp ?? null, code: e.kind, reason: `connection refused (${e.kind})`, certificate: null });
  };
  const onBan = (message: unknown) => {
    const e = message as BanEvent;
    refused({ time: new Date(now()).toISOString(), reqId: null, principal: null, remoteIp: e.remoteIp, code: 'ban', reason: `banned for ${Math.round(e.durationMs / 1000)} s: ${e.reason}`, certificate: null });
  };

  const onReload = (message: unknown) => {
    const e = message as ReloadEvent;
    reloads.unshift({ time: new Date(now()).toISOString(), outcome: e.outcome, trigger: e.trigger ?? null, problems: e.problems ?? [] });
    if (reloads.length > 50) reloads.pop();
  };

  const unlisten = listen({ request: onRequest, reload: onReload, handshake: onHandshake, forward: onForward, reject: onReject, ban: onBan });

  return {
    of(name, serials = []) {
      const t = now();
      const keys = [name, ...serials.map((s) => `serial:${s}`)];
      let lastSeen = 0;
      const requests = { hour: 0, day: 0 };
      const refusalCounts = { hour: 0, day: 0 };
      for (const key of keys) {
        const a = identities.get(key);
        if (a === undefined) continue;
        lastSeen = Math.max(lastSeen, a.lastSeen);
        const q = a.requests.counts(t);
        const r = a.refusals.counts(t);
        requests.hour += q.hour;
        requests.day += q.day;
        refusalCounts.hour += r.hour;
        refusalCounts.day += r.day;
      }
      return { lastSeen: lastSeen ? new Date(lastSeen).toISOString() : null, requests, refusals: refusalCounts };
    },
    series() {
      const current = Math.floor(now() / INTERVAL_MS);
      const byIndex = new Map(intervals.map((iv) => [iv.index, iv]));
      const points: LivePoint[] = [];
      const per = INTERVAL_MS / 1000;
      for (let index = current - INTERVALS + 1; index <= current; index++) {
        const iv = byIndex.get(index);
        const total = iv ? iv.latency.reduce((a, b) => a + b, 0) : 0;
        const max = slowest.get(index) ?? 0;
        points.push({
          t: new Date(index * INTERVAL_MS).toISOString(),
          requestsPerSecond: (iv?.requests ?? 0) / per,
          errorsPerSecond: (iv?.errors ?? 0) / per,
          p50Ms: iv ? percentile(iv.latency, total, 0.5, max) : null,
          p99Ms: iv ? percentile(iv.latency, total, 0.99, max) : null,
          handshakesPerSecond: (iv?.handshakes ?? 0) / per,
        });
      }
      return points;
    },
    refusals() {
      return refusals.map((r) => ({ ...r }));
    },
    reloads() {
      return reloads.map((r) => ({ ...r, problems: [...r.problems] }));
    },
    close: unlisten,
  };
}
