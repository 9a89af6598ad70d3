/**
 * WebSocket relay: upgrades the pipeline has already admitted are handed to @fastify/http-proxy
 * (its `websocket` mode, on the `ws` library), one prefix per WebSocket route. No hooks run here:
 * every decision was taken before; this only moves frames and sends the headers it is given.
 */
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import httpProxy from '@fastify/http-proxy';

export interface WebSocketRoute {
  prefix: string;
  /** Upstream path prefix replacing `prefix` (the upstream URL's path, plus the prefix unless stripped). */
  rewritePrefix: string;
  origin: string;
  /** TLS options for an https upstream, as the route's Upstream read them. */
  tls?: Record<string, unknown> | undefined;
}

export interface WebSocketRelay {
  /** Relays an admitted upgrade (its `url` already the canonical path). */
  relay(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

/** `headersOf(req)`: the headers to send upstream for this upgrade, as the pipeline decided them. */
export async function webSocketRelay(routes: readonly WebSocketRoute[], headersOf: (req: IncomingMessage) => Record<string, string>): Promise<WebSocketRelay> {
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
      wsClientOptions: {
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
