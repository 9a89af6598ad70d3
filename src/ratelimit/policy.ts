/**
 * Which limits apply to a request: pure. The identity's own bucket uses the strictest rate limit
 * among its roles that set one, else the default; a route with its own limit adds a second bucket
 * for (route, identity). A request must find a token in every bucket that applies, so the
 * strictest limit is the one that binds. Buckets are keyed by identity name, never by address.
 */
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/compile.ts';
import type { BucketSpec } from './bucket.ts';

export interface LimitCheck {
  key: string;
  spec: BucketSpec;
}

export interface LimitPlan {
  checks: readonly LimitCheck[];
  concurrencyKey: string;
  maxConcurrent: number;
}

/** Lower sustained rate is stricter; on a tie, the smaller burst. */
export function stricter(a: BucketSpec, b: BucketSpec): BucketSpec {
  const ra = a.rate / a.perMs;
  const rb = b.rate / b.perMs;
  if (ra !== rb) return ra < rb ? a : b;
  return a.burst <= b.burst ? a : b;
}

export interface LimitPolicy {
  plan(name: string, roles: readonly string[], route: string | undefined): LimitPlan;
}

export function compileLimits(c: BrokerConfig): LimitPolicy {
  const n = settingsOf(c);
  const defaultSpec: BucketSpec = n.rateLimit;
  const roleSpecs: ReadonlyMap<string, BucketSpec> = n.roleRateLimits;
  const roleConcurrency = new Map<string, number>();
  for (const [role, r] of Object.entries(c.roles)) if (r.maxConcurrent) roleConcurrency.set(role, r.maxConcurrent);
  const routeSpecs: ReadonlyMap<string, BucketSpec> = n.routeRateLimits;

  // Plans depend only on (roles, route): cache them, so the hot path allocates nothing new.
  const cache = new Map<string, { spec: BucketSpec; routeSpec: BucketSpec | undefined; max: number }>();
  const shape = (roles: readonly string[], route: string | undefined) => {
    const id = `${route ?? ''}\u0000${roles.join('\u0000')}`;
    let s = cache.get(id);
    if (!s) {
      let spec: BucketSpec | undefined;
      let max: number | undefined;
      for (const role of roles) {
        const rs = roleSpecs.get(role);
        if (rs) spec = spec ? stricter(spec, rs) : rs;
        const rc = roleConcurrency.get(role);
        if (rc !== undefined) max = max === undefined ? rc : Math.min(max, rc);
      }
      s = { spec: spec ?? defaultSpec, routeSpec: route === undefined ? undefined : routeSpecs.get(route), max: max ?? c.maxConcurrent };
      if (cache.size < 10_000) cache.set(id, s);
    }
    return s;
  };

  return {
    plan(name, roles, route) {
      const s = shape(roles, route);
      const checks: LimitCheck[] = [{ key: `rl:id:${name}`, spec: s.spec }];
      if (s.routeSpec && route !== undefined) checks.push({ key: `rl:rt:${route}:${name}`, spec: s.routeSpec });
      return { checks, concurrencyKey: `cc:${name}`, maxConcurrent: s.max };
    },
  };
}
