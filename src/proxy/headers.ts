/**
 * The headers sent upstream: the client's own headers minus everything that could speak for the
 * broker, plus the verified identity and forwarding facts, which only the broker may set.
 *
 * Built from `req.rawHeaders` in a single pass after a cheap scan for `Connection`. Names are
 * compared lower-cased with `_` read as `-`, because CGI/WSGI-style upstreams (and nginx with
 * `underscores_in_headers on`) read `X_Client_DN` as `X-Client-DN`. Dropped:
 * - identity and forwarding headers a client could forge: `x-client-*`, `x-ssl-*`, `ssl-client-*`,
 *   `x-forwarded-*` (incl. `x-forwarded-client-cert`), `client-cert`, `client-cert-chain`,
 *   `forwarded`, `x-real-ip`, `true-client-ip`, `x-cluster-client-ip`;
 * - path overrides some frameworks honour behind a proxy (`x-original-url`, `x-rewrite-url`,
 *   `x-original-uri`): they would let a request name a different path than the ACL judged;
 * - method overrides (`x-http-method-override`, `x-http-method`, `x-method-override`), which would
 *   let a POST act as the DELETE the ACL refused; kept only when the caller passes
 *   `passOverride` (a route with `methodOverride: true`, which judges their methods itself);
 * - `proxy-authorization`, `proxy-connection`, the hop-by-hop headers and every header named in a
 *   `Connection` token. Our own headers are added after filtering, so a token cannot remove them;
 * - `host`: the proxy sets the upstream's own authority; the client's Host, already validated by
 *   the caller, travels as `x-forwarded-host` and in `forwarded`;
 * - names that are not RFC 9110 tokens.
 * Repeated kept headers are joined with ", " (`cookie` with "; "), except the fields Node itself
 * keeps only the first of in `req.headers` (`authorization`, `content-type`, `user-agent`, …): there
 * the first wins too, so the upstream sees the value the broker saw.
 *
 * The broker's own values come from certificates, so they are checked, not trusted: printable
 * ASCII only (no CR, LF, NUL), and name, serial, roles and host without spaces or commas, which a
 * receiver could trim or split. A bad value throws BRK_ERR_PROXY_IDENTITY_VALUE rather than send a header.
 */

import { BrokerError } from '../errors.ts';

export interface IdentityHeaders {
  name: string;
  roles: readonly string[];
  /** How the caller authenticated (x-client-auth); default mtls. */
  methods?: readonly string[];
  /** The API key or Basic credential id (x-client-key-id). */
  keyId?: string;
  /** The verified client certificate's facts; absent when the caller used no certificate. */
  serial?: string;
  /** SHA-256 of the certificate's DER, 64 lower-case hex digits. */
  fingerprint?: string;
  /** Subject DN as an ASCII string (RFC 4514, non-ASCII escaped). */
  subject?: string;
  uri?: string;
}

/** routes[].identity as bits, for the formats this module writes (rfc9440 and jwt are appended by the pipeline). */
export const FORMAT_HEADERS = 1;
export const FORMAT_XFCC = 2;

/** `host` is the Host the client sent, already validated by the caller. */
export interface ForwardInfo {
  clientIp: string;
  proto: 'https';
  host: string;
}

const DROP = new Set([
  'client-cert', 'client-cert-chain', 'forwarded', 'x-real-ip', 'true-client-ip', 'x-cluster-client-ip',
  'x-original-url', 'x-rewrite-url', 'x-original-uri',
  'x-http-method-override', 'x-http-method', 'x-method-override',
  'proxy-authorization', 'proxy-connection', 'proxy-authenticate',
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
  'host',
  // the request's trace context and id: the broker's own values replace the client's
  'traceparent', 'tracestate', 'x-request-id',
  // Node's server already answered `100 Continue`; the upstream client (undici) refuses the header.
  'expect',
]);
const DROP_PREFIXES = ['x-client-', 'x-forwarded-', 'x-ssl-', 'ssl-client-'];

/** The method-override headers (lower case, "-" form), dropped unless the route opts in. */
export const METHOD_OVERRIDE_HEADERS: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

/** Fields of which Node keeps only the first occurrence in `req.headers`. */
const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'referer', 'retry-after', 'server', 'user-agent',
]);

/** The headers this module adds; each is dropped from the input by the rules above. */
export const BROKER_HEADERS = [
  'x-client-name', 'x-client-roles', 'x-client-auth', 'x-client-key-id', 'x-client-serial', 'x-client-fingerprint',
  'x-forwarded-client-cert', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
  'forwarded', 'x-real-ip',
] as const;

