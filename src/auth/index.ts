/**
 * Credentials beyond the client certificate: API keys and Basic credentials from the PKI store's
 * keys.json, bearer tokens checked against a JWKS. One set of verifiers per config generation.
 */
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf, type Settings } from '../config/index.ts';
import { storeLayout } from '../pki/layout.ts';
import { KeyRing } from './keyring.ts';
import { createJwtVerifier, type JwtSettings } from './jwt.ts';
import type { Verifiers } from './authenticate.ts';

export { authGate, type AuthGate } from './gate.ts';
export { authenticate, type Verifiers } from './authenticate.ts';

/**
 * Revoked credential ids travel between replicas in the same shared set as certificate serials,
 * under this prefix (a serial is plain hex, so the two never meet).
 */
export const REVOKED_KEY_PREFIX = 'key:';

/** Whether some route, or some forward rule (Proxy-Authorization), accepts API keys or Basic credentials: then keys.json is read. */
export function usesKeys(c: BrokerConfig): boolean {
  return c.routes.some((r) => r.auth.includes('apiKey') || r.auth.includes('basic')) || (c.forward?.rules ?? []).some((r) => r.auth.includes('apiKey') || r.auth.includes('basic'));
}

/** The store file holding API key and Basic credential hashes. */
export function keysFile(c: BrokerConfig): string {
  return storeLayout(c.pki.dir).keys;
}

export function jwtSettings(j: NonNullable<BrokerConfig['auth']['jwt']>, n: NonNullable<Settings['jwt']>): JwtSettings {
  return {
    ...(j.jwksUrl !== undefined ? { jwksUrl: j.jwksUrl } : {}),
    ...(j.jwksFile !== undefined ? { jwksFile: j.jwksFile } : {}),
    ...(j.jwksCa !== undefined ? { jwksCa: j.jwksCa } : {}),
    ...(j.typ !== undefined ? { typ: j.typ } : {}),
    issuer: j.issuer,
    audience: j.audience,
    algorithms: j.algorithms,
    clockSkewSec: n.clockSkewSec,
    nameClaim: j.nameClaim,
    rolesClaim: j.rolesClaim,
    cacheMaxAgeMs: n.cacheMaxAgeMs,
    cooldownMs: n.cooldownMs,
    timeoutMs: n.timeoutMs,
  };
}

/**
 * The verifiers for `c`. The keys file is re-read every time (a reload is how a revocation arrives);
 * a JWKS fetched from a URL is kept across reloads while the token settings stay the same, so a
 * reload does not make every replica fetch it again.
 */
export function buildVerifiers(c: BrokerConfig, previous?: { config: BrokerConfig; verifiers: Verifiers }): Verifiers {
  const keys = usesKeys(c) ? KeyRing.load(keysFile(c), { cacheTtlMs: settingsOf(c).authCacheTtlMs }) : KeyRing.empty();
  const j = c.auth.jwt;
  if (!j) return { keys };
  // A CA file may have changed on disk under the same settings: then build afresh.
  const same = previous?.verifiers.jwt && j.jwksUrl && !j.jwksCa && JSON.stringify(previous.config.auth.jwt) === JSON.stringify(j);
  return { keys, jwt: same ? previous.verifiers.jwt : createJwtVerifier(jwtSettings(j, settingsOf(c).jwt!)) };
}
