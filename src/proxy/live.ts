/**
 * Connections that outlive the decision that admitted them: every relayed WebSocket (a Session)
 * and every keep-alive connection admitted with an API key or Basic credential, filed under the
 * credential ids that admitted them (certificate serial, `key:<id>`), so that a revocation closes
 * them at once. A Session also closes when its credential expires (one unref'd timer each), counts
 * against its identity's WebSocket cap, and carries the relay's backpressure state. Keep-alive
 * connections with a certificate are the listener's (src/tls/listener.ts), which skips relayed ones.
 * Nothing here decides: the pipeline says which ids, which deadline, which rate-limit take.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { arm, disarm, type Deadline } from '../deadline.ts';
import { kRelayed } from '../tls/listener.ts';

export const kSession = Symbol('broker.session');
const kKey = Symbol('broker.keyId');

/** Why the broker closed a WebSocket (the auth log's `reason`). */
export type EndReason = 'revoked' | 'expired' | 'rate-limited' | 'message-too-big';

export interface SessionInit {
  /** The identity (the per-identity cap counts by it). */
  name: string;
  route: string;
  reqId: string;
  /** Credential ids that admitted it: the certificate serial, `key:<id>`. */
  ids: readonly string[];
  /** When the first of its credentials stops being valid (ms since the epoch; Infinity for never). */
  at: number;
  /** Takes one rate-limit token for a client message: whether it may pass (a promise with a shared store). */
  take: (() => boolean | Promise<boolean>) | undefined;
  /** The client's raw (TLS) socket, as handed to the relay. */
  socket: Duplex;
}

/** One relayed WebSocket. */
export class Session implements Deadline {
  readonly name: string;
  readonly route: string;
  readonly reqId: string;
  readonly ids: readonly string[];
  readonly at: number;
  readonly take: (() => boolean | Promise<boolean>) | undefined;
  readonly socket: Duplex;
  timer: NodeJS.Timeout | undefined = undefined;
  /** The client side (set when the handshake completes) and the upstream side (set when it opens). */
  source: WebSocket | undefined = undefined;
  target: WebSocket | undefined = undefined;
  /** Bytes of client messages queued while the upstream was still connecting. */
  pending = 0;
  /** Which side is paused because the other holds more than the buffer. */
  sourcePaused = false;
  targetPaused = false;
  ended: EndReason | undefined = undefined;
  readonly live: LiveConnections;

  constructor(live: LiveConnections, i: SessionInit) {
    this.live = live;
    this.name = i.name;
    this.route = i.route;
    this.reqId = i.reqId;
    this.ids = i.ids;
    this.at = i.at;
    this.take = i.take;
    this.socket = i.socket;
  }

  expire(): void {
    this.live.end(this, 1008, 'credential expired', 'expired');
  }
}

/** What the relay's backpressure did (tests and diagnostics). */
export interface RelayStats {
  /** Largest number of bytes one side held for its peer (after a message was queued). */
  maxBuffered: number;
  /** How many times a side was paused for its peer. */
  pauses: number;
}

/** A peer that does not answer the close frame is cut after this. */
const CLOSE_GRACE_MS = 1_000;

function destroy(socket: Duplex): void {
  socket.destroy();
}

type Tracked = Duplex & { [kSession]?: Session; [kKey]?: string; [kRelayed]?: true };

export class LiveConnections {
  readonly #byId = new Map<string, Set<Session | Duplex>>();
  readonly #perIdentity = new Map<string, number>();
  readonly #log: Logger;
  readonly #keyPrefix: string;
  readonly stats: RelayStats = { maxBuffered: 0, pauses: 0 };
  readonly #onSessionClose: (this: Tracked) => void;
  readonly #onKeyedClose: (this: Tracked) => void;

