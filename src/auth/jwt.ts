/**
 * OAuth2 / OIDC bearer tokens: a JWT checked against a JWKS (an https URL, with key rotation, or a
 * file) and mapped to an identity (name + roles). Asymmetric algorithms only. Settings are checked
 * once, when the verifier is built; `verify` never throws: its verdict says why a token is refused,
 * and the caller answers 401, or 503 for 'unavailable'.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import {
  createLocalJWKSet, createRemoteJWKSet, customFetch, decodeProtectedHeader, errors, jwtVerify,
  type FetchImplementation, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions,
} from 'jose';
import { BrokerError } from '../errors.ts';

export interface JwtSettings {
  /** When set, the token's "typ" header must be this (e.g. "at+jwt", RFC 9068), so an ID token cannot pass as an access token. */
  typ?: string;
  /** https:// URL (http:// only for loopback hosts: 127.0.0.0/8, ::1, localhost) of a JWKS. Exactly one of jwksUrl / jwksFile. */
  jwksUrl?: string;
  /** A JWKS JSON file, read when the verifier is created (the broker rebuilds the verifier on reload). */
  jwksFile?: string;
  /** PEM CA bundle to verify an https JWKS server with, instead of the system store: a file, or the PEM text itself. */
  jwksCa?: string;
  issuer: string;
  audience: readonly string[];
  /** Allowed algorithms; asymmetric only. */
  algorithms: readonly string[];
  clockSkewSec: number;
  /** Claim holding the identity name, e.g. 'sub' or 'client_id'; dotted paths allowed ('ext.partner'). */
  nameClaim: string;
  /** Claim holding roles: an array of strings or a space-separated string; dotted paths allowed ('realm_access.roles'). Missing = no roles. */
  rolesClaim: string;
  cacheMaxAgeMs: number;
  cooldownMs: number;
  timeoutMs: number;
}

export interface JwtIdentity { readonly name: string; readonly roles: readonly string[]; readonly issuer: string; readonly tokenId?: string; readonly expiresAt?: Date }

export type JwtResult =
  | { ok: true; identity: JwtIdentity }
  | { ok: false; reason: 'malformed' | 'algorithm' | 'signature' | 'expired' | 'claims' | 'no-key' | 'unavailable'; detail: string };

export interface JwtVerifier { verify(token: string): Promise<JwtResult> }

