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

interface Signing {
  readonly kid: string;
  readonly header: string;
  readonly digest: 'sha256' | null;
  readonly options: { key: KeyObject; dsaEncoding: 'ieee-p1363' };
}

function signing(k: AssertionKey): Signing {
  return { kid: k.kid, header: b64url(JSON.stringify({ alg: k.alg, kid: k.kid, typ: 'JWT' })), digest: k.alg === 'ES256' ? 'sha256' : null, options: { key: k.key, dsaEncoding: 'ieee-p1363' } };
}

/**
 * `next`: a key published ahead of use (pki rotate assertion-key --publish-ahead): tokens signed
 * from its activateAt on use it (the cached ones signed before stay valid: the old key is still published).
 */
export function assertionSigner(k: AssertionKey, o: { issuer: string; ttlMs: number }, next?: AssertionKey & { activateAt: number }): AssertionSigner {
  if (!(o.ttlMs >= 1000)) throw new RangeError('assertion ttl must be at least 1s');
  let active = signing(k);
  const upcoming = next === undefined ? undefined : signing(next);
  const activateAt = next?.activateAt ?? Infinity;
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
    if (nowMs >= activateAt && upcoming !== undefined) active = upcoming;
    const input = `${active.header}.${b64url(JSON.stringify(claims))}`;
    const sig = sign(active.digest, Buffer.from(input), active.options).toString('base64url');
    // a token signed before the next key's activation is renewed then, so that tokens switch keys together
    const renewAt = iat * 1000 + halfMs;
    return { token: `${input}.${sig}`, renewAt: nowMs < activateAt ? Math.min(renewAt, activateAt) : renewAt };
  };

  return {
    get kid() {
      return Date.now() >= activateAt && upcoming !== undefined ? upcoming.kid : active.kid;
    },
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
