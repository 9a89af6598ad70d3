/**
 * What `broker connect` passes on in each direction: the end-to-end headers, not the hop-by-hop
 * ones (RFC 9110 §7.6.1) nor any header a `Connection` token names. Nothing is added: identity
 * headers are the broker's to set, from the certificate it verified.
 * Also dropped on the way out: `host` (the broker's own authority is sent) and `expect` (Node's
 * server already answered `100 Continue`; undici refuses the header).
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
]);

const REQUEST_ONLY = new Set(['host', 'expect']);

type Headers = Record<string, string | string[] | undefined>;

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const all = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(all.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

function filter(headers: Headers, extra: ReadonlySet<string>): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(name) || extra.has(name) || named.has(name)) continue;
    out[name] = Array.isArray(value) && value.length === 1 ? (value[0] as string) : value;
  }
  return out;
}

/** From Node's `req.headersDistinct` (every value an array, names lower-cased). */
export function requestHeaders(distinct: NodeJS.Dict<string[]>): Record<string, string | string[]> {
  const out = filter(distinct, REQUEST_ONLY);
  // Node's parser keeps the first Content-Length; undici takes exactly one.
  if (Array.isArray(out['content-length'])) out['content-length'] = out['content-length'][0] as string;
  return out;
}

/** From undici's response headers, for `res.writeHead`. */
export function responseHeaders(headers: Headers): Record<string, string | string[]> {
  return filter(headers, new Set());
}
