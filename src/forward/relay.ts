/**
 * An absolute-form request (`GET http://host/path`) forwarded to the address the SSRF guard
 * checked, with Host set to the name the client asked for. The destination learns nothing of the
 * broker or of the caller's identity: the client's headers go without the hop-by-hop ones, without
 * Proxy-Authorization, without every identity and forwarding header the reverse side strips
 * (src/proxy/headers.ts isDroppedHeader) and without the identity assertion header; the broker
 * adds none of its own (no x-client-*, no x-forwarded-*, no Via, no request id).
 *
 * Connections to destinations are kept alive and reused, per checked address and port (the pool
 * never resolves a name: it is handed the address the SSRF guard checked), whoever the caller.
 */
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { isDroppedHeader } from '../proxy/headers.ts';
import type { Exchange } from './exchange.ts';
import type { TunnelTiming } from './tunnel.ts';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Header names a `Connection` header lists (hop-by-hop by declaration), lower case. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue;
    for (const t of (raw[i + 1] as string).split(',')) {
      const n = t.trim().toLowerCase();
      if (n) (out ??= new Set()).add(n);
    }
  }
  return out;
}

/** The request headers the destination receives (rawHeaders form), Host last. */
export function destinationHeaders(raw: readonly string[], host: string, extraDrop: string): string[] {
  const tokens = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (isDroppedHeader(lower) || HOP_BY_HOP.has(lower) || lower === extraDrop || tokens?.has(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  out.push('Host', host);
  return out;
}

/** The destination's answer headers minus the hop-by-hop ones (Node frames the body again). */
function answerHeaders(raw: readonly string[]): string[] {
  const tokens = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(lower) || tokens?.has(lower)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** Idle connections kept per destination address and port, and how long one may stay idle. */
const POOL_IDLE_PER_DESTINATION = 32;
const POOL_IDLE_MS = 4_000;

/** The keep-alive pool of destination connections (one per forward listener; destroy it on close). */
export function destinationPool(): Agent {
  return new Agent({ keepAlive: true, maxFreeSockets: POOL_IDLE_PER_DESTINATION, timeout: POOL_IDLE_MS, scheduling: 'lifo' });
}

export interface RelayHooks {
  /** Nothing was answered yet and the destination failed: answer 502. */
  failed(reason: string): void;
}

export function relayRequest(x: Exchange, req: IncomingMessage, res: ServerResponse, address: string, family: 4 | 6, port: number, authority: string, path: string, assertionHeader: string, t: TunnelTiming, pool: Agent, h: RelayHooks): void {
  const out = httpRequest({ host: address, family, port, method: req.method, path, headers: destinationHeaders(req.rawHeaders, authority, assertionHeader), setHost: false, agent: pool });
  let connected = false;
  const connectTimer = setTimeout(() => out.destroy(new Error(`no connection within ${t.connectTimeoutMs} ms`)), t.connectTimeoutMs);
  const maxTimer = setTimeout(() => {
    x.end = 'max duration';
    out.destroy();
    res.destroy();
  }, t.maxDurationMs);
  const up = () => ((connected = true), clearTimeout(connectTimer));
  // a pooled connection is already up
  out.once('socket', (s) => (s.connecting ? s.once('connect', up) : up()));
  out.setTimeout(t.idleTimeoutMs, () => {
    x.end = 'idle';
    out.destroy(new Error('idle'));
  });
  const meter = x.meter !== undefined && x.meter.plan.quotas.length > 0 ? x.meter : undefined;
  meter?.onCut((why) => {
    x.end = why;
    out.destroy();
    res.destroy();
  });
  req.on('data', (c: Buffer) => {
    x.bytesUp += c.length;
    meter?.add(c.length, 0);
  });
  req.pipe(out);
  out.on('response', (up) => {
    x.status = up.statusCode ?? 0;
    res.writeHead(x.status, up.statusMessage, answerHeaders(up.rawHeaders));
    up.on('data', (c: Buffer) => {
      x.bytesDown += c.length;
      meter?.add(0, c.length);
    });
    up.pipe(res);
    up.on('error', () => res.destroy());
  });
  out.on('error', (err: Error & { code?: string }) => {
    clearTimeout(connectTimer);
    if (!res.headersSent && !res.destroyed) return h.failed(`${connected ? 'exchange with' : 'connecting to'} ${address}:${port}: ${err.code ?? err.message}`);
    x.end ??= 'error';
    res.destroy();
  });
  res.once('close', () => {
    clearTimeout(connectTimer);
    clearTimeout(maxTimer);
    if (!res.writableFinished) x.end ??= 'client closed';
    out.destroy();
  });
}
