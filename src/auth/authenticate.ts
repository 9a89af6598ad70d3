/**
 * A route's credentials → one Caller, or a coded refusal. Every method the route lists is required;
 * missing ones are found before any hash or signature is checked; every credential (and the
 * connection's certificate, when there is one) must name the same identity.
 */
import type { AuthMethod } from '../config/index.ts';
import { combine, type Caller, type Principal, type Vouch } from '../identity/index.ts';
import { parseAuthorization, type Authorization } from './credentials.ts';

/** What the API key / Basic store answers (src/auth/keyring.ts). */
export type KeyCheck =
  | { ok: true; identity: Vouch & { readonly keyId: string } }
  | { ok: false; reason: string; detail: string; keyId?: string; name?: string };

/** What the bearer token verifier answers (src/auth/jwt.ts). */
export type TokenCheck = { ok: true; identity: Vouch } | { ok: false; reason: string; detail: string };

export interface Verifiers {
  keys: { verifyApiKey(key: string): Promise<KeyCheck>; verifyBasic(user: string, password: string): Promise<KeyCheck>; revokedIds(): string[] };
  jwt?: { verify(token: string): Promise<TokenCheck> };
}

export interface Presented {
  cert?: Principal | undefined;
  authorization?: string | undefined;
  apiKey?: string | undefined;
}

export type AuthCode = 'BRK_ERR_AUTH_REQUIRED' | 'BRK_ERR_AUTH_INVALID' | 'BRK_ERR_AUTH_MISMATCH' | 'BRK_ERR_AUTH_UNAVAILABLE';

export interface AuthRefusal {
  ok: false;
  code: AuthCode;
  /** The credential that failed (for a mismatch, the route's methods joined). */
  method: string;
  reason: string;
  detail: string;
  /** Who the refused credential claimed to be, when known (for the auth log). */
  name?: string;
  keyId?: string;
}

export type AuthOutcome = { ok: true; caller: Caller } | AuthRefusal;

const refuse = (code: AuthCode, method: string, reason: string, detail: string, extra: { name?: string | undefined; keyId?: string | undefined } = {}): AuthRefusal => ({
  ok: false,
  code,
  method,
  reason,
  detail,
  ...(extra.name !== undefined ? { name: extra.name } : {}),
  ...(extra.keyId !== undefined ? { keyId: extra.keyId } : {}),
});

/** Checks the presence and shape of every required credential; returns the parsed Authorization. */
function present(methods: readonly AuthMethod[], p: Presented): AuthRefusal | Authorization | undefined {
  const auth = p.authorization === undefined ? undefined : parseAuthorization(p.authorization);
  for (const m of methods) {
    if (m === 'mtls' && !p.cert) return refuse('BRK_ERR_AUTH_REQUIRED', m, 'missing', 'no client certificate on this connection');
    if (m === 'apiKey' && !p.apiKey) return refuse('BRK_ERR_AUTH_REQUIRED', m, 'missing', 'no API key header');
    if (m === 'jwt' || m === 'basic') {
      const want = m === 'jwt' ? 'bearer' : 'basic';
      if (auth === undefined) return refuse('BRK_ERR_AUTH_REQUIRED', m, 'missing', `no Authorization: ${want === 'bearer' ? 'Bearer' : 'Basic'} header`);
      if (auth.scheme === 'malformed') return refuse('BRK_ERR_AUTH_INVALID', m, 'malformed', auth.detail);
      if (auth.scheme !== want) return refuse('BRK_ERR_AUTH_REQUIRED', m, 'missing', `Authorization scheme "${auth.scheme === 'other' ? auth.name : auth.scheme}" where ${want} is required`);
    }
  }
  return auth;
}

export async function authenticate(methods: readonly AuthMethod[], p: Presented, v: Verifiers): Promise<AuthOutcome> {
  const auth = present(methods, p);
  if (auth !== undefined && 'ok' in auth) return auth;
  const vouches: Vouch[] = [];
  for (const m of methods) {
    if (m === 'mtls') {
      vouches.push(p.cert as Principal);
    } else if (m === 'apiKey') {
      const r = await v.keys.verifyApiKey(p.apiKey as string);
      if (!r.ok) return refuse('BRK_ERR_AUTH_INVALID', m, r.reason, r.detail, r);
      vouches.push(r.identity);
    } else if (m === 'basic' && auth?.scheme === 'basic') {
      const r = await v.keys.verifyBasic(auth.user, auth.password);
      if (!r.ok) return refuse('BRK_ERR_AUTH_INVALID', m, r.reason, r.detail, { name: auth.user, keyId: r.keyId });
      vouches.push(r.identity);
    } else if (m === 'jwt' && auth?.scheme === 'bearer') {
      if (!v.jwt) return refuse('BRK_ERR_AUTH_UNAVAILABLE', m, 'unconfigured', 'no auth.jwt settings');
      const r = await v.jwt.verify(auth.token);
      if (!r.ok) return refuse(r.reason === 'unavailable' ? 'BRK_ERR_AUTH_UNAVAILABLE' : 'BRK_ERR_AUTH_INVALID', m, r.reason, r.detail);
      vouches.push(r.identity);
    }
  }
  const c = combine(methods, vouches, p.cert);
  if (!c.ok) return refuse('BRK_ERR_AUTH_MISMATCH', methods.join('+'), 'mismatch', c.detail, { name: vouches[0]?.name });
  return c;
}