const TCHAR = new Uint8Array(128);
for (const c of '!#$%&\'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') {
  TCHAR[c.charCodeAt(0)] = 1;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** Lower-cased name with "_" read as "-": the form every comparison uses. */
function comparable(lower: string): string {
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower;
}

/** Whether a header with this name is dropped. Exported for tests and for the plugin's own checks. */
export function isDroppedHeader(name: string): boolean {
  return dropped(comparable(name.toLowerCase()));
}

function dropped(n: string): boolean {
  if (DROP.has(n)) return true;
  for (const p of DROP_PREFIXES) if (n.startsWith(p)) return true;
  return false;
}

/** Our values come from certificates and config: refuse anything but printable ASCII. */
function checked(field: string, value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw new BrokerError('BRK_ERR_PROXY_IDENTITY_VALUE', `refusing to send ${field}: character 0x${c.toString(16)} at ${i}`);
    }
  }
  return value;
}

function quoted(value: string): string {
  return '"' + value.replace(/["\\]/g, '\\$&') + '"';
}

/** RFC 7239 value: a token as is, anything else as a quoted-string. */
function forwardedValue(value: string): string {
  return isToken(value) ? value : quoted(value);
}

/** RFC 7239 node: IPv6 goes in brackets and therefore in quotes. */
function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : forwardedValue(ip);
}

const XFCC_SPECIAL = /[",;=\\\s]/;

/** Envoy's x-forwarded-client-cert element for the verified client: `Hash=…;Subject="…"[;URI=…]`. */
export function xfccValue(id: IdentityHeaders): string {
  if (id.fingerprint === undefined || !/^[0-9a-f]{64}$/.test(id.fingerprint)) {
    throw new BrokerError('BRK_ERR_PROXY_IDENTITY_VALUE', 'identity fingerprint is not 64 lower-case hex digits');
  }
  let v = `Hash=${id.fingerprint};Subject=${quoted(checked('subject', id.subject ?? ''))}`;
  if (id.uri !== undefined) {
    const uri = checked('uri', id.uri);
    v += ';URI=' + (XFCC_SPECIAL.test(uri) ? quoted(uri) : uri);
  }
  return v;
}

/**
 * A single list element: printable ASCII without spaces or commas, so that no receiver can trim
 * (" admin" -> "admin") or split ("alice, admin") it into something else.
 */
const ELEMENT = /^[\x21-\x2b\x2d-\x7e]+$/;

function element(field: string, value: string): string {
  if (!ELEMENT.test(value)) {
    throw new BrokerError('BRK_ERR_PROXY_IDENTITY_VALUE', `refusing to send ${field} ${JSON.stringify(value)}: empty, or has a comma, space or non-ASCII`);
  }
  return value;
}

function rolesValue(roles: readonly string[]): string {
  for (const r of roles) element('role', r);
  return roles.join(',');
}

const IP = /^[0-9A-Za-z:.%_-]+$/;

/**
 * Checked identity values as flat [name, value…] lists, one per combination of formats, cached per
 * identity object: the caller builds one frozen identity per TLS connection (or credential), so
 * keep-alive requests reuse them. An identity must not be mutated once used.
 */
const identityCache = new WeakMap<IdentityHeaders, Array<readonly string[] | undefined>>();

function identityValues(id: IdentityHeaders, formats: number): readonly string[] {
  let byFormats = identityCache.get(id);
  if (byFormats === undefined) identityCache.set(id, (byFormats = []));
  let list = byFormats[formats];
  if (list === undefined) {
    const hasCert = id.serial !== undefined || id.fingerprint !== undefined;
    // checked whatever the formats: a value unsafe to send refuses the request on every route alike
    const values = [
      'x-client-name', element('name', id.name),
      'x-client-roles', rolesValue(id.roles),
      'x-client-auth', (id.methods ?? ['mtls']).map((m) => element('auth method', m)).join(','),
    ];
    if (id.keyId !== undefined) values.push('x-client-key-id', element('key id', id.keyId));
    // xfccValue also validates fingerprint, subject and uri
    const xfcc = hasCert ? xfccValue(id) : undefined;
    if (hasCert) values.push('x-client-serial', element('serial', id.serial ?? ''), 'x-client-fingerprint', id.fingerprint ?? '');
    const out = (formats & FORMAT_HEADERS) !== 0 ? values : [];
    if ((formats & FORMAT_XFCC) !== 0 && xfcc !== undefined) out.push('x-forwarded-client-cert', xfcc);
    byFormats[formats] = list = Object.freeze(out);
  }
  return list;
}

/** RFC 8941 byte sequence: `:base64:`. */
function sfBinary(der: Uint8Array): string {
  return `:${Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64')}:`;
}

/**
 * RFC 9440's fields for a client certificate: `Client-Cert` (the DER the client presented) and,
 * when there are intermediates, `Client-Cert-Chain` (the certificates that certify it, each a byte
 * sequence, the trust anchor left out as §2.3 allows).
 */
export function rfc9440Values(leaf: Uint8Array, chain: readonly Uint8Array[]): readonly string[] {
  const out = ['client-cert', sfBinary(leaf)];
  if (chain.length > 0) out.push('client-cert-chain', chain.map(sfBinary).join(', '));
  return Object.freeze(out);
}

/** Build the header object to send upstream from the inbound raw headers (Node's req.rawHeaders: flat [name, value, name, value…]). */
/**
 * `strip`: further names (lower case, "-" form) to drop, e.g. the credentials the broker checked
 * for this route; matched like the built-in rules, so `X_Api_Key` goes with `x-api-key`.
 */
export function upstreamHeaders(rawHeaders: readonly string[], id: IdentityHeaders, fwd: ForwardInfo, strip?: ReadonlySet<string>, passOverride = false, formats = FORMAT_HEADERS | FORMAT_XFCC): Record<string, string> {
  const list = upstreamHeaderList(rawHeaders, id, fwd, strip, passOverride, formats);
  return headerObject(list);
}

/** A flat [name, value…] list of unique names as an object (what the WebSocket relay wants). */
export function headerObject(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i < list.length; i += 2) out[list[i] as string] = list[i + 1] as string;
  return out;
}

/**
 * The same headers as a flat [name, value, name, value…] list of unique lower-case names, which is
 * what the proxy hands undici: no dictionary object per request, and the broker's own part is
 * appended from lists built once per identity and per connection.
 */
export function upstreamHeaderList(rawHeaders: readonly string[], id: IdentityHeaders, fwd: ForwardInfo, strip?: ReadonlySet<string>, passOverride = false, formats = FORMAT_HEADERS | FORMAT_XFCC): string[] {
  // Header names listed in Connection are hop-by-hop (RFC 9110 §7.6.1).
  let named: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const token of (rawHeaders[i + 1] ?? '').split(',')) {
      const t = token.trim();
      if (t !== '') (named ??= new Set()).add(comparable(t.toLowerCase()));
    }
  }

  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1] ?? '';
    if (!isToken(name)) continue;
    const key = name.toLowerCase();
    const cmp = comparable(key);
    if ((dropped(cmp) && !(passOverride && METHOD_OVERRIDE_HEADERS.has(cmp))) || (named !== undefined && named.has(cmp)) || (strip !== undefined && strip.has(cmp))) continue;
    let at = -1;
    for (let j = 0; j < out.length; j += 2) {
      if (out[j] === key) {
        at = j;
        break;
      }
    }
    if (at === -1) out.push(key, value);
    else if (!FIRST_WINS.has(key)) out[at + 1] += (key === 'cookie' ? '; ' : ', ') + value;
  }
  for (const x of identityValues(id, formats)) out.push(x);
  for (const x of forwardValues(fwd).list) out.push(x);
  return out;
}

