/**
 * What `broker config print` must never show. The config names secrets by file (passwordFile,
 * tokenFile, key paths), and those paths are printed; but some settings carry a secret inline:
 * collector headers (API keys), webhook URLs (their path is often the credential), URL user info,
 * anything named like a password, token or key, and PEM blocks. Those are replaced, erring wide:
 * a setting wrongly hidden costs a look at the file, a secret wrongly shown cannot be taken back.
 */
export const REDACTED = '<redacted>';

/** Names of settings whose value is the secret itself (not a file holding it, not a header name). */
const SECRET_NAME = /pass(word|phrase)?|secret|token|api-?key|authorization|cookie|credential|bearer/i;
const NOT_SECRET = /(File|Header|Realm|Prefix|Claim)$/;

function redactUrl(text: string, wholePath: boolean): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return text;
  }
  if (!u.host) return text;
  const hidden = Boolean(u.username || u.password || u.search || u.hash || (wholePath && u.pathname !== '/'));
  if (!hidden) return text;
  // Built by hand: URL would percent-encode the marker.
  const auth = u.username || u.password ? `${REDACTED}@` : '';
  const path = wholePath && u.pathname !== '/' ? `/${REDACTED}` : u.pathname;
  return `${u.protocol}//${auth}${u.host}${path}${u.search ? `?${REDACTED}` : ''}`;
}

/** A deep copy of `value` with every secret-like setting replaced by REDACTED. */
export function redactSecrets(value: unknown, key = '', parentKey = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, key, parentKey));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactSecrets(v, k, key)]));
  }
  if (typeof value !== 'string' && typeof value !== 'number') return value;
  if (parentKey === 'headers') return REDACTED; // extra request headers: usually an API key
  if (SECRET_NAME.test(key) && !NOT_SECRET.test(key)) return REDACTED;
  if (typeof value === 'number') return value;
  if (value.includes('-----BEGIN')) return REDACTED;
  return redactUrl(value, /webhook/i.test(key));
}
