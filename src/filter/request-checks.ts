/**
 * Request-level checks that run before routing, as pure functions of the request head: header
 * count, a single Host that is `host[:port]`, no transfer coding but chunked, and the declared body
 * size. Node's parser already refuses CL+TE, duplicate Content-Length, obs-fold and bare LF; these
 * cover what it lets by. Also the methods named by method-override headers, for the routes that
 * opt in to them.
 */
import { isIP } from 'node:net';
import type { HttpErrorCode } from '../errors.ts';

export interface HeadLimits {
  headerCount: number;
  bodySize: number;
  /** Benchmark ablation only (BROKER_ABLATE=hostCheck): Host is not checked to be host[:port]. */
  skipHost?: boolean | undefined;
}

export type HeadVerdict = { ok: true } | { ok: false; code: HttpErrorCode; detail: string };

const OK: HeadVerdict = Object.freeze({ ok: true });

/** `http10`: the request says HTTP/1.0, whose messages cannot carry Transfer-Encoding (RFC 9112 6.1). */
export function checkHead(rawHeaders: readonly string[], limits: HeadLimits, http10 = false): HeadVerdict {
  if (rawHeaders.length / 2 > limits.headerCount) {
    return { ok: false, code: 'BRK_ERR_HTTP_HEADERS_TOO_LARGE', detail: `more than ${limits.headerCount} headers` };
  }
  let hosts = 0;
  let host = '';
  let te: string | undefined;
  let cl: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      host = rawHeaders[i + 1] as string;
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') te = te === undefined ? (rawHeaders[i + 1] as string) : `${te},${rawHeaders[i + 1]}`;
    else if (name.length === 14 && name.toLowerCase() === 'content-length') cl = rawHeaders[i + 1] as string;
  }
  if (hosts !== 1) return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: `${hosts} Host headers` };
  const badHost = limits.skipHost === true ? undefined : hostProblem(host);
  if (badHost !== undefined) return { ok: false, code: 'BRK_ERR_HTTP_BAD_HOST', detail: badHost };
  if (te !== undefined) {
    // RFC 9112 6.1: faulty framing; answered and the connection closed (the caller closes every head refusal).
    if (http10) return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: 'Transfer-Encoding in an HTTP/1.0 request' };
    if (te.trim().toLowerCase() !== 'chunked') return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: `Transfer-Encoding "${te}"` };
    if (cl !== undefined) return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: 'both Content-Length and Transfer-Encoding' };
  }
  if (cl !== undefined && Number(cl) > limits.bodySize) {
    return { ok: false, code: 'BRK_ERR_HTTP_BODY_TOO_LARGE', detail: `Content-Length ${cl} over ${limits.bodySize}` };
  }
  return OK;
}

/** RFC 3986 unreserved characters: what a host name may hold here (letters, digits, "-", ".", "_", "~"). */
const NAME_CHAR = new Uint8Array(128);
for (const c of '-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') NAME_CHAR[c.charCodeAt(0)] = 1;

/** The longest Host accepted: a 253-character name, ":" and a 5-digit port. */
const MAX_HOST = 259;

/**
 * Why `host` (a Host header value) is not `host[:port]`, or undefined when it is. `host` is a name
 * of unreserved characters (so also an IPv4 address) or a bracketed IPv6 address without a zone;
 * the port is 1-5 digits up to 65535. Stricter than RFC 3986's reg-name, which also admits
 * percent-escapes and sub-delims (`!$&'()*+,;=`): no DNS name has them, and a comma or a quote in
 * a forwarded Host is what a receiver splits or misreads.
 */
export function hostProblem(host: string): string | undefined {
  const len = host.length;
  if (len === 0) return 'empty Host';
  if (len > MAX_HOST) return `Host longer than ${MAX_HOST} characters`;
  let end: number;
  if (host.charCodeAt(0) === 91 /* [ */) {
    end = host.indexOf(']');
    const inner = end === -1 ? '' : host.slice(1, end);
    if (inner.includes('%') || isIP(inner) !== 6) return 'Host is not a bracketed IPv6 address';
    end++;
  } else {
    end = 0;
    while (end < len) {
      const c = host.charCodeAt(end);
      if (c === 58 /* : */) break;
      if (c >= 128 || NAME_CHAR[c] === 0) return `Host has character 0x${c.toString(16)} at ${end}`;
      end++;
    }
    if (end === 0) return 'Host has no name';
  }
  if (end === len) return undefined;
  if (host.charCodeAt(end) !== 58) return 'Host has characters after the address';
  const digits = len - end - 1;
  if (digits < 1 || digits > 5) return 'Host port is not 1-5 digits';
  let port = 0;
  for (let i = end + 1; i < len; i++) {
    const d = host.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return 'Host port is not a number';
    port = port * 10 + d;
  }
  return port > 65535 ? 'Host port over 65535' : undefined;
}

/**
 * Method-override headers (lower case, "-" form), as src/proxy/headers.ts drops them; the proxy
 * imports no policy module, so the list is written twice and a unit test holds them equal.
 */
export const METHOD_OVERRIDES: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

/**
 * The methods a request's method-override headers name (each value trimmed and upper-cased, as
 * the frameworks that honour them read it), in any case and with "_" read as "-"; undefined when
 * there is none. Only routes with `methodOverride: true` ask: everywhere else they are dropped.
 */
export function overrideMethods(rawHeaders: readonly string[]): string[] | undefined {
  let out: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length < 13 || name.length > 22) continue;
    if (!METHOD_OVERRIDES.has(name.toLowerCase().replaceAll('_', '-'))) continue;
    (out ??= []).push((rawHeaders[i + 1] ?? '').trim().toUpperCase());
  }
  return out;
}
