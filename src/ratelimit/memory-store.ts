/**
 * The in-process store. Bounded: a bucket untouched for as long as it takes to refill is forgotten
 * (it would be full anyway), and so are expired failure counts and bans, by a sweep every few
 * seconds; so millions of distinct identities over time cost only the ones active lately.
 */
import { idleTtlMs, type BucketState } from './bucket.ts';
import type { LimitCheck } from './policy.ts';
import { takeAll, type ByteCount, type ByteTotal, type SharedStore, type Verdict } from './store.ts';

interface Entry extends BucketState {
  expires: number;
}

export class MemoryStore implements SharedStore {
  readonly kind = 'memory' as const;
  readonly #buckets = new Map<string, Entry>();
  readonly #inflight = new Map<string, number>();
  readonly #failures = new Map<string, { count: number; resets: number }>();
  readonly #bans = new Map<string, number>();
  /** Byte counters by `<key>:<windowMs>:<window index>`, dropped when their window is over. */
  readonly #bytes = new Map<string, { total: number; ends: number }>();
  readonly #banListeners: Array<(ip: string, until: number) => void> = [];
  readonly #sweeper: NodeJS.Timeout;
  readonly #now: () => number;

  constructor(o: { sweepMs?: number; now?: () => number } = {}) {
    this.#now = o.now ?? Date.now;
    this.#sweeper = setInterval(() => this.sweep(), o.sweepMs ?? 5_000).unref();
  }

  take(checks: readonly LimitCheck[]): Verdict {
    const now = this.#now();
    const { verdict, results } = takeAll(checks, (k) => this.#buckets.get(k), now);
    if (verdict.allowed) {
      checks.forEach((c, i) => {
        const s = results[i]?.state as BucketState;
        this.#buckets.set(c.key, { tokens: s.tokens, at: s.at, expires: now + idleTtlMs(c.spec) });
      });
    }
    return verdict;
  }

  acquire(key: string, max: number): boolean {
    const n = this.#inflight.get(key) ?? 0;
    if (n >= max) return false;
    this.#inflight.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = (this.#inflight.get(key) ?? 1) - 1;
    if (n <= 0) this.#inflight.delete(key);
    else this.#inflight.set(key, n);
  }

  addBytes(counts: readonly ByteCount[]): ByteTotal[] {
    const now = this.#now();
    return counts.map((c) => {
      const index = Math.floor(now / c.windowMs);
      const id = `${c.key}:${c.windowMs}:${index}`;
      let e = this.#bytes.get(id);
      if (e === undefined) this.#bytes.set(id, (e = { total: 0, ends: (index + 1) * c.windowMs }));
      e.total += c.bytes;
      return { total: e.total, resetMs: e.ends - now };
    });
  }

  countFailure(ip: string, windowMs: number): number {
    const now = this.#now();
    const f = this.#failures.get(ip);
    if (!f || f.resets <= now) {
      this.#failures.set(ip, { count: 1, resets: now + windowMs });
      return 1;
    }
    return ++f.count;
  }

  ban(ip: string, ms: number): void {
    const until = this.#now() + ms;
    this.#bans.set(ip, until);
    for (const l of this.#banListeners) l(ip, until);
  }

  unban(key: string): void {
    this.#bans.delete(key);
    this.#failures.delete(`handshake:${key}`);
    this.#failures.delete(`request:${key}`);
    for (const l of this.#banListeners) l(key, 0);
  }

  peekBucket(key: string): BucketState | undefined {
    const e = this.#buckets.get(key);
    return e === undefined ? undefined : { tokens: e.tokens, at: e.at };
  }

  onBan(listener: (ip: string, until: number) => void): void {
    this.#banListeners.push(listener);
  }

  activeBans(): Array<[string, number]> {
    const now = this.#now();
    return [...this.#bans].filter(([, until]) => until > now);
  }

  /** Drops everything that has expired; runs on a timer, exposed for tests. */
  sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#buckets) if (e.expires <= now) this.#buckets.delete(k);
    for (const [k, f] of this.#failures) if (f.resets <= now) this.#failures.delete(k);
    for (const [k, until] of this.#bans) if (until <= now) this.#bans.delete(k);
    for (const [k, e] of this.#bytes) if (e.ends <= now) this.#bytes.delete(k);
  }

  get size(): { buckets: number; inflight: number; failures: number; bans: number; bytes: number } {
    return { buckets: this.#buckets.size, inflight: this.#inflight.size, failures: this.#failures.size, bans: this.#bans.size, bytes: this.#bytes.size };
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
  }
}