/** The asymmetric algorithms accepted in config ('Ed25519' is jose 6's fully-specified name for EdDSA over Ed25519). */
export const JWT_ALGORITHMS: readonly string[] = Object.freeze(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']);

type Reason = Extract<JwtResult, { ok: false }>['reason'];

const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_JWKS_BYTES = 1024 * 1024;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$/;
const ROLE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const MAX_ROLES = 64;
const TOKEN_ID = /^[\x21-\x7e]{1,128}$/;

/** A key lookup that failed, classified where it happened: inside the key resolver. */
class KeyLookupFailed extends Error {
  readonly reason: Reason;
  constructor(reason: Reason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** The JWKS server could not be read (network, status, size); jose passes it through untouched. */
class JwksFetchFailed extends Error {}

/** Throws BrokerError('BRK_ERR_CONFIG_INVALID') listing every problem with the settings. */
export function createJwtVerifier(s: JwtSettings): JwtVerifier {
  const { problems, url, ca, fileJwks } = checkSettings(s);
  if (problems.length > 0) {
    throw new BrokerError('BRK_ERR_CONFIG_INVALID', `auth.jwt has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  const keys = fileJwks !== undefined
    ? classified(createLocalJWKSet(fileJwks), `file ${s.jwksFile}`)
    : classified(createRemoteJWKSet(url!, {
      timeoutDuration: Math.ceil(s.timeoutMs),
      cooldownDuration: s.cooldownMs,
      cacheMaxAge: s.cacheMaxAgeMs,
      [customFetch]: jwksFetch(ca),
    }), `${url!.origin}${url!.pathname}`);
  const options: JWTVerifyOptions = {
    algorithms: [...s.algorithms],
    issuer: s.issuer,
    audience: [...s.audience],
    clockTolerance: s.clockSkewSec,
    requiredClaims: ['exp'],
    ...(s.typ !== undefined ? { typ: s.typ } : {}),
  };
  const { nameClaim, rolesClaim, issuer } = s;
  return Object.freeze({
    async verify(token: string): Promise<JwtResult> {
      if (typeof token !== 'string' || token.length === 0) return refuse('malformed', 'empty token');
      if (token.length > MAX_TOKEN_CHARS) return refuse('malformed', `token longer than ${MAX_TOKEN_CHARS} characters`);
      if (!COMPACT_JWS.test(token)) return refuse('malformed', 'not a compact JWS (three base64url parts separated by dots)');
      let payload: JWTPayload;
      try {
        payload = await verifyPayload(token, keys, options);
      } catch (err) {
        return refusal(err, token);
      }
      return toIdentity(payload, nameClaim, rolesClaim, issuer);
    },
  });
}

/** jwtVerify; when several JWKS keys fit a token without "kid", the first whose signature verifies wins. */
async function verifyPayload(token: string, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, keys, options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const key of err) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (e) {
        if (!(e instanceof errors.JWSSignatureVerificationFailed)) throw e;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/** Wraps a jose key resolver so a failed lookup says whether the key is unknown or the JWKS unreachable. */
function classified(resolve: JWTVerifyGetKey, source: string): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await resolve(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      const which = `kid ${shown(header.kid)} and alg ${shown(header.alg)}`;
      if (err instanceof errors.JWKSNoMatchingKey) throw new KeyLookupFailed('no-key', `no key in the JWKS for ${which}`);
      if (err instanceof JwksFetchFailed || err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof errors.JOSEError && err.code === 'ERR_JOSE_GENERIC')) {
        throw new KeyLookupFailed('unavailable', `JWKS ${source} unavailable: ${message(err)}`);
      }
      throw new KeyLookupFailed('no-key', `the JWKS key for ${which} cannot be used: ${message(err)}`);
    }
  };
}

function refusal(err: unknown, token: string): JwtResult {
  if (err instanceof KeyLookupFailed) return refuse(err.reason, err.message);
  if (!(err instanceof errors.JOSEError)) return refuse('no-key', `the signing key cannot be used: ${message(err)}`);
  switch (err.code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return refuse('algorithm', `algorithm ${headerAlg(token)} is not allowed`);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return refuse('signature', 'the signature does not verify');
    case 'ERR_JWT_EXPIRED': {
      const exp = (err as errors.JWTExpired).payload.exp;
      return refuse('expired', typeof exp === 'number' ? `token expired at ${new Date(exp * 1000).toISOString()}` : 'token expired');
    }
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': return refuse('claims', err.message);
    default: return refuse('malformed', err.message);
  }
}

function toIdentity(p: JWTPayload, nameClaim: string, rolesClaim: string, issuer: string): JwtResult {
  const name = claim(p, nameClaim);
  if (typeof name !== 'string') return refuse('claims', `claim "${nameClaim}" (the identity name) is missing or not a string`);
  if (!NAME.test(name)) return refuse('claims', `claim "${nameClaim}" is not a usable name: 1-128 letters, digits, ".", "_", "@", ":" or "-"`);
  const identity: JwtIdentity = {
    name,
    roles: Object.freeze(rolesOf(claim(p, rolesClaim))),
    issuer,
    ...(typeof p.jti === 'string' && TOKEN_ID.test(p.jti) ? { tokenId: p.jti } : {}),
    ...(typeof p.exp === 'number' ? { expiresAt: new Date(p.exp * 1000) } : {}),
  };
  return { ok: true, identity: Object.freeze(identity) };
}

/** A claim by exact name (URL-named claims hold dots), else by dotted path through nested objects. */
function claim(p: JWTPayload, path: string): unknown {
  if (Object.hasOwn(p, path)) return p[path];
  let v: unknown = p;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Valid role strings, deduplicated, at most MAX_ROLES; anything else is dropped. */
function rolesOf(v: unknown): string[] {
  const list: unknown[] = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : [];
  const roles = new Set<string>();
  for (const r of list) {
    if (roles.size === MAX_ROLES) break;
    if (typeof r === 'string' && ROLE.test(r)) roles.add(r);
  }
  return [...roles];
}

/** fetch for jose over undici: optional private CA, no redirects, body capped at MAX_JWKS_BYTES. */
function jwksFetch(ca: string | undefined): FetchImplementation {
  // Fetches are minutes apart: idle connections are closed soon, so a replaced verifier leaves nothing open.
  const dispatcher = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 1000, ...(ca === undefined ? {} : { connect: { ca } }) });
  return async (url, init) => {
    try {
      const headers: Record<string, string> = {};
      init.headers.forEach((value, key) => (headers[key] = value));
      const res = await request(url, { method: 'GET', headers, signal: init.signal, dispatcher });
      if (res.statusCode !== 200) {
        discard(res.body);
        throw new JwksFetchFailed(`HTTP status ${res.statusCode}, expected 200`);
      }
      if (Number(res.headers['content-length']) > MAX_JWKS_BYTES) {
        discard(res.body);
        throw new JwksFetchFailed(`response larger than ${MAX_JWKS_BYTES} bytes`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_JWKS_BYTES) {
          discard(res.body);
          throw new JwksFetchFailed(`response larger than ${MAX_JWKS_BYTES} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return new Response(Buffer.concat(chunks).toString('utf8'), { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      if (init.signal.aborted) throw init.signal.reason; // jose turns the TimeoutError into ERR_JWKS_TIMEOUT
      if (err instanceof JwksFetchFailed) throw err;
      throw new JwksFetchFailed(message(err), { cause: err });
    }
  };
}

/** Drops a response body we will not read; the abort it raises is expected. */
function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

interface Checked { problems: string[]; url?: URL; ca?: string; fileJwks?: JSONWebKeySet }

function checkSettings(s: JwtSettings): Checked {
  const problems: string[] = [];
  const out: Checked = { problems };
  const hasUrl = typeof s.jwksUrl === 'string' && s.jwksUrl !== '';
  const hasFile = typeof s.jwksFile === 'string' && s.jwksFile !== '';
  if (hasUrl === hasFile) problems.push('auth.jwt: give exactly one of jwksUrl and jwksFile');
  if (hasUrl) {
    const u = URL.canParse(s.jwksUrl!) ? new URL(s.jwksUrl!) : undefined;
    if (!u) problems.push(`auth.jwt.jwksUrl: "${s.jwksUrl}" is not a URL`);
    else if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname))) {
      problems.push(`auth.jwt.jwksUrl: ${u.origin} must be https (http only on loopback): the signing keys must not travel in the clear`);
    } else if (u.username || u.password) problems.push('auth.jwt.jwksUrl: credentials in the URL are not allowed');
    else out.url = u;
  }
  if (s.jwksCa !== undefined) {
    if (!hasUrl || out.url?.protocol !== 'https:') problems.push('auth.jwt.jwksCa: only used with an https jwksUrl');
    const ca = readCa(s.jwksCa);
    if (ca.problem !== undefined) problems.push(`auth.jwt.jwksCa: ${ca.problem}`);
    else out.ca = ca.pem;
  }
  if (hasFile && !hasUrl) {
    const f = readJwksFile(s.jwksFile!);
    if (f.problem !== undefined) problems.push(`auth.jwt.jwksFile: ${f.problem}`);
    else out.fileJwks = f.jwks;
  }
  if (typeof s.issuer !== 'string' || s.issuer === '') problems.push('auth.jwt.issuer: give the exact "iss" of the tokens');
  if (!Array.isArray(s.audience) || s.audience.length === 0 || s.audience.some((a) => typeof a !== 'string' || a === '')) {
    problems.push('auth.jwt.audience: give one or more non-empty audiences');
  }
  if (!Array.isArray(s.algorithms) || s.algorithms.length === 0) problems.push(`auth.jwt.algorithms: give one or more of ${JWT_ALGORITHMS.join(', ')}`);
  for (const a of Array.isArray(s.algorithms) ? s.algorithms : []) {
    if (JWT_ALGORITHMS.includes(a)) continue;
    if (/^none$/i.test(a)) problems.push('auth.jwt.algorithms: "none" means unsigned tokens and is never accepted');
    else if (/^HS/i.test(a)) problems.push(`auth.jwt.algorithms: ${a} is symmetric (a shared secret, not a JWKS public key) and is never accepted`);
    else problems.push(`auth.jwt.algorithms: unknown algorithm "${a}" (use ${JWT_ALGORITHMS.join(', ')})`);
  }
  for (const k of ['nameClaim', 'rolesClaim'] as const) {
    if (typeof s[k] !== 'string' || s[k] === '') problems.push(`auth.jwt.${k}: give a claim name`);
  }
  const durations = [['clockSkew', s.clockSkewSec], ['cacheMaxAge', s.cacheMaxAgeMs], ['cooldown', s.cooldownMs]] as const;
  for (const [k, v] of durations) if (!Number.isFinite(v) || v < 0) problems.push(`auth.jwt.${k}: must be a duration of zero or more`);
  if (!Number.isFinite(s.timeoutMs) || s.timeoutMs <= 0) problems.push('auth.jwt.timeout: must be a duration above zero');
  return out;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || (isIPv4(hostname) && hostname.startsWith('127.'));
}

/** `value` is a file, or PEM text; every certificate in it must parse. */
function readCa(value: string): { pem?: string; problem?: string } {
  let pem = value;
  if (!value.trimStart().startsWith('-----BEGIN')) {
    try {
      pem = readFileSync(value, 'utf8');
    } catch (err) {
      return { problem: `error reading file ${value}: ${message(err)}` };
    }
  }
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certs.length === 0) return { problem: 'no PEM certificate found' };
  try {
    for (const c of certs) new X509Certificate(c);
  } catch (err) {
    return { problem: `a certificate does not parse: ${message(err)}` };
  }
  return { pem };
}

function readJwksFile(file: string): { jwks?: JSONWebKeySet; problem?: string } {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return { problem: `error reading JWKS file ${file}: ${message(err)}` };
  }
  const keys = json !== null && typeof json === 'object' ? (json as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys) || keys.length === 0) return { problem: `${file} is not a JWKS: an object with a non-empty "keys" array` };
  for (const [i, k] of keys.entries()) {
    const kty = k !== null && typeof k === 'object' ? (k as { kty?: unknown }).kty : undefined;
    if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return { problem: `${file}: keys[${i}] must be an RSA, EC or OKP public key (kty ${shown(kty)})` };
    if (Object.hasOwn(k as object, 'd')) return { problem: `${file}: keys[${i}] is a private key; give only the public part` };
  }
  try {
    createLocalJWKSet(json as JSONWebKeySet);
  } catch (err) {
    return { problem: `${file} is not a valid JWKS: ${message(err)}` };
  }
  return { jwks: json as JSONWebKeySet };
}

function headerAlg(token: string): string {
  try {
    return shown(decodeProtectedHeader(token).alg);
  } catch {
    return '(unreadable)';
  }
}

/** A header value for a log sentence: quoted, cut short, control characters escaped. */
function shown(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v) : 'none';
}

/** An error for a log sentence: its message and its cause's, one line, cut short. */
function message(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? ` (${err.cause.message})` : '';
  const text = `${err.message || err.name}${cause}`.replace(/[\x00-\x1f\x7f]+/g, ' ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function refuse(reason: Reason, detail: string): JwtResult {
  return { ok: false, reason, detail };
}
