/**
 * The state shared between replicas: rate-limit buckets, in-flight counters, failure counts and
 * bans. In memory by default; in Redis when `rateLimit.store` names one.
 */
import type { LimitCheck } from './policy.ts';
import { take, type BucketState, type TakeResult } from './bucket.ts';

export type { BucketState } from './bucket.ts';

export interface Verdict {
  allowed: boolean;
  /** The binding bucket's size, tokens left and ms until full, for the RateLimit-* headers. */
  limit: number;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
  /** The store could not be asked; the verdict is the configured fail policy. */
  degraded?: boolean;
}

/** Bytes to count under `key` in the current fixed window of `windowMs` (a byte quota). */
export interface ByteCount {
  key: string;
  bytes: number;
  windowMs: number;
}

/** A window's total after the addition, and the ms until that window ends. */
export interface ByteTotal {
  total: number;
  resetMs: number;
}

export interface SharedStore {
  readonly kind: 'memory' | 'redis';
  /** Takes one token from every bucket, or from none when any is empty. */
  take(checks: readonly LimitCheck[]): Verdict | Promise<Verdict>;
  /**
   * One more in-flight request for `key`, unless that would pass `max`. A shared store forgets the
   * count `ttlMs` after its last change (a replica that died holding slots); default 5 min.
   */
  acquire(key: string, max: number, ttlMs?: number): boolean | Promise<boolean>;
  release(key: string): void;
  /**
   * Adds to byte counters kept per fixed window (windows start at multiples of `windowMs` since the
   * Unix epoch, on the store's clock) and returns each window's total so far; `bytes: 0` reads.
   * Undefined when a shared store cannot be asked.
   */
  addBytes(counts: readonly ByteCount[]): ByteTotal[] | undefined | Promise<ByteTotal[] | undefined>;
  /**
   * Counts a failure (refused handshake, 401/403) under `key` in a window; returns the count so far.
   * The key is `<kind>:<ip>`, or `handshake:cert:<fingerprint>@<ip>` for a certificate our CA issued.
   */
  countFailure(key: string, windowMs: number): number | Promise<number>;
  /**
   * Records a ban for every replica; `onBan` listeners hear about bans from any replica. The key is
   * the address, or `cert:<fingerprint>@<ip>` for one certificate at one address (connection-guard.ts).
   */
  ban(key: string, ms: number): void | Promise<void>;
  onBan(listener: (ip: string, untilMs: number) => void): void;
  /**
   * Lifts a ban (and forgets its failure counts, so the next failure does not ban again at once):
   * `onBan` listeners hear it as a ban until 0. Every store here implements it.
   */
  unban?(key: string): void | Promise<void>;
  /** A bucket's state without taking from it (the operator's console); undefined when unknown or unreachable. */
  peekBucket?(key: string): BucketState | undefined | Promise<BucketState | undefined>;
  /** Bans in force now (for a replica that starts later). */
  activeBans(): Array<[string, number]> | Promise<Array<[string, number]>>;
  close(): Promise<void>;
  /** Whether the store answers now (readiness); absent for the in-process store. */
  ping?(): Promise<boolean>;
  /** Called when a shared store is reachable again after an outage. */
  onRecover?(fn: () => void): void;
  /** Announces revoked certificate serials to every replica (shared stores only). */
  publishRevoked?(serials: readonly string[]): Promise<void>;
  /** Revocations announced by any replica. */
  onRevoked?(fn: (serials: string[]) => void): void;
  /** Every serial announced so far (for a replica that starts later). */
  revokedSerials?(): Promise<string[]>;
}

/**
 * The verdict over several buckets, from each bucket's arithmetic: allowed when every bucket had a
 * token; the binding bucket is the refused one that frees up last, or the one with fewest left.
 */
export function combine(checks: readonly LimitCheck[], results: readonly TakeResult[]): Verdict {
  let bind = 0;
  const allowed = results.every((r) => r.allowed);
  for (let i = 1; i < results.length; i++) {
    const r = results[i] as TakeResult;
    const b = results[bind] as TakeResult;
    if (allowed ? r.remaining < b.remaining : (!r.allowed && r.retryAfterMs > b.retryAfterMs) || (b.allowed && !r.allowed)) bind = i;
  }
  const r = results[bind] as TakeResult;
  return { allowed, limit: (checks[bind] as LimitCheck).spec.burst, remaining: allowed ? r.remaining : 0, resetMs: r.resetMs, retryAfterMs: allowed ? 0 : r.retryAfterMs };
}

/** Applies `take` to several buckets all-or-nothing against a state lookup; used by the memory store. */
export function takeAll(checks: readonly LimitCheck[], get: (key: string) => BucketState | undefined, now: number): { verdict: Verdict; results: TakeResult[] } {
  const results = checks.map((c) => take(c.spec, get(c.key), now));
  return { verdict: combine(checks, results), results };
}
