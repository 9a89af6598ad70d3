/**
 * Per-identity limits of the forward listener, kept in the shared store (memory, the primary over
 * IPC, or Redis) so that replicas share one budget: new tunnels and forwarded requests per period
 * (a token bucket), exchanges open at once, and bytes per fixed window in each direction.
 *
 * Bytes are counted locally and added to the store in batches (every FLUSH_BYTES per exchange, on a
 * one-second sweep, and at the end), so a quota can be overshot by at most about one batch per open
 * exchange, plus what moves in the second before a sweep. Once a window's total reaches the quota,
 * every open exchange of that identity on this replica is cut, other replicas cut theirs at their
 * next batch, and new exchanges are refused until the window ends.
 */
import type { ForwardLimitNumbers, QuotaNumbers } from '../config/index.ts';
import type { BucketSpec } from '../ratelimit/bucket.ts';
import { stricter } from '../ratelimit/policy.ts';
import type { ByteCount, ByteTotal, SharedStore } from '../ratelimit/store.ts';
import type { HttpErrorCode } from '../errors.ts';

/** Bytes an exchange counts before it adds them to the store. */
export const FLUSH_BYTES = 256 * 1024;
const SWEEP_MS = 1_000;

export interface Caller {
  readonly name: string;
  readonly roles: readonly string[];
}

export type Admission = { ok: true; meter: Meter } | { ok: false; code: HttpErrorCode; reason: string; retryAfterSec: number };

interface Plan {
  readonly name: string;
  readonly bucket: { key: string; spec: BucketSpec };
  readonly slotKey: string;
  readonly maxTunnels: number;
  /** The quotas that apply, each with its store key. */
  readonly quotas: ReadonlyArray<{ key: string; dir: 'up' | 'down'; q: QuotaNumbers }>;
}

/** The strictest of each field among the roles that set it, else the default. */
export function limitsFor(roles: readonly string[], defaults: ForwardLimitNumbers, byRole: ReadonlyMap<string, Partial<ForwardLimitNumbers>>): ForwardLimitNumbers {
  let tunnels: BucketSpec | undefined;
  let maxTunnels: number | undefined;
  let quotaUp: QuotaNumbers | undefined;
  let quotaDown: QuotaNumbers | undefined;
  // a quota is stricter when it allows fewer bytes per millisecond
  const tighter = (a: QuotaNumbers | undefined, b: QuotaNumbers | undefined) => (a === undefined ? b : b === undefined ? a : b.bytes / b.windowMs < a.bytes / a.windowMs ? b : a);
  for (const role of roles) {
    const r = byRole.get(role);
    if (r === undefined) continue;
    if (r.tunnels) tunnels = tunnels ? stricter(tunnels, r.tunnels) : r.tunnels;
    if (r.maxTunnels !== undefined) maxTunnels = Math.min(maxTunnels ?? Infinity, r.maxTunnels);
    quotaUp = tighter(quotaUp, r.quotaUp);
    quotaDown = tighter(quotaDown, r.quotaDown);
  }
  return { tunnels: tunnels ?? defaults.tunnels, maxTunnels: maxTunnels ?? defaults.maxTunnels, quotaUp: quotaUp ?? defaults.quotaUp, quotaDown: quotaDown ?? defaults.quotaDown };
}

/**
 * The byte counter and slot of one admitted exchange. `add` counts bytes as they pass; `close`
 * adds what is left and frees the slot. `cut` is called (once) when the identity's quota is spent.
 */
export class Meter {
  #up = 0;
  #down = 0;
  #closed = false;
  #cut: ((why: string) => void) | undefined;
  readonly #owner: ForwardLimiter;
  readonly #plan: Plan;

  constructor(owner: ForwardLimiter, plan: Plan) {
    this.#owner = owner;
    this.#plan = plan;
  }

  get plan(): Plan {
    return this.#plan;
  }

