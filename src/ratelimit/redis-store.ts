/**
 * The Redis store, for several replicas (or workers) sharing one budget. Each decision is one
 * atomic Lua script on Redis's own clock (TIME), so replicas with skewed clocks still agree.
 * Bans are written as keys with a TTL and announced on a channel, so every replica refuses the
 * address at accept without asking Redis per connection.
 *
 * When Redis cannot be reached the store answers by the configured policy (fail open: admit;
 * fail closed: refuse), logs the outage once and its end once, and ioredis reconnects by itself.
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/compile.ts';
import { refillPerMs, type BucketState, type TakeResult } from './bucket.ts';
import type { LimitCheck } from './policy.ts';
import { combine, type ByteCount, type ByteTotal, type SharedStore, type Verdict } from './store.ts';
import { channels, type StoreEvent } from '../channels.ts';

// KEYS: bucket keys. ARGV: per bucket (refill per ms, burst). Returns {allowed, tokens1, at, tokens2, ...}
// with tokens as strings (Redis turns Lua numbers into integers). State is written only when allowed.
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local allowed = 1
for i = 1, n do
  local perMs = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local st = redis.call('HMGET', KEYS[i], 't', 'a')
  local tok = burst
  if st[1] then
    tok = math.min(burst, tonumber(st[1]) + math.max(0, now - tonumber(st[2])) * perMs)
  end
  tokens[i] = tok
  if tok < 1 then allowed = 0 end
end
local out = { allowed }
for i = 1, n do
  local perMs = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tok = tokens[i]
  if allowed == 1 then
    tok = tok - 1
    redis.call('HSET', KEYS[i], 't', tostring(tok), 'a', now)
    redis.call('PEXPIRE', KEYS[i], math.ceil(burst / perMs) + 1000)
  end
  out[#out + 1] = tostring(tok)
end
return out
`;

const ACQUIRE = `
local c = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if c > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
`;

const RELEASE = `
local c = redis.call('DECR', KEYS[1])
if c <= 0 then redis.call('DEL', KEYS[1]) end
return c
`;

// KEYS: counter names. ARGV: per counter (bytes, window ms). Each counter lives in fixed windows on
// Redis's clock (key suffixed with the window's index) and expires a minute after its window.
// Returns {total1, msLeft1, total2, msLeft2, ...}.
const BYTES = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local n = tonumber(ARGV[2 * i - 1])
  local w = tonumber(ARGV[2 * i])
  local index = math.floor(now / w)
  local k = KEYS[i] .. ':' .. w .. ':' .. index
  local total = redis.call('INCRBY', k, n)
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, (index + 1) * w - now + 60000) end
  out[#out + 1] = total
  out[#out + 1] = (index + 1) * w - now
end
return out
`;

const FAILURE = `
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return c
`;

/** In-flight counters expire if a replica dies holding them. */
const INFLIGHT_TTL_MS = 5 * 60_000;

type ScriptClient = Redis & {
  brokerTake(n: number, ...args: Array<string | number>): Promise<string[] | [number, ...string[]]>;
  brokerAcquire(key: string, max: number, ttl: number): Promise<number>;
  brokerRelease(key: string): Promise<number>;
  brokerFailure(key: string, windowMs: number): Promise<number>;
  brokerBytes(n: number, ...args: Array<string | number>): Promise<number[]>;
};

export function redisOptions(c: BrokerConfig): RedisOptions {
  const r = c.redis;
  const password = r.passwordFile ? (readFileSync(r.passwordFile, 'utf8').split(/\r?\n/, 1)[0] ?? '') : process.env.BROKER_REDIS_PASSWORD;
  const url = new URL(c.rateLimit.store);
  const tls = url.protocol === 'rediss:' || r.tls;
  return {
    host: url.hostname,
    port: Number(url.port),
    ...(r.username ? { username: r.username } : {}),
    ...(password ? { password } : {}),
    ...(tls
      ? {
          tls: {
            ...(r.tls?.ca ? { ca: readFileSync(r.tls.ca, 'utf8') } : {}),
            ...(r.tls?.cert ? { cert: readFileSync(r.tls.cert, 'utf8') } : {}),
            ...(r.tls?.key ? { key: readFileSync(r.tls.key, 'utf8') } : {}),
            ...(r.tls?.servername ? { servername: r.tls.servername } : {}),
          },
        }
      : {}),
    keyPrefix: r.keyPrefix,
    commandTimeout: settingsOf(c).redisCommandTimeoutMs,
    connectTimeout: 2_000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    lazyConnect: false,
  };
}