  /** `keyPrefix`: how credential ids are filed (REVOKED_KEY_PREFIX). */
  constructor(authLog: Logger, keyPrefix: string) {
    this.#log = authLog;
    this.#keyPrefix = keyPrefix;
    const live = this;
    // One handler per registry, not a closure per connection.
    this.#onSessionClose = function () {
      const s = this[kSession];
      if (s !== undefined) live.#forget(s);
    };
    this.#onKeyedClose = function () {
      const id = this[kKey];
      if (id !== undefined) live.#drop(live.#keyPrefix + id, this);
    };
  }

  /** Open WebSockets of an identity (this process). */
  count(name: string): number {
    return this.#perIdentity.get(name) ?? 0;
  }

  open(i: SessionInit): Session {
    const s = new Session(this, i);
    this.#perIdentity.set(s.name, this.count(s.name) + 1);
    for (const id of s.ids) this.#add(id, s);
    const socket = s.socket as Tracked;
    socket[kSession] = s;
    socket[kRelayed] = true;
    socket.once('close', this.#onSessionClose);
    arm(s);
    return s;
  }

  /**
   * A keep-alive connection admitted with credential `keyId` (API key or Basic), filed so that a
   * revocation closes it. The same id again (every later request) costs one compare.
   */
  noteKey(socket: Duplex, keyId: string): void {
    const t = socket as Tracked;
    const was = t[kKey];
    if (was === keyId) return;
    if (was === undefined) socket.on('close', this.#onKeyedClose);
    else this.#drop(this.#keyPrefix + was, t);
    t[kKey] = keyId;
    this.#add(this.#keyPrefix + keyId, t);
  }

  /** Closes every WebSocket and keep-alive connection admitted with one of `ids`; returns how many. */
  closeOf(ids: Iterable<string>): number {
    let closed = 0;
    for (const id of ids) {
      const open = this.#byId.get(id);
      if (open === undefined) continue;
      for (const x of [...open]) {
        if (x instanceof Session) {
          this.end(x, 1008, 'credential revoked', 'revoked');
        } else {
          if ((x as Tracked)[kSession] !== undefined) continue; // upgraded since: its Session closes it
          this.#log.warn({ event: 'connection', outcome: 'closed', reason: 'revoked', credential: id, remoteIp: (x as { remoteAddress?: string }).remoteAddress }, 'connection closed: its credential was revoked');
          x.destroy();
        }
        closed++;
      }
    }
    return closed;
  }

  /**
   * Ends a WebSocket the broker no longer relays: the upstream side first (a message being relayed
   * goes nowhere), then a close frame with `code`/`reason` to the client, whose socket is cut if
   * it does not close within a second. Logged once.
   */
  end(s: Session, code: number, reason: string, why: EndReason, detail?: string): void {
    if (s.ended !== undefined) return;
    s.ended = why;
    this.#log.warn({ event: 'websocket', outcome: 'closed', reason: why, code, principal: s.name, route: s.route, reqId: s.reqId, remoteIp: (s.socket as { remoteAddress?: string }).remoteAddress, ...(detail !== undefined ? { detail } : {}) }, `WebSocket closed: ${reason}`);
    const t = s.target;
    if (t !== undefined) {
      if (t.readyState === WebSocket.OPEN) t.close(code, reason);
      else if (t.readyState === WebSocket.CONNECTING) t.terminate();
    }
    const src = s.source;
    if (src === undefined) return void s.socket.destroy();
    if (src.readyState !== WebSocket.OPEN) return; // closing already (ws sent 1009 itself)
    src.close(code, reason);
    src.pause();
    s.socket.end();
    setTimeout(destroy, CLOSE_GRACE_MS, s.socket).unref();
  }

  #add(id: string, x: Session | Duplex): void {
    let open = this.#byId.get(id);
    if (open === undefined) this.#byId.set(id, (open = new Set()));
    open.add(x);
  }

  #drop(id: string, x: Session | Duplex): void {
    const open = this.#byId.get(id);
    if (open === undefined) return;
    open.delete(x);
    if (open.size === 0) this.#byId.delete(id);
  }

  #forget(s: Session): void {
    disarm(s);
    const n = this.count(s.name) - 1;
    if (n > 0) this.#perIdentity.set(s.name, n);
    else this.#perIdentity.delete(s.name);
    for (const id of s.ids) this.#drop(id, s);
  }
}
