/**
 * The credentials stage's adapter: reads the credentials a route requires, asks the verifiers
 * (authenticate.ts, no I/O of its own beyond what they do), and hands the one Caller on, or refuses
 * with 401/503, a challenge, an auth log line, a credential event (metrics, alerts) and a failure
 * counted like a failed handshake (bans).
 */
import type { Logger } from 'pino';
import type { RequestContext } from '../request/index.ts';
import { connectionId } from '../request/index.ts';
import type { HttpErrorCode } from '../errors.ts';
import type { AuthMethod } from '../config/index.ts';
import { certCaller, type Caller, type Principal } from '../identity/index.ts';
import { channels, type CredentialEvent } from '../channels.ts';
import { authenticate, type AuthRefusal, type Verifiers } from './authenticate.ts';

export interface AuthGateDeps {
  verifiers: Verifiers;
  /** Lower-case header name carrying API keys. */
  apiKeyHeader: string;
  basicRealm: string;
  /**
   * What a caller without a certificate gets in WWW-Authenticate when a credential is missing, on
   * every route alike (see anonymousChallenge); undefined: no challenge.
   */
  anonymousChallenge?: string | undefined;
  authLog: Logger;
  /** A refused credential from `ip` (counted like a failed handshake). */
  onFailure(ip: string): void;
  /** Whether a credential id was revoked on another replica (its keys.json here may lag). */
  isKeyRevoked(keyId: string): boolean;
}

/** Refusals that count like a failed handshake (bans, alerts): a wrong credential, not a missing one. */
export const COUNTED_REFUSALS: ReadonlySet<string> = new Set(['BRK_ERR_AUTH_INVALID', 'BRK_ERR_AUTH_MISMATCH']);

/** Answers a refusal (the pipeline's: it also lets an unread body drain). */
export type Refuse = (ctx: RequestContext, code: HttpErrorCode, detail: string) => void;

export type AuthGate = (ctx: RequestContext, route: { name: string; auth: readonly AuthMethod[] }, next: (ctx: RequestContext, caller: Caller) => void, refuse: Refuse) => void;

/** How many times a header occurs (a repeated credential header is refused, not guessed at). */
function occurrences(raw: readonly string[], lower: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === lower.length && name.toLowerCase() === lower) n++;
  }
  return n;
}

function challenge(methods: readonly AuthMethod[], realm: string, r: AuthRefusal): string | undefined {
  if (methods.includes('jwt')) return r.method === 'jwt' && r.code === 'BRK_ERR_AUTH_INVALID' ? `Bearer realm="${realm}", error="invalid_token"` : `Bearer realm="${realm}"`;
  if (methods.includes('basic')) return `Basic realm="${realm}", charset="UTF-8"`;
  return undefined;
}

/**
 * The challenge set for callers without a certificate, the same on every path: one challenge per
 * scheme some route accepts (Bearer for jwt, Basic for basic; an API key or a certificate has no
 * HTTP challenge). Sent on every anonymous 401, for an unknown path too, so that an answer tells
 * how the broker can be authenticated to, not which paths are routes or what each one takes.
 */
export function anonymousChallenge(routes: ReadonlyArray<{ auth: readonly AuthMethod[] }>, realm: string): string | undefined {
  const challenges: string[] = [];
  if (routes.some((r) => r.auth.includes('jwt'))) challenges.push(`Bearer realm="${realm}"`);
  if (routes.some((r) => r.auth.includes('basic'))) challenges.push(`Basic realm="${realm}", charset="UTF-8"`);
  return challenges.length ? challenges.join(', ') : undefined;
}

export function authGate(d: AuthGateDeps): AuthGate {
  return (ctx, route, next, refuse) => {
    const cert: Principal | undefined = ctx.principal;
    const methods = route.auth;
    // Certificate-only routes, the common case: decided once per connection.
    if (methods.length === 1 && methods[0] === 'mtls' && cert) return next(ctx, certCaller(cert));

    const raw = ctx.req.rawHeaders;
    const ip = ctx.req.socket.remoteAddress ?? '';
    const fail = (r: AuthRefusal) => {
      d.authLog.warn(
        { event: 'credential', outcome: 'refused', method: r.method, reason: r.reason, detail: r.detail, route: route.name, remoteIp: ip, reqId: ctx.id, connId: connectionId(ctx.req.socket), ...(r.name !== undefined ? { principal: r.name } : {}), ...(r.keyId !== undefined ? { keyId: r.keyId } : {}), ...(cert ? { serial: cert.serial } : {}) },
        'credential refused',
      );
      channels.credential.publish({ method: r.method, outcome: 'refused', reason: r.reason, remoteIp: ip, ...(r.name !== undefined ? { principal: r.name } : {}) } satisfies CredentialEvent);
      if (COUNTED_REFUSALS.has(r.code) && ip) d.onFailure(ip);
      // Without a certificate, a missing credential is answered alike on every route.
      const ch = cert === undefined && r.code === 'BRK_ERR_AUTH_REQUIRED' ? d.anonymousChallenge : challenge(methods, d.basicRealm, r);
      if (ch) ctx.setHeader('www-authenticate', ch);
      refuse(ctx, r.code, `${r.method}: ${r.detail}`);
    };
    const needsAuthorization = methods.includes('jwt') || methods.includes('basic');
    if (needsAuthorization && occurrences(raw, 'authorization') > 1) return fail({ ok: false, code: 'BRK_ERR_AUTH_INVALID', method: methods.includes('jwt') ? 'jwt' : 'basic', reason: 'malformed', detail: 'more than one Authorization header' });
    if (methods.includes('apiKey') && occurrences(raw, d.apiKeyHeader) > 1) return fail({ ok: false, code: 'BRK_ERR_AUTH_INVALID', method: 'apiKey', reason: 'malformed', detail: `more than one ${d.apiKeyHeader} header` });
    const apiKey = ctx.req.headers[d.apiKeyHeader];
    authenticate(methods, { cert, authorization: ctx.req.headers.authorization, apiKey: typeof apiKey === 'string' ? apiKey : undefined }, d.verifiers).then(
      (outcome) => {
        if (!outcome.ok) return fail(outcome);
        const caller = outcome.caller;
        if (caller.keyId !== undefined && d.isKeyRevoked(caller.keyId)) {
          const method = methods.includes('basic') ? 'basic' : 'apiKey';
          return fail({ ok: false, code: 'BRK_ERR_AUTH_INVALID', method, reason: 'revoked', detail: 'revoked (announced by another replica)', name: caller.name, keyId: caller.keyId });
        }
        if (channels.credential.hasSubscribers) {
          for (const m of methods) if (m !== 'mtls') channels.credential.publish({ method: m, outcome: 'ok', remoteIp: ip, principal: caller.name } satisfies CredentialEvent);
        }
        next(ctx, caller);
      },
      (err: unknown) => {
        d.authLog.error({ event: 'credential', outcome: 'error', route: route.name, remoteIp: ip, reqId: ctx.id, connId: connectionId(ctx.req.socket), err: { message: (err as Error).message } }, 'credential check failed');
        refuse(ctx, 'BRK_ERR_HTTP_INTERNAL', `credential check failed: ${(err as Error).message}`);
      },
    );
  };
}
