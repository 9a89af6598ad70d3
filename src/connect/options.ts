/**
 * `broker connect`'s addresses, checked once: the broker to forward to, the local listener, and
 * the outbound proxy with its credentials. Pure: no files, no sockets, no DNS (a listen host that
 * is not a loopback literal or "localhost" counts as remote).
 */
import { isIP } from 'node:net';
import { BrokerError } from '../errors.ts';

export interface Target {
  /** `https://host:port`, what the dispatcher connects to. */
  origin: string;
  /** A base path from --url ("/v2"), prefixed to every forwarded path; "" when none. */
  basePath: string;
}

export interface ListenAddress {
  host: string;
  port: number;
  loopback: boolean;
}

export interface Via {
  /** The proxy URL without credentials (safe to log). */
  uri: string;
  /** `Basic …` for Proxy-Authorization, when credentials were given. */
  token?: string;
}

function url(value: string, flag: string): URL {
  try {
    return new URL(value);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONNECT_URL', `${flag} "${value}" is not a URL`, { cause });
  }
}

export function parseTarget(value: string): Target {
  const u = url(value, '--url');
  if (u.protocol !== 'https:') throw new BrokerError('BRK_ERR_CONNECT_URL', `--url must be https:// (the broker speaks only mutual TLS), not ${u.protocol}//`);
  if (u.username || u.password) throw new BrokerError('BRK_ERR_CONNECT_URL', '--url must not carry credentials: the client certificate is the credential');
  if (u.search || u.hash) throw new BrokerError('BRK_ERR_CONNECT_URL', '--url must not have a query or a fragment');
  return Object.freeze({ origin: u.origin, basePath: u.pathname.replace(/\/+$/, '') });
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  return /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/** `HOST:PORT`, `[V6]:PORT` or `PORT` (on 127.0.0.1). Non-loopback only with `allowRemote`. */
export function parseListen(value: string, allowRemote: boolean): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  const host = m?.[1] || m?.[2] || '127.0.0.1';
  if (!m || port > 65_535 || (m[1] !== undefined && m[1] !== '' && isIP(m[1]) !== 6)) {
    throw new BrokerError('BRK_ERR_USAGE', `--listen "${value}" is not HOST:PORT, [IPv6]:PORT or PORT`);
  }
  const loopback = isLoopback(host);
  if (!loopback && !allowRemote) {
    throw new BrokerError('BRK_ERR_CONNECT_LISTEN_REMOTE', `--listen ${value} is not a loopback address`);
  }
  return Object.freeze({ host, port, loopback });
}

/** `USER:PASS` (from the URL, a file or the environment) as a Basic token. */
function basic(credentials: string, from: string): string {
  if (!credentials.includes(':') || /[\r\n\0]/.test(credentials)) {
    throw new BrokerError('BRK_ERR_CONNECT_URL', `the proxy credentials from ${from} are not USER:PASSWORD on one line`);
  }
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
}

/**
 * The proxy for --via. Credentials come from the URL's userinfo, or else `credentials` (read by the
 * caller from --via-auth-file or BROKER_PROXY_AUTH; `from` names which, for messages).
 */
export function parseVia(value: string, credentials?: { value: string; from: string }): Via {
  const u = url(value, '--via');
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new BrokerError('BRK_ERR_CONNECT_URL', `--via must be an http:// (or https://) proxy, not ${u.protocol}//`);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) throw new BrokerError('BRK_ERR_CONNECT_URL', '--via is a proxy address: no path, query or fragment');
  let token: string | undefined;
  if (u.username || u.password) {
    if (credentials?.from === '--via-auth-file') throw new BrokerError('BRK_ERR_CONNECT_URL', '--via carries credentials and --via-auth-file gives others: keep one');
    let user: string;
    let pass: string;
    try {
      user = decodeURIComponent(u.username);
      pass = decodeURIComponent(u.password);
    } catch (cause) {
      throw new BrokerError('BRK_ERR_CONNECT_URL', '--via has badly escaped credentials', { cause });
    }
    token = basic(`${user}:${pass}`, '--via');
  } else if (credentials) {
    token = basic(credentials.value, credentials.from);
  }
  u.username = '';
  u.password = '';
  return Object.freeze({ uri: u.origin, ...(token ? { token } : {}) });
}