interface ForwardValues { list: readonly string[] }

/**
 * Checked forwarding values, cached per ForwardInfo object: the caller keeps one per connection
 * (and Host), so keep-alive requests reuse them. A ForwardInfo must not be mutated once used.
 */
const forwardCache = new WeakMap<ForwardInfo, ForwardValues>();

function forwardValues(fwd: ForwardInfo): ForwardValues {
  let f = forwardCache.get(fwd);
  if (f === undefined) {
    const ip = fwd.clientIp;
    if (!IP.test(ip)) throw new BrokerError('BRK_ERR_PROXY_IDENTITY_VALUE', `refusing to send client address ${JSON.stringify(ip)}`);
    const host = element('host', fwd.host);
    const forwarded = `for=${forwardedNode(ip)};proto=${fwd.proto};host=${forwardedValue(host)}`;
    f = { list: Object.freeze(['x-forwarded-for', ip, 'x-forwarded-proto', fwd.proto, 'x-forwarded-host', host, 'forwarded', forwarded, 'x-real-ip', ip]) };
    forwardCache.set(fwd, f);
  }
  return f;
}

/** Hop-by-hop response fields (RFC 9110 §7.6.1): they describe the upstream connection, not the client's. */
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'http2-settings']);

/**
 * The upstream's response headers minus the hop-by-hop ones and every header its `Connection`
 * names. Passed on, the upstream's `Connection: keep-alive` overrode a client's `Connection: close`
 * (Node keeps a header the handler set), and its `Keep-Alive` advertised the upstream's timeout.
 * Node frames the client's response itself. `dropServer`: the upstream's Server header goes too
 * (it tells strangers what runs behind the broker; routes[].keepServerHeader keeps it).
 */
export function downstreamHeaders<T>(headers: Record<string, T>, dropServer = false): Record<string, T> {
  const conn = headers.connection as unknown;
  // Most answers name nothing in Connection: no set to build then (this runs on every response).
  let named: Set<string> | undefined;
  if (conn !== undefined) {
    named = new Set<string>();
    for (const v of Array.isArray(conn) ? conn : [conn]) {
      for (const token of String(v).split(',')) if (token.trim() !== '') named.add(token.trim().toLowerCase());
    }
  }
  const out: Record<string, T> = {};
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const key = name.toLowerCase();
    if (!HOP_BY_HOP.has(key) && (named === undefined || !named.has(key)) && !(dropServer && key === 'server')) out[name] = headers[name] as T;
  }
  return out;
}
