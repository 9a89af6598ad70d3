/**
 * WebSocket relay: upgrades the pipeline has already admitted are handed to @fastify/http-proxy
 * (its `websocket` mode, on the `ws` library), one prefix per WebSocket route. Every decision was
 * taken before; the relay's hooks only enforce what the Session (src/proxy/live.ts) carries:
 *   - message size: `maxPayload` on both sides (ws refuses a larger frame from its header, before
 *     buffering it) → close 1009 towards whoever sent it, and 1009 to the client for the upstream's;
 *   - backpressure: when the receiving side holds more than `buffer` bytes, the sending side is
 *     paused (its socket stops being read) until the receiver's socket drains;
 *   - one rate-limit token per client message (the Session's `take`) → close 1008 "rate limit".
 * Hooks get no request: the Session is found on the client's raw socket, which the pipeline filed
 * before handing it over (a `ws` subclass links the two when the handshake completes).
 * Compression (permessage-deflate) is off on both sides: the relay's buffers are then exactly what
 * `bufferedAmount` says, and no peer can make the broker inflate a bomb.
 */
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import WebSocket from 'ws';
import { kSession, type LiveConnections, type Session } from './live.ts';

export interface WebSocketRoute {
  prefix: string;
  /** Upstream path prefix replacing `prefix` (the upstream URL's path, plus the prefix unless stripped). */
  rewritePrefix: string;
  origin: string;
  /** TLS options for an https upstream, as the route's Upstream read them. */
  tls?: Record<string, unknown> | undefined;
}

export interface WebSocketLimits {
  /** Largest message, either direction (bytes). */
  messageSize: number;
  /** Bytes one side may hold for its peer before the other side is paused. */
  buffer: number;
}

