/**
 * Console sessions without server state: the cookie carries when the session started, when it was
 * last used and a random nonce, signed with HMAC-SHA256. Every broker process (with --workers each
 * worker answers on the shared admin port) derives the same key, so a session opened on one worker
 * holds on the others. The CSRF token is derived from the nonce, so it too is the same everywhere.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The cookie's name; Path=/console keeps it off the other admin endpoints. */
export const SESSION_COOKIE = 'broker_console';
/** A session unused this long is over (the next page asks for the token again). */
export const IDLE_MS = 30 * 60_000;
/** A session ends this long after login whatever its use. */
export const MAX_AGE_MS = 8 * 3_600_000;

export interface Session {
  /** The cookie value to send back (the idle clock restarted). */
  cookie: string;
  /** The per-session token the action forms carry. */
  csrf: string;
}

export interface Sessions {
  open(now?: number): Session;
  /** The session a cookie value names, refreshed; undefined when it is missing, forged or expired. */
  check(cookie: string | undefined, now?: number): Session | undefined;
  /** Whether a form's CSRF token is the session's (compared in constant time). */
  csrfMatches(session: Session, given: unknown): boolean;
}

const b64 = (b: Buffer) => b.toString('base64url');

/** `key`: the signing key (server.ts derives it from secrets every worker holds). */
export function sessions(key: Buffer): Sessions {
  const mac = (s: string) => createHmac('sha256', key).update(s).digest();
  const make = (issued: number, last: number, nonce: string): Session => {
    const body = `v1.${issued}.${last}.${nonce}`;
    return { cookie: `${body}.${b64(mac(body))}`, csrf: b64(mac(`csrf.${nonce}`)) };
  };
  const equal = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);
  return {
    open(now = Date.now()) {
      return make(now, now, b64(randomBytes(18)));
    },
    check(cookie, now = Date.now()) {
      const parts = (cookie ?? '').split('.');
      if (parts.length !== 5 || parts[0] !== 'v1') return undefined;
      const [, issuedText, lastText, nonce, sig] = parts as [string, string, string, string, string];
      if (!equal(Buffer.from(sig, 'base64url'), mac(parts.slice(0, 4).join('.')))) return undefined;
      const issued = Number(issuedText);
      const last = Number(lastText);
      if (!(now - last < IDLE_MS && now - issued < MAX_AGE_MS && last <= now + 60_000)) return undefined;
      return make(issued, now, nonce);
    },
    csrfMatches(session, given) {
      return typeof given === 'string' && equal(Buffer.from(given), Buffer.from(session.csrf));
    },
  };
}

/** One cookie's value from a Cookie header (the first of that name). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
