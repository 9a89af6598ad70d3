/**
 * Route ACL: a pure decision. Default deny: a route without roles admits nobody, an identity
 * without one of the route's roles gets nothing, a method the route does not list is refused.
 * GET implies HEAD (as in nginx's limit_except).
 */
import type { RouteConfig } from '../config/index.ts';

export interface RoutePolicy {
  readonly name: string;
  readonly roles: ReadonlySet<string>;
  /** Undefined: every method. */
  readonly methods: ReadonlySet<string> | undefined;
}

/** When allowed, `role` is the identity's role that granted it (for metrics). */
export type AclDecision = { allow: true; role: string } | { allow: false; reason: 'role' | 'method' };

export function compilePolicy(route: Pick<RouteConfig, 'name' | 'roles' | 'methods'>): RoutePolicy {
  const methods = route.methods ? new Set<string>(route.methods) : undefined;
  if (methods?.has('GET')) methods.add('HEAD');
  return Object.freeze({ name: route.name, roles: new Set(route.roles), methods });
}

export function decide(policy: RoutePolicy, roles: readonly string[], method: string): AclDecision {
  if (policy.methods && !policy.methods.has(method)) return { allow: false, reason: 'method' };
  for (const r of roles) if (policy.roles.has(r)) return { allow: true, role: r };
  return { allow: false, reason: 'role' };
}