export interface WebSocketRelay {
  /** Relays an admitted upgrade (its `url` already the canonical path; its socket filed in `live`). */
  relay(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

type Linked = { [kSession]?: Session };
const TOO_BIG = 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';

/** The server-side WebSocket of a relayed client: linked to its Session as the handshake completes. */
class SessionSocket extends WebSocket {
  setSocket(socket: Duplex, head: Buffer, options: unknown): void {
    (WebSocket.prototype as unknown as { setSocket(s: Duplex, h: Buffer, o: unknown): void }).setSocket.call(this, socket, head, options);
    const s = (socket as Linked)[kSession];
    if (s === undefined) return;
    s.source = this;
    (this as Linked)[kSession] = s;
    this.prependListener('error', onSourceError);
  }
}

/** A client message over the size limit: ws has closed with 1009; the upstream side goes too, and it is logged. */
function onSourceError(this: WebSocket & Linked, err: Error & { code?: string }): void {
  const s = this[kSession];
  if (s === undefined || err.code !== TOO_BIG) return;
  s.live.end(s, 1009, 'message too big', 'message-too-big', 'client message over limits.websocket.messageSize');
}

function sizeOf(data: unknown): number {
  if (Buffer.isBuffer(data) || data instanceof ArrayBuffer) return data.byteLength;
  if (Array.isArray(data)) return data.reduce((n: number, b: Buffer) => n + b.length, 0);
  return 0;
}

/** `ws` does not expose its socket; `bufferedAmount` is read from it, and its 'drain' is the signal to resume. */
const socketOf = (ws: WebSocket): Duplex | undefined => (ws as unknown as { _socket?: Duplex })._socket ?? undefined;

/** `headersOf(req)`: the headers to send upstream for this upgrade, as the pipeline decided them. */
export async function webSocketRelay(routes: readonly WebSocketRoute[], headersOf: (req: IncomingMessage) => Record<string, string>, live: LiveConnections, limits: WebSocketLimits): Promise<WebSocketRelay> {
  const { buffer, messageSize } = limits;
  const stats = live.stats;

  // ---- backpressure: shared handlers (no closure per message or per socket)
  /** The upstream's socket drained: resume reading the client when the upstream holds little enough. */
  function onTargetDrain(this: Duplex & Linked): void {
    const s = this[kSession];
    if (s === undefined || !s.sourcePaused || s.target === undefined) return;
    if (s.target.bufferedAmount > buffer) return void this.once('drain', onTargetDrain);
    s.sourcePaused = false;
    s.source?.resume();
  }
  /** The client's socket drained: resume reading the upstream. */
  function onSourceDrain(this: Duplex & Linked): void {
    const s = this[kSession];
    if (s === undefined || !s.targetPaused || s.source === undefined) return;
    if (s.source.bufferedAmount > buffer) return void this.once('drain', onSourceDrain);
    s.targetPaused = false;
    s.target?.resume();
  }
  function pauseSource(s: Session, source: WebSocket, target: WebSocket): void {
    s.sourcePaused = true;
    stats.pauses++;
    source.pause();
    // still connecting: resumed when it opens (onConnect)
    if (target.readyState === WebSocket.OPEN) socketOf(target)?.once('drain', onTargetDrain);
  }
  /** The upstream's message over the size limit: the client hears 1009 too (http-proxy would say 1011). */
  function onTargetError(this: WebSocket & Linked, err: Error & { code?: string }): void {
    const s = this[kSession];
    if (s === undefined || err.code !== TOO_BIG) return;
    live.end(s, 1009, 'message too big', 'message-too-big', `upstream message over ${messageSize} bytes`);
  }

  const wsHooks = {
    onConnect(_c: unknown, source: WebSocket & Linked, target: WebSocket & Linked): void {
      const s = source[kSession];
      if (s === undefined) return;
      if (s.ended !== undefined) return void target.terminate();
      s.target = target;
      target[kSession] = s;
      const t = socketOf(target) as (Duplex & Linked) | undefined;
      if (t !== undefined) t[kSession] = s;
      target.prependListener('error', onTargetError);
      s.pending = 0;
      if (s.sourcePaused) {
        // paused while the upstream was connecting: what was queued is written now
        s.sourcePaused = false;
        source.resume();
      }
    },
    onIncomingMessage(_c: unknown, source: WebSocket & Linked, target: WebSocket, m: { data: unknown }): void {
      const s = source[kSession];
      if (s === undefined || s.ended !== undefined) return;
      if (s.take !== undefined) {
        const ok = s.take();
        if (ok === false) return live.end(s, 1008, 'rate limit', 'rate-limited');
        if (ok !== true) ok.then((yes) => yes || live.end(s, 1008, 'rate limit', 'rate-limited'), () => live.end(s, 1008, 'rate limit', 'rate-limited', 'limit store failed'));
      }
      const size = sizeOf(m.data);
      const held = target.readyState === WebSocket.CONNECTING ? (s.pending += size) : target.bufferedAmount + size;
      if (held > stats.maxBuffered) stats.maxBuffered = held;
      if (held > buffer && !s.sourcePaused) pauseSource(s, source, target);
    },
    onOutgoingMessage(_c: unknown, source: WebSocket & Linked, target: WebSocket, m: { data: unknown }): void {
      const s = source[kSession];
      if (s === undefined) return;
      const held = source.bufferedAmount + sizeOf(m.data);
      if (held > stats.maxBuffered) stats.maxBuffered = held;
      if (held > buffer && !s.targetPaused) {
        s.targetPaused = true;
        stats.pauses++;
        target.pause();
        s.socket.once('drain', onSourceDrain);
      }
    },
  };

  // This app never listens: its server only carries the upgrade listener @fastify/http-proxy installs.
  const app: FastifyInstance = Fastify({ serverFactory: () => createHttpServer(), logger: false });
  for (const r of routes) {
    const tls = r.tls;
    await app.register(httpProxy as unknown as FastifyPluginAsync<Record<string, unknown>>, {
      upstream: r.origin,
      prefix: r.prefix,
      rewritePrefix: r.rewritePrefix,
      websocket: true,
      httpMethods: ['GET'],
      internalRewriteLocationHeader: false,
      wsServerOptions: { maxPayload: messageSize, perMessageDeflate: false, WebSocket: SessionSocket },
      wsHooks,
      wsClientOptions: {
        maxPayload: messageSize,
        perMessageDeflate: false,
        rewriteRequestHeaders: (_headers: Record<string, string>, request: { raw: IncomingMessage }) => {
          const out = headersOf(request.raw);
          for (const k of Object.keys(out)) if (k.startsWith('sec-websocket-') || k === 'content-length') delete out[k];
          return out;
        },
        ...(tls ?? {}),
      },
    });
  }
  await app.ready();
  return {
    relay: (req, socket, head) => void app.server.emit('upgrade', req, socket, head),
    close: () => app.close(),
  };
}
