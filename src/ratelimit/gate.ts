/**
 * The limits stage's adapter: after the ACL, take a token from every bucket that applies and claim
 * an in-flight slot; on refusal note Retry-After and RateLimit-* on the answer (429), or 503 when
 * the shared store is down and the policy is to fail closed. Nothing is forwarded when refused.
 * The decision itself is policy.ts (which buckets) and the store (how many tokens are left).
 */
import type { HttpErrorCode } from '../errors.ts';
import type { Caller } from '../identity/index.ts';
import type { RequestContext } from '../request/index.ts';
import type { LimitPlan, LimitPolicy } from './policy.ts';
import type { SharedStore, Verdict } from './store.ts';

export type Refuse = (ctx: RequestContext, code: HttpErrorCode, detail: string) => void;

export interface Gate {
  (ctx: RequestContext, who: Caller, route: string, next: (ctx: RequestContext) => void, refuse: Refuse): void;
  /**
   * For a WebSocket of `who` on `route`: takes one token per message from the same buckets as its
   * HTTP requests there; whether the message may pass (a promise with a shared store).
   */
  message(who: Caller, route: string): () => boolean | Promise<boolean>;
}

function note(ctx: RequestContext, v: Verdict): void {
  if (v.degraded) return;
  ctx.limit = { limit: v.limit, remaining: v.remaining, resetMs: v.resetMs };
  ctx.setHeader('ratelimit-limit', v.limit);
  ctx.setHeader('ratelimit-remaining', v.remaining);
  ctx.setHeader('ratelimit-reset', Math.ceil(v.resetMs / 1000));
}

export function limitGate(policy: LimitPolicy, store: SharedStore): Gate {
  // Plans depend on (caller, route) only; callers are one object per connection or cached
  // credential, so keep-alive requests reuse one plan instead of building keys each time.
  const plans = new WeakMap<Caller, Map<string, LimitPlan>>();
  const planOf = (who: Caller, route: string): LimitPlan => {
    let byRoute = plans.get(who);
    if (byRoute === undefined) plans.set(who, (byRoute = new Map()));
    let plan = byRoute.get(route);
    if (plan === undefined) byRoute.set(route, (plan = policy.plan(who.name, who.roles, route)));
    return plan;
  };
  const gate: Gate = (ctx, who, route, next, refuse) => {
    const plan = planOf(who, route);
    const afterAcquire = (ok: boolean) => {
      if (!ok) {
        ctx.setHeader('retry-after', 1);
        return refuse(ctx, 'BRK_ERR_CONCURRENCY_LIMITED', `more than ${plan.maxConcurrent} in flight`);
      }
      let released = false;
      ctx.release = () => {
        if (released) return;
        released = true;
        store.release(plan.concurrencyKey);
      };
      next(ctx);
    };
    const afterTake = (v: Verdict) => {
      note(ctx, v);
      if (!v.allowed) {
        if (v.degraded) return refuse(ctx, 'BRK_ERR_RATELIMIT_UNAVAILABLE', 'shared store unreachable, failing closed');
        ctx.setHeader('retry-after', Math.max(1, Math.ceil(v.retryAfterMs / 1000)));
        return refuse(ctx, 'BRK_ERR_RATE_LIMITED', `over the limit on ${route} (${v.limit} burst)`);
      }
      const a = store.acquire(plan.concurrencyKey, plan.maxConcurrent);
      if (typeof a === 'boolean') afterAcquire(a);
      else a.then(afterAcquire, () => afterAcquire(false));
    };
    const t = store.take(plan.checks);
    if ('then' in t) t.then(afterTake, () => refuse(ctx, 'BRK_ERR_RATELIMIT_UNAVAILABLE', 'limit store failed'));
    else afterTake(t);
  };
  gate.message = (who, route) => {
    const checks = planOf(who, route).checks;
    return () => {
      const v = store.take(checks);
      return 'then' in v ? v.then(allowed) : v.allowed;
    };
  };
  return gate;
}

const allowed = (v: Verdict): boolean => v.allowed;
