/**
 * Canonical request paths: the one form the route ACL judges and the upstream receives.
 *
 * Invariant: the ACL and the upstream see the exact same bytes. `normalizePath` returns the only
 * spelling of a path that the broker accepts; the caller forwards that string unchanged, so no
 * later parser (ours, the proxy's WHATWG URL, the upstream's) gets a chance to resolve a different
 * resource than the one that was authorised. Anything whose meaning differs between common servers
 * is refused instead of guessed:
 *
 * - Origin-form only (`/…`): no absolute-form, no `*`, no fragment (`#`), no `\` raw or encoded.
 * - `%XX` of an unreserved character (ALPHA DIGIT - . _ ~) is decoded, every other escape keeps
 *   its byte and gets upper-case hex. An encoded `.`, `/`, `\`, `;`, control, NUL or double escape
 *   (`%25` + two hex digits) is refused: some upstream would decode it into structure.
 * - Percent-encoded bytes >= 0x80 must be strict UTF-8 (no overlong forms, no surrogates) and may
 *   not encode C1 controls or characters that compatibility-normalise (NFKC) or Windows best-fit
 *   map to ASCII (fullwidth `．／`, `¥`, `∕`, …).
 * - `;` is refused everywhere, raw or `%3B`: Java servers (Tomcat, Jetty, Spring) strip `;params`
 *   from each segment before routing, so `/admin;x/` and `/..;/` would reach a resource that a
 *   segment-aligned prefix check never saw. Matrix parameters and `;jsessionid` are the price.
 * - Raw `" < > [ ] ^ \` { | }` (which Node's parser lets through) are percent-encoded, so the
 *   result is a fixed point of WHATWG URL parsing, which the proxy applies before forwarding.
 * - Empty segments are collapsed (`//a` also cannot be taken for an authority), `.` and `..` are
 *   resolved (RFC 3986 §5.2.4), a `..` that would climb above the root is refused, a trailing
 *   slash is kept.
 * - Case is kept and `matchesPrefix` is case-sensitive. That is exact for a case-sensitive upstream.
 *   A case-insensitive upstream (IIS, Express's default router) would serve `/ADMIN` for `/admin`
 *   while the ACL sees a different path; for those, pass `foldCase: true`, which lower-cases ASCII
 *   letters in the canonical path (so the upstream still gets the bytes the ACL judged) and refuses
 *   non-ASCII paths, whose case folding differs between implementations. Route prefixes must be
 *   canonical too: run them through `normalizePath` with the same options at config time.
 *
 * The query is returned as received (with its `?`); it is not judged by the ACL, so escapes in it are
 * application data, but raw controls, spaces, `#` and non-ASCII are refused.
 */

export type PathResult = { ok: true; path: string; query: string } | { ok: false; reason: string };

export interface NormalizeOptions {
  /** Longest accepted path (before the `?`), in characters. Default 8192. */
  maxLength?: number;
  /** Lower-case ASCII letters and refuse non-ASCII: for a case-insensitive upstream. Default false. */
  foldCase?: boolean;
}

export const DEFAULT_MAX_PATH_LENGTH = 8192;

// Classes of raw ASCII characters in a path.
const REJECT = 0;
const PLAIN = 1; // unreserved, sub-delims except ";", ":" and "@"
const ENCODE = 2; // allowed by Node's parser but not by RFC 3986: percent-encode
const SLASH = 3;
const PERCENT = 4;

const CLASS = new Uint8Array(128); // REJECT by default: controls, space, "#", "\", ";", DEL
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&\'()*+,=:@') {
  CLASS[c.charCodeAt(0)] = PLAIN;
}
for (const c of '"<>[]^`{|}') CLASS[c.charCodeAt(0)] = ENCODE;
CLASS[0x2f] = SLASH;
CLASS[0x25] = PERCENT;

const HEX = '0123456789ABCDEF';
const DOUBLE_ENCODED = /%25[0-9A-Fa-f]{2}/;

/** Non-ASCII characters that some platform maps to "/", "\" or "." without NFKC saying so. */
const LOOKALIKES = new Set([0xa5, 0x20a9, 0x2044, 0x2215, 0x2216, 0x29f8, 0x29f9]);

const fail = (reason: string): PathResult => ({ ok: false, reason });

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

/** ALPHA DIGIT - . _ ~ (RFC 3986 §2.3). */
function isUnreserved(b: number): boolean {
  const l = b | 0x20;
  return (l >= 0x61 && l <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
}

function isUpper(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}

/** A decoded non-ASCII code point that is unsafe to pass on (see the module comment). */
function unsafeCodePoint(cp: number): boolean {
  if (cp <= 0x9f || LOOKALIKES.has(cp)) return true; // C1 controls
  const nfkc = String.fromCodePoint(cp).normalize('NFKC');
  for (let i = 0; i < nfkc.length; i++) if (nfkc.charCodeAt(i) < 0x80) return true;
  return false;
}

/** True when `path` is already canonical: the fast path, which allocates nothing. */
function isCanonical(path: string, foldCase: boolean): boolean {
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i === path.length ? 0x2f : path.charCodeAt(i);
    if (c === 0x2f) {
      const len = i - segStart;
      if (len === 0 && i !== path.length) return false; // "//"
      if (len === 1 && path.charCodeAt(segStart) === 0x2e) return false;
      if (len === 2 && path.charCodeAt(segStart) === 0x2e && path.charCodeAt(segStart + 1) === 0x2e) return false;
      segStart = i + 1;
    } else if (c >= 0x80 || CLASS[c] !== PLAIN || (foldCase && isUpper(c))) {
      return false;
    }
  }
  return true;
}

