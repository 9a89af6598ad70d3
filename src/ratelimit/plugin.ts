/**
 * The Fastify side of rate limiting: after the ACL, take a token from every bucket that applies
 * and claim an in-flight slot; answer 429 with Retry-After and RateLimit-* headers, or 503 when
 * the shared store is down and the policy is to fail closed. Nothing is forwarded when refused.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpErrorCode } from '../errors.ts';
import type { LimitPolicy } from './policy.ts';
import type { SharedStore, Verdict } from './store.ts';

export type Refuse = (request: FastifyRequest, reply: FastifyReply, code: HttpErrorCode, detail: string) => void;

export interface Gate {
  (request: FastifyRequest, reply: FastifyReply, who: { name: string; roles: readonly string[] }, route: string, next: () => void, refuse: Refuse): void;
}

function setHeaders(reply: FastifyReply, v: Verdict): void {
  if (v.degraded) return;
  reply.header('ratelimit-limit', v.limit).header('ratelimit-remaining', v.remaining).header('ratelimit-reset', Math.ceil(v.resetMs / 1000));
}

export function limitGate(policy: LimitPolicy, store: SharedStore): Gate {
  return (request, reply, who, route, next, refuse) => {
    const plan = policy.plan(who.name, who.roles, route);
    const afterTake = (v: Verdict) => {
      setHeaders(reply, v);
      if (!v.allowed) {
        if (v.degraded) return refuse(request, reply, 'BRK_ERR_RATELIMIT_UNAVAILABLE', 'shared store unreachable, failing closed');
        reply.header('retry-after', Math.max(1, Math.ceil(v.retryAfterMs / 1000)));
        return refuse(request, reply, 'BRK_ERR_RATE_LIMITED', `over the limit on ${route} (${v.limit} burst)`);
      }
      const afterAcquire = (ok: boolean) => {
        if (!ok) {
          reply.header('retry-after', 1);
          return refuse(request, reply, 'BRK_ERR_CONCURRENCY_LIMITED', `more than ${plan.maxConcurrent} in flight`);
        }
        let released = false;
        const socket = request.raw.socket;
        const release = () => {
          if (released) return;
          released = true;
          // A keep-alive connection carries up to maxRequestsPerConnection requests: leaving one
          // listener per request on it would pile them up for the connection's whole life.
          reply.raw.off('close', release);
          socket.off('close', release);
          store.release(plan.concurrencyKey);
        };
        reply.raw.once('close', release);
        socket.once('close', release);
        next();
      };
      const a = store.acquire(plan.concurrencyKey, plan.maxConcurrent);
      if (typeof a === 'boolean') afterAcquire(a);
      else a.then(afterAcquire, () => afterAcquire(false));
    };
    const t = store.take(plan.checks);
    if ('then' in t) t.then(afterTake, () => refuse(request, reply, 'BRK_ERR_RATELIMIT_UNAVAILABLE', 'limit store failed'));
    else afterTake(t);
  };
}
