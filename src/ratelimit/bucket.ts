/**
 * Token buckets, as pure arithmetic on a small state: `burst` tokens at most, refilled at
 * `rate` per `perMs`. A request costs one token. The same arithmetic runs in the memory store
 * and, transcribed, in the Redis script, so both stores agree to the token.
 */

export interface BucketSpec {
  /** Tokens added per `perMs`. */
  rate: number;
  perMs: number;
  /** Capacity: how many requests may come at once. */
  burst: number;
}

export interface BucketState {
  tokens: number;
  /** When `tokens` was last computed (ms). */
  at: number;
}

export interface TakeResult {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** ms until the bucket is full again (RateLimit-Reset). */
  resetMs: number;
  /** ms until one token is available, when refused (Retry-After). */
  retryAfterMs: number;
  state: BucketState;
}

export function refillPerMs(spec: BucketSpec): number {
  return spec.rate / spec.perMs;
}

/** How long an untouched bucket takes to be full again: after that its state can be forgotten. */
export function idleTtlMs(spec: BucketSpec): number {
  return Math.ceil(spec.burst / refillPerMs(spec));
}

export function take(spec: BucketSpec, prev: BucketState | undefined, now: number): TakeResult {
  const perMs = refillPerMs(spec);
  const tokens = prev === undefined ? spec.burst : Math.min(spec.burst, prev.tokens + Math.max(0, now - prev.at) * perMs);
  if (tokens >= 1) {
    const left = tokens - 1;
    return { allowed: true, remaining: Math.floor(left), resetMs: Math.ceil((spec.burst - left) / perMs), retryAfterMs: 0, state: { tokens: left, at: now } };
  }
  return { allowed: false, remaining: 0, resetMs: Math.ceil((spec.burst - tokens) / perMs), retryAfterMs: Math.ceil((1 - tokens) / perMs), state: { tokens, at: now } };
}