export function normalizePath(rawUrl: string, opts?: NormalizeOptions): PathResult {
  const maxLength = opts?.maxLength ?? DEFAULT_MAX_PATH_LENGTH;
  const foldCase = opts?.foldCase ?? false;
  if (rawUrl.length === 0) return fail('empty request-target');
  if (rawUrl.charCodeAt(0) !== 0x2f) return fail('request-target is not origin-form (must start with "/")');

  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const query = q === -1 ? '' : rawUrl.slice(q);
  if (rawPath.length > maxLength) return fail(`path longer than ${maxLength} characters`);
  for (let i = 1; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return fail('control, space or non-ASCII character in query');
    if (c === 0x23) return fail('fragment ("#") in request-target');
  }

  if (isCanonical(rawPath, foldCase)) return { ok: true, path: rawPath, query };

  const out: string[] = [];
  let seg = '';
  let dotSegment = false; // the last segment seen was "." or ".." (gives a trailing slash)
  // UTF-8 decoder state for percent-encoded bytes >= 0x80.
  let need = 0;
  let cp = 0;
  let lo = 0x80;
  let hi = 0xbf;

  for (let i = 1; i <= rawPath.length; i++) {
    const c = i === rawPath.length ? 0x2f : rawPath.charCodeAt(i);
    if (c === 0x25) {
      const h1 = hexValue(rawPath.charCodeAt(i + 1));
      const h2 = hexValue(rawPath.charCodeAt(i + 2));
      if (h1 < 0 || h2 < 0 || i + 2 >= rawPath.length) return fail('invalid percent-encoding');
      const b = h1 * 16 + h2;
      i += 2;
      const escaped = '%' + HEX[h1] + HEX[h2];
      if (need > 0) {
        if (b < lo || b > hi) return fail('invalid UTF-8 in percent-encoded bytes');
        cp = (cp << 6) | (b & 0x3f);
        lo = 0x80;
        hi = 0xbf;
        seg += escaped;
        if (--need === 0 && unsafeCodePoint(cp)) return fail('percent-encoded character that maps to ASCII or a control');
        continue;
      }
      if (b >= 0x80) {
        if (foldCase) return fail('non-ASCII path for a case-insensitive upstream');
        if (b >= 0xc2 && b <= 0xdf) { need = 1; cp = b & 0x1f; }
        else if (b >= 0xe0 && b <= 0xef) { need = 2; cp = b & 0x0f; lo = b === 0xe0 ? 0xa0 : 0x80; hi = b === 0xed ? 0x9f : 0xbf; }
        else if (b >= 0xf0 && b <= 0xf4) { need = 3; cp = b & 0x07; lo = b === 0xf0 ? 0x90 : 0x80; hi = b === 0xf4 ? 0x8f : 0xbf; }
        else return fail('invalid UTF-8 in percent-encoded bytes');
        seg += escaped;
        continue;
      }
      if (b < 0x20 || b === 0x7f) return fail('encoded control character or NUL');
      if (b === 0x2f || b === 0x5c) return fail('encoded "/" or "\\"');
      if (b === 0x2e) return fail('encoded "."');
      if (b === 0x3b) return fail('encoded ";"');
      if (isUnreserved(b)) seg += String.fromCharCode(foldCase && isUpper(b) ? b | 0x20 : b);
      else seg += escaped;
      continue;
    }
    if (need > 0) return fail('invalid UTF-8 in percent-encoded bytes');
    if (c === 0x2f) {
      const last = i === rawPath.length;
      dotSegment = seg === '.' || seg === '..';
      if (seg === '..') {
        if (out.length === 0) return fail('".." above the root');
        out.pop();
      } else if (seg !== '' && seg !== '.') {
        out.push(seg);
      }
      if (last) break;
      seg = '';
      continue;
    }
    if (c >= 0x80) return fail('raw non-ASCII character');
    const cls = CLASS[c];
    if (cls === PLAIN) seg += String.fromCharCode(foldCase && isUpper(c) ? c | 0x20 : c);
    else if (cls === ENCODE) seg += '%' + HEX[c >> 4] + HEX[c & 15];
    else if (c === 0x5c) return fail('"\\" in path');
    else if (c === 0x3b) return fail('";" in path');
    else if (c === 0x23) return fail('fragment ("#") in request-target');
    else return fail('control character or space in path');
  }

  const trailing = out.length > 0 && (dotSegment || rawPath.charCodeAt(rawPath.length - 1) === 0x2f);
  const path = '/' + out.join('/') + (trailing ? '/' : '');
  if (path.length > maxLength) return fail(`path longer than ${maxLength} characters`);
  // Judged on the result: "%25%36%31" only becomes "%2561" after decoding.
  if (DOUBLE_ENCODED.test(path)) return fail('double percent-encoding');
  return { ok: true, path, query };
}

/**
 * Segment-aligned prefix match on canonical paths: "/orders" matches "/orders", "/orders/" and
 * "/orders/1" but not "/ordersX"; "/" matches every path; a trailing slash on the prefix is ignored.
 * Case-sensitive, byte for byte. A prefix not starting with "/" matches nothing.
 */
export function matchesPrefix(path: string, prefix: string): boolean {
  if (prefix.charCodeAt(0) !== 0x2f) return false;
  let len = prefix.length;
  while (len > 0 && prefix.charCodeAt(len - 1) === 0x2f) len--;
  if (len === 0) return true;
  if (path.length < len) return false;
  if (len === prefix.length ? !path.startsWith(prefix) : !path.startsWith(prefix.slice(0, len))) return false;
  return path.length === len || path.charCodeAt(len) === 0x2f;
}
