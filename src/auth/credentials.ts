/**
 * The credentials a request carries, read from its headers. Pure: no verification here.
 * `Authorization` holds either a bearer token or Basic credentials (RFC 6750, RFC 7617); an API key
 * travels in its own header (auth.apiKeyHeader).
 */

export type Authorization =
  | { scheme: 'bearer'; token: string }
  | { scheme: 'basic'; user: string; password: string }
  | { scheme: 'other'; name: string }
  | { scheme: 'malformed'; detail: string };

/** RFC 6750 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Longest Authorization value read (a JWT with many claims stays far below). */
export const MAX_AUTHORIZATION = 16 * 1024;

export function parseAuthorization(value: string): Authorization {
  if (value.length > MAX_AUTHORIZATION) return { scheme: 'malformed', detail: `Authorization longer than ${MAX_AUTHORIZATION} characters` };
  const space = value.indexOf(' ');
  if (space <= 0) return { scheme: 'malformed', detail: 'Authorization is not "<scheme> <credentials>"' };
  const scheme = value.slice(0, space).toLowerCase();
  const rest = value.slice(space + 1).trim();
  if (scheme === 'bearer') {
    return B64TOKEN.test(rest) ? { scheme: 'bearer', token: rest } : { scheme: 'malformed', detail: 'bearer token has characters a token cannot have' };
  }
  if (scheme === 'basic') {
    if (!BASE64.test(rest)) return { scheme: 'malformed', detail: 'Basic credentials are not base64' };
    const decoded = Buffer.from(rest, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return { scheme: 'malformed', detail: 'Basic credentials are not "user:password"' };
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f\ufffd]/.test(decoded)) return { scheme: 'malformed', detail: 'Basic credentials hold control characters or invalid UTF-8' };
    return { scheme: 'basic', user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return { scheme: 'other', name: scheme };
}
