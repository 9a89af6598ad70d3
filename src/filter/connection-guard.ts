/**
 * Admission at TCP accept, before any TLS work (a full mTLS handshake costs milliseconds of CPU,
 * a refused accept almost nothing): global IP allow/deny lists, temporary bans, open connections
 * per address and new connections per address (token bucket). Also the bookkeeping that leads to
 * bans: failed handshakes and 401/403 answers per address within a window.
 */
import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { storeLayout } from '../pki/layout.ts';
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

/** The store key of a ban on one certificate at one address (an address ban's key is the address itself). */
export function certBanKey(fingerprint: string, ip: string): string {
  return `cert:${fingerprint}@${ip}`;
}
const CERT_PREFIX = 'cert:';

/** A certificate's SHA-256 fingerprint as the auth log writes it: lower-case hex without colons. */
function fingerprintOf(cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(':', '').toLowerCase();
}

/** Every certificate in a PEM bundle (the client CA file: this broker's root and intermediates). */
function certificatesIn(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // not a certificate: skipped
    }
  }
  return out;
}

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
  /** Bans on one certificate at one address, by certBanKey(); checked right after the handshake. */
  readonly #certBanned = new Map<string, number>();
  /** This broker's client CA certificates: a refused certificate they signed counts against itself. */
  #cas: X509Certificate[] = [];
  readonly #sweeper: NodeJS.Timeout;
  /** Counts by refusal reason, for metrics. */
  readonly refused: Record<AcceptRefusal, number> = { 'ip not allowed': 0, banned: 0, 'too many connections': 0, 'connection rate': 0 };
  /** Certificates refused right after their handshake because of a ban on that certificate at that address. */
  refusedCertBans = 0;

  constructor(c: BrokerConfig, store: SharedStore, log: Logger, audit?: Logger) {
    this.update(c);
    this.#store = store;
    this.#log = log;
    this.#audit = audit;
    store.onBan((key, until) => this.#noteBan(key, until));
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
    try {
      this.#cas = certificatesIn(readFileSync(c.tls.clientCa ?? storeLayout(c.pki.dir).chain, 'utf8'));
    } catch {
      this.#cas = [];
    }
  }

  #noteBan(key: string, until: number): void {
    if (key.startsWith(CERT_PREFIX)) this.#certBanned.set(key, until);
    else this.#banned.set(key, until);
  }

  /**
   * Whether a refused certificate was issued by this broker's CA: its issuer name is one of our CA
   * certificates' subject and that CA's key verifies its signature. Only then does the failure
   * count against the certificate (and the address) rather than the address alone: anyone can
   * make a certificate with any fingerprint, but not one our CA signed.
   */
  issuedByUs(cert: X509Certificate): boolean {
    for (const ca of this.#cas) {
      try {
        if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) return true;
      } catch {
        // an unusable key or signature: not ours
      }
    }
    return false;
  }

  isCertBanned(fingerprint: string, ip: string, now = Date.now()): boolean {
    if (this.#certBanned.size === 0) return false;
    const key = certBanKey(fingerprint, ip);
    const until = this.#certBanned.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#certBanned.delete(key);
    return false;
  }

  /** Loads the bans already in force (from other replicas, when the store is shared). */
  async start(): Promise<void> {
    for (const [key, until] of await this.#store.activeBans()) this.#noteBan(key, until);
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
    // A ban on one certificate at one address can only be seen once the certificate is: right
    // after the handshake, before the listener admits it. Costs nothing while no such ban exists.
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      if (this.#certBanned.size === 0) return;
      const cert = socket.getPeerX509Certificate();
      if (cert === undefined) return;
      const ip = plainIp(socket.remoteAddress ?? '');
      const fingerprint = fingerprintOf(cert);
      if (!this.isCertBanned(fingerprint, ip)) return;
      this.refusedCertBans++;
      this.#log.warn({ event: 'handshake', outcome: 'refused', reason: 'banned', banKey: 'cert', fingerprint, remoteIp: ip }, 'client refused: this certificate is banned at this address');
      channels.reject.publish({ kind: 'handshake:banned', remoteIp: ip } satisfies RejectEvent);
      socket.destroy();
    });
  }

  /**
   * A failed handshake or a 401/403 from `ip`: counts it, and bans past the threshold. A handshake
   * refused with a certificate this broker's CA issued (`cert`, see issuedByUs) counts against that
   * certificate at that address, and its ban refuses only that certificate from that address;
   * every other failure counts against the address alone, and its ban refuses the address at accept.
   */
  async failure(ip: string, kind: 'handshake' | 'request', cert?: X509Certificate): Promise<void> {
    if (!this.#bans.enabled) return;
    const address = plainIp(ip);
    if (this.isBanned(address)) return;
    const fingerprint = kind === 'handshake' && cert !== undefined && this.issuedByUs(cert) ? fingerprintOf(cert) : undefined;
    const banKey = fingerprint === undefined ? address : certBanKey(fingerprint, address);
    if (fingerprint !== undefined && this.isCertBanned(fingerprint, address)) return;
    const count = await this.#store.countFailure(`${kind}:${banKey}`, this.#banWindowMs);
    const threshold = kind === 'handshake' ? this.#bans.failedHandshakes : this.#bans.deniedRequests;
    if (count >= threshold) {
      const until = Date.now() + this.#banMs;
      const reason = kind === 'handshake' ? 'failed handshakes' : 'denied requests';
      if (fingerprint === undefined) {
        this.#banned.set(address, until);
        const line = { event: 'ban', banKey: 'ip', remoteIp: address, reason, count, windowMs: this.#banWindowMs, durationMs: this.#banMs };
        this.#log.warn(line, 'address banned');
        this.#audit?.info(line, 'address banned');
      } else {
        this.#certBanned.set(banKey, until);
        const line = { event: 'ban', banKey: 'cert', fingerprint, remoteIp: address, reason, count, windowMs: this.#banWindowMs, durationMs: this.#banMs };
        this.#log.warn(line, 'certificate banned at this address');
        this.#audit?.info(line, 'certificate banned at this address');
      }
      channels.ban.publish({ remoteIp: address, reason, durationMs: this.#banMs } satisfies BanEvent);
      await this.#store.ban(banKey, this.#banMs);
    }
  }

  sweep(now = Date.now()): void {
    for (const [ip, a] of this.#arrivals) if (a.expires <= now) this.#arrivals.delete(ip);
    for (const [ip, until] of this.#banned) if (until <= now) this.#banned.delete(ip);
    for (const [key, until] of this.#certBanned) if (until <= now) this.#certBanned.delete(key);
  }

  /** Bans in force now, as this replica knows them. */
  get activeBans(): number {
    const now = Date.now();
    let n = 0;
    for (const until of this.#banned.values()) if (until > now) n++;
    for (const until of this.#certBanned.values()) if (until > now) n++;
    return n;
  }

  /** Bans in force now with their end (ms), as this replica knows them: the address, or `cert:<fingerprint>@<ip>`. */
  bans(now = Date.now()): Array<[string, number]> {
    const list: Array<[string, number]> = [];
    for (const m of [this.#banned, this.#certBanned]) for (const [key, until] of m) if (until > now) list.push([key, until]);
    return list;
  }

  /**
   * Lifts a ban (the operator's console): here at once, and through the store for every replica
   * (which also forgets its failure counts). False when no such ban is in force here.
   */
  async unban(key: string): Promise<boolean> {
    const had = (this.#banned.get(key) ?? this.#certBanned.get(key) ?? 0) > Date.now();
    this.#banned.delete(key);
    this.#certBanned.delete(key);
    await this.#store.unban?.(key);
    return had;
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