export class RedisStore implements SharedStore {
  readonly kind = 'redis' as const;
  readonly #client: ScriptClient;
  readonly #sub: Redis;
  readonly #failOpen: boolean;
  readonly #log: Logger;
  readonly #channel: string;
  readonly #revokedChannel: string;
  readonly #revokedListeners: Array<(serials: string[]) => void> = [];
  readonly #prefix: string;
  readonly #banListeners: Array<(ip: string, until: number) => void> = [];
  #down = false;
  readonly #onRecover: Array<() => void> = [];
  /** Settles once the ban channel is subscribed (false if the store closed first). */
  readonly #subscribed: Promise<boolean>;
  readonly #connectMs: number;

  constructor(c: BrokerConfig, log: Logger) {
    const opts = redisOptions(c);
    this.#failOpen = c.rateLimit.failOpen;
    this.#log = log;
    this.#prefix = c.redis.keyPrefix;
    this.#channel = `${c.redis.keyPrefix}bans`;
    this.#revokedChannel = `${c.redis.keyPrefix}revoked`;
    this.#connectMs = opts.connectTimeout ?? 2_000;
    this.#client = new Redis(opts) as ScriptClient;
    this.#client.defineCommand('brokerTake', { lua: TAKE });
    this.#client.defineCommand('brokerAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    this.#client.defineCommand('brokerRelease', { numberOfKeys: 1, lua: RELEASE });
    this.#client.defineCommand('brokerFailure', { numberOfKeys: 1, lua: FAILURE });
    this.#client.defineCommand('brokerBytes', { lua: BYTES });
    this.#client.on('error', (err: Error) => this.#outage(err));
    this.#client.on('ready', () => this.#recovered());
    // Bans from every replica, on a connection of its own (a subscribed connection takes no commands).
    // Its SUBSCRIBE waits in the offline queue for as long as Redis is away (no retry limit, no command
    // timeout): a replica started during an outage must still hear bans once Redis is back. Once
    // subscribed, ioredis subscribes again by itself after every reconnection.
    this.#sub = new Redis({ ...opts, keyPrefix: undefined, enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    this.#sub.on('error', () => {});
    this.#subscribed = this.#sub.subscribe(this.#channel, this.#revokedChannel).then(
      () => true,
      () => false,
    );
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel === this.#revokedChannel) {
        // Certificate serials (hex) and revoked credential ids ("key:" + hex).
        const serials = message.split(',').filter((s) => /^(key:)?[0-9a-f]+$/.test(s));
        if (serials.length) for (const l of this.#revokedListeners) l(serials);
        return;
      }
      const [ip, until] = message.split(' ');
      if (ip && until) for (const l of this.#banListeners) l(ip, Number(until));
    });
  }

  /** Resolves once connected and subscribed to bans (or rejects after `ms`): for start-up and tests. */
  async ready(ms = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let onReady: (() => void) | undefined;
    const connected = this.#client.status === 'ready' ? undefined : new Promise<void>((resolve) => this.#client.once('ready', (onReady = resolve)));
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`Redis not ready after ${ms} ms`)), ms)));
    try {
      await Promise.race([Promise.all([connected, this.#subscribed]), late]);
    } finally {
      clearTimeout(timer);
      if (onReady) this.#client.off('ready', onReady);
    }
  }

  /** Whether Redis answers PING now (for /readyz). */
  async ping(): Promise<boolean> {
    try {
      return (await this.#client.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  get down(): boolean {
    return this.#down;
  }

  onRecover(fn: () => void): void {
    this.#onRecover.push(fn);
  }

  #outage(err: unknown): void {
    if (this.#down) return;
    this.#down = true;
    channels.store.publish({ outcome: 'down' } satisfies StoreEvent);
    this.#log.error({ event: 'redis', outcome: 'down', failOpen: this.#failOpen, err: { message: (err as Error)?.message, code: (err as { code?: string })?.code } }, `shared store unreachable; ${this.#failOpen ? 'admitting' : 'refusing'} requests until it is back`);
  }

  #recovered(): void {
    if (!this.#down) return;
    this.#down = false;
    channels.store.publish({ outcome: 'up' } satisfies StoreEvent);
    this.#log.info({ event: 'redis', outcome: 'up' }, 'shared store reachable again');
    for (const fn of this.#onRecover) fn();
  }

  #degraded(limit: number): Verdict {
    return { allowed: this.#failOpen, limit, remaining: 0, resetMs: 0, retryAfterMs: this.#failOpen ? 0 : 1_000, degraded: true };
  }

  async take(checks: readonly LimitCheck[]): Promise<Verdict> {
    const args: Array<string | number> = [checks.length, ...checks.map((c) => c.key)];
    for (const c of checks) args.push(refillPerMs(c.spec), c.spec.burst);
    try {
      const out = await this.#client.brokerTake(...(args as [number, ...Array<string | number>]));
      this.#recovered();
      const allowed = Number(out[0]) === 1;
      const results: TakeResult[] = checks.map((c, i) => {
        const tokens = Number(out[i + 1]);
        const perMs = refillPerMs(c.spec);
        return allowed
          ? { allowed: true, remaining: Math.floor(tokens), resetMs: Math.ceil((c.spec.burst - tokens) / perMs), retryAfterMs: 0, state: { tokens, at: 0 } }
          : { allowed: tokens >= 1, remaining: Math.floor(tokens), resetMs: Math.ceil((c.spec.burst - tokens) / perMs), retryAfterMs: tokens >= 1 ? 0 : Math.ceil((1 - tokens) / perMs), state: { tokens, at: 0 } };
      });
      return combine(checks, results);
    } catch (err) {
      this.#outage(err);
      return this.#degraded(checks[0]?.spec.burst ?? 0);
    }
  }

  async acquire(key: string, max: number, ttlMs = INFLIGHT_TTL_MS): Promise<boolean> {
    try {
      return (await this.#client.brokerAcquire(key, max, ttlMs)) === 1;
    } catch (err) {
      this.#outage(err);
      return this.#failOpen;
    }
  }

  release(key: string): void {
    this.#client.brokerRelease(key).catch(() => {});
  }

  async addBytes(counts: readonly ByteCount[]): Promise<ByteTotal[] | undefined> {
    const args: Array<string | number> = [counts.length, ...counts.map((c) => c.key)];
    for (const c of counts) args.push(c.bytes, c.windowMs);
    try {
      const out = await this.#client.brokerBytes(...(args as [number, ...Array<string | number>]));
      this.#recovered();
      return counts.map((_, i) => ({ total: Number(out[2 * i]), resetMs: Number(out[2 * i + 1]) }));
    } catch (err) {
      this.#outage(err);
      return undefined;
    }
  }

  async countFailure(ip: string, windowMs: number): Promise<number> {
    try {
      return await this.#client.brokerFailure(`fail:${ip}`, windowMs);
    } catch (err) {
      this.#outage(err);
      return 0;
    }
  }

  async ban(ip: string, ms: number): Promise<void> {
    const until = Date.now() + ms;
    try {
      await this.#client.set(`ban:${ip}`, String(until), 'PX', ms);
      await this.#client.publish(this.#channel, `${ip} ${until}`);
    } catch (err) {
      this.#outage(err);
      for (const l of this.#banListeners) l(ip, until); // this replica at least
    }
  }

  /** The bucket as the take script keeps it (tokens, and when on Redis's clock); undefined if none or Redis is down. */
  async peekBucket(key: string): Promise<BucketState | undefined> {
    try {
      const [tokens, at] = await this.#client.hmget(key, 't', 'a');
      return tokens === null || at === null ? undefined : { tokens: Number(tokens), at: Number(at) };
    } catch {
      return undefined; // the console shows no headroom; the outage is the request path's to report
    }
  }

  async unban(key: string): Promise<void> {
    try {
      await this.#client.del(`ban:${key}`, `fail:handshake:${key}`, `fail:request:${key}`);
      await this.#client.publish(this.#channel, `${key} 0`);
    } catch (err) {
      this.#outage(err);
      for (const l of this.#banListeners) l(key, 0); // this replica at least
    }
  }

  onBan(listener: (ip: string, until: number) => void): void {
    this.#banListeners.push(listener);
  }

  async activeBans(): Promise<Array<[string, number]>> {
    const found: Array<[string, number]> = [];
    try {
      // Called right after construction (at start-up), when the connection is still being made;
      // and only once subscribed, so a ban published meanwhile is heard rather than lost.
      await this.ready(this.#connectMs);
      let cursor = '0';
      for (let round = 0; round < 1_000; round++) {
        const [next, keys] = await this.#client.scan(cursor, 'MATCH', `${this.#prefix}ban:*`, 'COUNT', 500);
        for (const k of keys) {
          const value = await this.#client.get(k.slice(this.#prefix.length));
          if (value) found.push([k.slice(this.#prefix.length + 4), Number(value)]);
        }
        cursor = next;
        if (cursor === '0') break;
      }
    } catch (err) {
      this.#outage(err);
    }
    return found;
  }

  /** Revoked serials, kept a little over a year (longer than any leaf lives) and announced to all. */
  async publishRevoked(serials: readonly string[]): Promise<void> {
    if (!serials.length) return;
    const now = Date.now();
    try {
      await this.#client.zadd('revoked', ...serials.flatMap((s) => [now, s]));
      await this.#client.zremrangebyscore('revoked', 0, now - 400 * 86_400_000);
      await this.#client.publish(this.#revokedChannel, serials.join(','));
    } catch (err) {
      this.#outage(err);
    }
  }

  onRevoked(fn: (serials: string[]) => void): void {
    this.#revokedListeners.push(fn);
  }

  async revokedSerials(): Promise<string[]> {
    try {
      await this.ready(2_000).catch(() => {});
      return await this.#client.zrange('revoked', 0, -1);
    } catch (err) {
      this.#outage(err);
      return [];
    }
  }

  async close(): Promise<void> {
    this.#sub.disconnect();
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}
