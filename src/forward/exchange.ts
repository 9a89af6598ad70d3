/**
 * One tunnel or one forwarded request, as the access log records it: who, where to, how much, how
 * long, and how it ended. One line per exchange, written once when it is over (or refused).
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Principal } from '../identity/index.ts';
import { channels } from '../channels.ts';
import { connectionId } from '../request/index.ts';
import type { Meter } from './limits.ts';
import type { ForwardCaller } from './proxy-auth.ts';

export type Outcome = 'ok' | 'refused' | 'failed';

export class Exchange {
  readonly reqId = randomBytes(12).toString('hex');
  readonly start = performance.now();
  host: string | undefined = undefined;
  port: number | undefined = undefined;
  address: string | undefined = undefined;
  bytesUp = 0;
  bytesDown = 0;
  status = 0;
  outcome: Outcome = 'ok';
  code: string | undefined = undefined;
  reason: string | undefined = undefined;
  /** Who was let in: the certificate's identity, or a Proxy-Authorization credential's (src/forward/proxy-auth.ts). */
  caller: ForwardCaller | undefined = undefined;
  /** How an established tunnel or exchange ended: closed, idle, max duration, error. */
  end: string | undefined = undefined;
  /** The identity's byte counter and slot, once its limits admitted the exchange. */
  meter: Meter | undefined = undefined;
  #logged = false;

  readonly method: string;
  readonly principal: Principal | undefined;
  readonly socket: { remoteAddress?: string | undefined; remotePort?: number | undefined };

  constructor(method: string, principal: Principal | undefined, socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }) {
    this.method = method;
    this.principal = principal;
    this.socket = socket;
  }

  refused(status: number, code: string, reason: string): void {
    this.status = status;
    this.outcome = status >= 500 ? 'failed' : 'refused';
    this.code = code;
    this.reason = reason;
  }

  /** Frees the slot, counts the last bytes, writes the access line and reports the exchange (once). */
  log(access: Logger): void {
    if (this.#logged) return;
    this.#logged = true;
    this.meter?.close();
    // nothing was answered: the client went away before the destination was checked or reached
    if (this.status === 0 && this.outcome === 'ok') {
      this.outcome = 'failed';
      this.end ??= 'client closed';
    }
    const p = this.principal;
    const c = this.caller;
    access.info(
      {
        event: 'forward',
        reqId: this.reqId,
        connId: connectionId(this.socket),
        clientIp: this.socket.remoteAddress ?? null,
        clientPort: this.socket.remotePort ?? null,
        principal: c?.name ?? p?.name ?? null,
        roles: c?.roles ?? p?.roles ?? [],
        serial: p?.serial ?? null,
        ...(c !== undefined && c.method !== 'mtls' ? { auth: c.method, keyId: c.keyId } : {}),
        method: this.method,
        host: this.host ?? null,
        port: this.port ?? null,
        address: this.address ?? null,
        status: this.status,
        bytesUp: this.bytesUp,
        bytesDown: this.bytesDown,
        durationMs: Math.round((performance.now() - this.start) * 1000) / 1000,
        outcome: this.outcome,
        ...(this.end !== undefined ? { end: this.end } : {}),
        ...(this.code !== undefined ? { code: this.code, reason: this.reason } : {}),
      },
      this.method === 'CONNECT' ? 'forward tunnel' : 'forward request',
    );
    if (channels.forward.hasSubscribers) channels.forward.publish({ principal: c?.name ?? p?.name ?? null, outcome: this.outcome, code: this.code, end: this.end, bytesUp: this.bytesUp, bytesDown: this.bytesDown, remoteIp: this.socket.remoteAddress });
  }
}
