/**
 * Graceful shutdown: the answers being written, so that a shutdown can tell each one to end its
 * connection (a kept-alive connection would otherwise take further requests until the grace period
 * cuts it off), then stop accepting and cut what remains at the deadline.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TlsListener } from '../tls/listener.ts';

export interface Drain {
  /** Wraps the request handler: tracks the answer, and asks for "Connection: close" once draining. */
  track(handle: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void;
  /** Stops accepting; idle connections go now, busy ones after their answer; all are cut after `graceMs`. */
  stop(servers: readonly TlsListener[], graceMs: number): Promise<void>;
}

export function createDrain(): Drain {
  const running = new Set<ServerResponse>();
  let draining = false;
  const finished = function (this: ServerResponse) {
    running.delete(this);
  };
  return {
    track: (handle) => (req, res) => {
      if (draining) res.shouldKeepAlive = false;
      running.add(res);
      res.once('close', finished);
      handle(req, res);
    },
    async stop(servers, graceMs) {
      draining = true;
      for (const res of running) {
        if (!res.headersSent) res.shouldKeepAlive = false;
        else res.once('close', () => setImmediate(() => { for (const s of servers) s.closeIdleConnections(); }));
      }
      const stopped = Promise.all(servers.map((s) => (s.listening ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve())));
      for (const s of servers) s.closeIdleConnections();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([stopped, deadline]);
      for (const s of servers) {
        s.closeAllConnections();
        // WebSockets (upgraded connections) are not among Node's connections: without this they
        // would keep the process alive after the grace period.
        s.closeClientConnections();
      }
    },
  };
}
