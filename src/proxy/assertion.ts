/**
 * The `jwt` identity format: a short-lived JWT (compact JWS) signed by the broker that tells the
 * upstream who called, bound to the client certificate (RFC 8705 `cnf` / `x5t#S256`).
 *
 * Signed synchronously with node:crypto (the request path cannot await), and cached per identity
 * object and audience: a token is reused until less than half of its lifetime is left, so signing
 * happens about once per identity per ttl/2, not per request. `jti` therefore names the token, not
 * the request. Keys come from the store (pki/assertion.ts); a new key means a new signer (reload).
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import type { IdentityHeaders } from './headers.ts';

export interface AssertionSigner {
  /** Compact JWS for this identity with aud = audience. */
  token(id: IdentityHeaders, audience: string): string;
  readonly kid: string;
}

export interface AssertionKey {
  kid: string;
  alg: 'ES256' | 'EdDSA';
  key: KeyObject;
}

interface Cached {
  token: string;
  /** ms since the epoch after which a fresh token is signed (half of the lifetime gone). */
  renewAt: number;
}

/** One identity's tokens: the first audience inline (nearly always the only one), others in a Map. */
interface PerIdentity {
  audience: string;
  cached: Cached;
  others?: Map<string, Cached>;
}

const HEX64 = /^[0-9a-f]{64}$/;

const b64url = (s: string) => Buffer.from(s).toString('base64url');

export function assertionSigner(k: AssertionKey, o: { issuer: string; ttlMs: number }): AssertionSigner {
  if (!(o.ttlMs >= 1000)) throw new RangeError('assertion ttl must be at least 1s');
  const header = b64url(JSON.stringify({ alg: k.alg, kid: k.kid, typ: 'JWT' }));
  const digest = k.alg === 'ES256' ? 'sha256' : null;
  const options = { key: k.key, dsaEncoding: 'ieee-p1363' as const };
  const ttlS = Math.ceil(o.ttlMs / 1000);
  const halfMs = (ttlS * 1000) / 2;
  const cache = new WeakMap<IdentityHeaders, PerIdentity>();

  const issue = (id: IdentityHeaders, audience: string, nowMs: number): Cached => {
    const iat = Math.floor(nowMs / 1000);
    const claims: Record<string, unknown> = {
      iss: o.issuer,
      sub: id.name,
      aud: audience,
      iat,
      exp: iat + ttlS,
      jti: randomBytes(16).toString('base64url'),
      roles: [...id.roles],
    };
    if (id.fingerprint !== undefined && HEX64.test(id.fingerprint)) claims.cnf = { 'x5t#S256': Buffer.from(id.fingerprint, 'hex').toString('base64url') };
    const input = `${header}.${b64url(JSON.stringify(claims))}`;
    const sig = sign(digest, Buffer.from(input), options).toString('base64url');
    return { token: `${input}.${sig}`, renewAt: iat * 1000 + halfMs };
  };

  return {
    kid: k.kid,
    token(id, audience) {
      const now = Date.now();
      const entry = cache.get(id);
      if (entry === undefined) {
        const cached = issue(id, audience, now);
        cache.set(id, { audience, cached });
        return cached.token;
      }
      if (entry.audience === audience) {
        if (now < entry.cached.renewAt) return entry.cached.token;
        entry.cached = issue(id, audience, now);
        return entry.cached.token;
      }
      const others = (entry.others ??= new Map());
      let c = others.get(audience);
      if (c === undefined || now >= c.renewAt) others.set(audience, (c = issue(id, audience, now)));
      return c.token;
    },
  };
}