  /** What to do when the quota is spent while this exchange is open (close it). */
  onCut(fn: (why: string) => void): void {
    this.#cut = fn;
  }

  add(up: number, down: number): void {
    this.#up += up;
    this.#down += down;
    if (this.#up + this.#down >= FLUSH_BYTES) this.flush();
  }

  /** Adds the bytes counted so far to the store. */
  flush(): void {
    if (this.#up === 0 && this.#down === 0) return;
    const up = this.#up;
    const down = this.#down;
    this.#up = 0;
    this.#down = 0;
    this.#owner.count(this.#plan, up, down);
  }

  cut(why: string): void {
    if (this.#closed) return;
    const fn = this.#cut;
    this.#cut = undefined;
    fn?.(why);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.flush();
    this.#owner.closed(this);
  }
}

export class ForwardLimiter {
  readonly #store: SharedStore;
  #failOpen: boolean;
  #defaults: ForwardLimitNumbers;
  #byRole: ReadonlyMap<string, Partial<ForwardLimitNumbers>>;
  /** Slots expire from a shared store this long after their last change (a replica that died). */
  #slotTtlMs: number;
  readonly #plans = new Map<string, Plan>();
  /** Open meters per identity, so a spent quota cuts all of them. */
  readonly #open = new Map<string, Set<Meter>>();
  /** Identities whose quota is spent, until when (ms since epoch), as last heard from the store. */
  readonly #spent = new Map<string, { until: number; dir: 'up' | 'down' }>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(store: SharedStore, o: { failOpen: boolean; defaults: ForwardLimitNumbers; byRole: ReadonlyMap<string, Partial<ForwardLimitNumbers>>; maxDurationMs: number }) {
    this.#store = store;
    this.#failOpen = o.failOpen;
    this.#defaults = o.defaults;
    this.#byRole = o.byRole;
    this.#slotTtlMs = o.maxDurationMs + 60_000;
  }

  /** A reloaded config's limits (exchanges already open keep their plan). */
  update(o: { failOpen: boolean; defaults: ForwardLimitNumbers; byRole: ReadonlyMap<string, Partial<ForwardLimitNumbers>>; maxDurationMs: number }): void {
    this.#failOpen = o.failOpen;
    this.#defaults = o.defaults;
    this.#byRole = o.byRole;
    this.#slotTtlMs = o.maxDurationMs + 60_000;
    this.#plans.clear();
  }

  #planOf(who: Caller): Plan {
    const id = `${who.name}\u0000${who.roles.join('\u0000')}`;
    let plan = this.#plans.get(id);
    if (plan === undefined) {
      const l = limitsFor(who.roles, this.#defaults, this.#byRole);
      const quotas: Array<Plan['quotas'][number]> = [];
      if (l.quotaUp) quotas.push({ key: `fw:up:${who.name}`, dir: 'up', q: l.quotaUp });
      if (l.quotaDown) quotas.push({ key: `fw:down:${who.name}`, dir: 'down', q: l.quotaDown });
      plan = { name: who.name, bucket: { key: `fw:rl:${who.name}`, spec: l.tunnels }, slotKey: `fw:cc:${who.name}`, maxTunnels: l.maxTunnels, quotas };
      if (this.#plans.size >= 10_000) this.#plans.clear();
      this.#plans.set(id, plan);
    }
    return plan;
  }

  #spentRefusal(name: string, now: number): Admission | undefined {
    const s = this.#spent.get(name);
    if (s === undefined) return undefined;
    if (s.until <= now) return void this.#spent.delete(name);
    return { ok: false, code: 'BRK_ERR_FORWARD_QUOTA', reason: `the ${s.dir === 'up' ? 'upload' : 'download'} quota of this window is spent`, retryAfterSec: Math.max(1, Math.ceil((s.until - now) / 1000)) };
  }

  /** Whether `who` may open one more exchange now; on yes, its meter (close it when done). */
  async admit(who: Caller): Promise<Admission> {
    const plan = this.#planOf(who);
    const spent = this.#spentRefusal(plan.name, Date.now());
    if (spent) return spent;
    const v = await this.#store.take([plan.bucket]);
    if (!v.allowed) {
      if (v.degraded) return { ok: false, code: 'BRK_ERR_RATELIMIT_UNAVAILABLE', reason: 'shared store unreachable, failing closed', retryAfterSec: 1 };
      return { ok: false, code: 'BRK_ERR_FORWARD_RATE_LIMITED', reason: `more than ${plan.bucket.spec.burst} new tunnels at once (${plan.bucket.spec.rate} per ${plan.bucket.spec.perMs} ms sustained)`, retryAfterSec: Math.max(1, Math.ceil(v.retryAfterMs / 1000)) };
    }
    if (plan.quotas.length > 0) {
      const totals = await this.#store.addBytes(plan.quotas.map((q) => ({ key: q.key, bytes: 0, windowMs: q.q.windowMs })));
      if (totals === undefined) {
        if (!this.#failOpen) return { ok: false, code: 'BRK_ERR_RATELIMIT_UNAVAILABLE', reason: 'shared store unreachable, failing closed', retryAfterSec: 1 };
      } else {
        this.#noteTotals(plan, totals);
        const now = this.#spentRefusal(plan.name, Date.now());
        if (now) return now;
      }
    }
    if (!(await this.#store.acquire(plan.slotKey, plan.maxTunnels, this.#slotTtlMs))) {
      return { ok: false, code: 'BRK_ERR_FORWARD_TUNNELS', reason: `${plan.maxTunnels} tunnels or requests already open`, retryAfterSec: 1 };
    }
    const meter = new Meter(this, plan);
    let open = this.#open.get(plan.name);
    if (open === undefined) this.#open.set(plan.name, (open = new Set()));
    open.add(meter);
    if (plan.quotas.length > 0) this.#startSweep();
    return { ok: true, meter };
  }

  /** Records spent quotas from the store's totals; true when one is spent. */
  #noteTotals(plan: Plan, totals: readonly ByteTotal[]): boolean {
    let spent = false;
    plan.quotas.forEach((q, i) => {
      const t = totals[i];
      if (t === undefined || t.total < q.q.bytes) return;
      spent = true;
      const until = Date.now() + t.resetMs;
      const prev = this.#spent.get(plan.name);
      if (prev === undefined || prev.until < until) this.#spent.set(plan.name, { until, dir: q.dir });
    });
    return spent;
  }

  /** Adds an exchange's bytes to the store; cuts the identity's open exchanges once a quota is spent. */
  count(plan: Plan, up: number, down: number): void {
    if (plan.quotas.length === 0) return;
    const counts: ByteCount[] = plan.quotas.map((q) => ({ key: q.key, bytes: q.dir === 'up' ? up : down, windowMs: q.q.windowMs }));
    const after = (totals: ByteTotal[] | undefined) => {
      if (totals === undefined || !this.#noteTotals(plan, totals)) return;
      const s = this.#spent.get(plan.name);
      for (const m of this.#open.get(plan.name) ?? []) m.cut(`${s?.dir === 'down' ? 'download' : 'upload'} quota spent`);
    };
    const r = this.#store.addBytes(counts);
    if (r instanceof Promise) r.then(after, () => {});
    else after(r);
  }

  closed(m: Meter): void {
    const open = this.#open.get(m.plan.name);
    open?.delete(m);
    if (open?.size === 0) this.#open.delete(m.plan.name);
    this.#store.release(m.plan.slotKey);
    if (this.#open.size === 0) this.#stopSweep();
  }

  #startSweep(): void {
    this.#sweep ??= setInterval(() => {
      for (const set of this.#open.values()) for (const m of set) m.flush();
    }, SWEEP_MS).unref();
  }

  #stopSweep(): void {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  close(): void {
    this.#stopSweep();
  }
}
