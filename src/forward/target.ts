/**
 * The destination a proxy request names: `host:port` of a CONNECT (authority-form) or the
 * `http://host[:port]/path` of an absolute-form request. Anything else is not a proxy request.
 */
import { normaliseHost } from './rules.ts';

export type Target =
  | { ok: true; host: string; port: number; /** the authority as the client wrote it, for Host */ authority: string; path: string }
  | { ok: false; code: 'BRK_ERR_FORWARD_NOT_PROXY' | 'BRK_ERR_FORWARD_BAD_HOST'; reason: string };

const AUTHORITY = /^(\[[0-9A-Fa-f:.]+\]|[^\s/?#@[\]:]+):(\d{1,5})$/;

/** CONNECT's request target: host:port (IPv6 in brackets), nothing more. */
export function connectTarget(url: string | undefined): Target {
  const m = AUTHORITY.exec(url ?? '');
  if (m === null) return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: `CONNECT target ${JSON.stringify(url)} is not host:port` };
  return hostPort(m[1] as string, Number(m[2]), url as string, '');
}

function hostPort(rawHost: string, port: number, authority: string, path: string): Target {
  if (port < 1 || port > 65535) return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: `port ${port} is outside 1-65535` };
  const host = normaliseHost(rawHost);
  if (host === undefined) return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: `${JSON.stringify(rawHost)} is not a host name or IP address` };
  return { ok: true, host, port, authority, path };
}

/** An absolute-form request target: http://host[:port]/path?query only (no credentials, no other scheme). */
export function absoluteTarget(url: string | undefined): Target {
  const u = url ?? '';
  if (u.startsWith('/') || u === '*') return { ok: false, code: 'BRK_ERR_FORWARD_NOT_PROXY', reason: `origin-form request ${JSON.stringify(u.slice(0, 200))}: the forward listener serves proxy requests only` };
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(u);
  if (scheme === null) return { ok: false, code: 'BRK_ERR_FORWARD_NOT_PROXY', reason: `request target ${JSON.stringify(u.slice(0, 200))} is not absolute-form` };
  if ((scheme[1] as string).toLowerCase() !== 'http') return { ok: false, code: 'BRK_ERR_FORWARD_NOT_PROXY', reason: `scheme ${(scheme[1] as string).toLowerCase()}: is not forwarded (plain http only; use CONNECT for https)` };
  const rest = u.slice(scheme[0].length);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  if (authority.includes('@')) return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: 'credentials in the request target are not forwarded' };
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    return { ok: false, code: 'BRK_ERR_FORWARD_BAD_HOST', reason: `request target ${JSON.stringify(u.slice(0, 200))} is not a URL` };
  }
  const port = parsed.port === '' ? 80 : Number(parsed.port);
  return hostPort(parsed.hostname, port, parsed.host, `${parsed.pathname}${parsed.search}`);
}
