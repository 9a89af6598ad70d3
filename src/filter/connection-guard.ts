/**
 * Admission at TCP accept, before any TLS work (a full mTLS handshake costs milliseconds of CPU,
 * a refused accept almost nothing): global IP allow/deny lists, temporary bans, open connections
 * per address and new connections per address (token bucket). Also the bookkeeping that leads to
 * bans: failed handshakes and 401/403 answers per address within a window.
 */
import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/compile.ts';
import { take, idleTtlMs, type BucketSpec, type BucketState } from '../ratelimit/bucket.ts';
import type { SharedStore } from '../ratelimit/store.ts';
import { compileIpList, ipAdmitted, plainIp, type IpList } from './ip.ts';
import { channels, type BanEvent, type ConnectionEvent, type RejectEvent } from '../channels.ts';

export type AcceptRefusal = 'ip not allowed' | 'banned' | 'too many connections' | 'connection rate';

export const kRefused = Symbol('broker.refusedAtAccept');
/** The plain address an admitted connection was counted under (for its 'close'). */
const kCounted = Symbol('broker.countedIp');

/** The connection events carry no per-connection data: two shared objects instead of one per event. */
const OPENED: ConnectionEvent = Object.freeze({ delta: 1 });
const CLOSED: ConnectionEvent = Object.freeze({ delta: -1 });

type GuardedSocket = Socket & { [kRefused]?: AcceptRefusal; [kCounted]?: string };

export class ConnectionGuard {
  #allow!: IpList;
  #deny!: IpList;
  #maxOpen!: number;
  #rate!: BucketSpec;
  #rateTtlMs!: number;
  #bans!: BrokerConfig['bans'];
  #banWindowMs!: number;
  #banMs!: number;
  readonly #store: SharedStore;
  readonly #log: Logger;
  readonly #audit: Logger | undefined;
  readonly #open = new Map<string, number>();
  readonly #arrivals = new Map<string, BucketState & { expires: number }>();
  readonly #banned = new Map<string, number>();
  readonly #sweeper: NodeJS.Timeout;
  /** Counts by refusal reason, for metrics. */
  readonly refused: Record<AcceptRefusal, number> = { 'ip not allowed': 0, banned: 0, 'too many connections': 0, 'connection rate': 0 };

  constructor(c: BrokerConfig, store: SharedStore, log: Logger, audit?: Logger) {
    this.update(c);
    this.#store = store;
    this.#log = log;
    this.#audit = audit;
    store.onBan((ip, until) => this.#banned.set(ip, until));
    this.#sweeper = setInterval(() => this.sweep(), 5_000).unref();
  }

  /** New filter and ban settings (reload); counters and bans in force are kept. */
  update(c: BrokerConfig): void {
    const n = settingsOf(c);
    this.#allow = compileIpList(c.filters.allowIps);
    this.#deny = compileIpList(c.filters.denyIps);
    this.#maxOpen = c.filters.maxConnectionsPerIp;
    this.#rate = n.connectionRate;
    this.#rateTtlMs = idleTtlMs(n.connectionRate);
    this.#bans = c.bans;
    this.#banWindowMs = n.banWindowMs;
    this.#banMs = n.banMs;
  }

  /** Loads the bans already in force (from other replicas, when the store is shared). */
  async start(): Promise<void> {
    for (const [ip, until] of await this.#store.activeBans()) this.#banned.set(ip, until);
  }

  isBanned(ip: string, now = Date.now()): boolean {
    const until = this.#banned.get(ip);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#banned.delete(ip);
    return false;
  }

  /** The accept decision for one new connection; undefined admits it. */
  check(ip: string, now = Date.now()): AcceptRefusal | undefined {
    if (!ipAdmitted(ip, this.#allow, this.#deny)) return 'ip not allowed';
    if (this.isBanned(ip, now)) return 'banned';
    if ((this.#open.get(ip) ?? 0) >= this.#maxOpen) return 'too many connections';
    const t = take(this.#rate, this.#arrivals.get(ip), now);
    // take() returns a fresh state object: it is kept as it is, with its expiry added
    const state = t.state as BucketState & { expires: number };
    state.expires = now + this.#rateTtlMs;
    this.#arrivals.set(ip, state);
    if (!t.allowed) return 'connection rate';
    return undefined;
  }

  /** Hooks the guard in front of the TLS listener: refused sockets are destroyed before TLS starts. */
  attach(server: Server): void {
    const open = this.#open;
    // One 'close' listener for every admitted socket (on(): 'close' comes once, and the count is
    // taken back only once anyway): no closure per connection.
    const closed = function (this: GuardedSocket): void {
      const ip = this[kCounted];
      if (ip === undefined) return;
      this[kCounted] = undefined;
      channels.connection.publish(CLOSED);
      const n = (open.get(ip) ?? 1) - 1;
      if (n <= 0) open.delete(ip);
      else open.set(ip, n);
    };
    server.prependListener('connection', (socket: GuardedSocket) => {
      const ip = plainIp(socket.remoteAddress ?? '');
      const refusal = this.check(ip);
      if (refusal) {
        this.refused[refusal]++;
        socket[kRefused] = refusal;
        this.#log.debug({ event: 'accept', outcome: 'refused', reason: refusal, remoteIp: ip }, 'connection refused at accept');
        channels.reject.publish({ kind: `accept:${refusal}`, remoteIp: ip } satisfies RejectEvent);
        socket.destroy();
        return;
      }
      open.set(ip, (open.get(ip) ?? 0) + 1);
      channels.connection.publish(OPENED);
      socket[kCounted] = ip;
      socket.on('close', closed);
    });
  }

  /** A failed handshake or a 401/403 from `ip`: counts it, and bans the address past the threshold. */
  async failure(ip: string, kind: 'handshake' | 'request'): Promise<void> {
    if (!this.#bans.enabled) return;
    const address = plainIp(ip);
    if (this.isBanned(address)) return;
    const count = await this.#store.countFailure(`${kind}:${address}`, this.#banWindowMs);
    const threshold = kind === 'handshake' ? this.#bans.failedHandshakes : this.#bans.deniedRequests;
    if (count >= threshold) {
      this.#banned.set(address, Date.now() + this.#banMs);
      const reason = kind === 'handshake' ? 'failed handshakes' : 'denied requests';
      const line = { event: 'ban', remoteIp: address, reason, count, windowMs: this.#banWindowMs, durationMs: this.#banMs };
      this.#log.warn(line, 'address banned');
      this.#audit?.info(line, 'address banned');
      channels.ban.publish({ remoteIp: address, reason, durationMs: this.#banMs } satisfies BanEvent);
      await this.#store.ban(address, this.#banMs);
    }
  }

  sweep(now = Date.now()): void {
    for (const [ip, a] of this.#arrivals) if (a.expires <= now) this.#arrivals.delete(ip);
    for (const [ip, until] of this.#banned) if (until <= now) this.#banned.delete(ip);
  }

  /** Bans in force now, as this replica knows them. */
  get activeBans(): number {
    const now = Date.now();
    let n = 0;
    for (const until of this.#banned.values()) if (until > now) n++;
    return n;
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
