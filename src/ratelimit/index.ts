import type { Logger } from 'pino';
import type { BrokerConfig } from '../config/index.ts';
import { MemoryStore } from './memory-store.ts';
import { RedisStore } from './redis-store.ts';
import type { SharedStore } from './store.ts';

export { compileLimits, stricter, type LimitPlan, type LimitPolicy, type LimitCheck } from './policy.ts';
export { take, idleTtlMs, type BucketSpec, type BucketState, type TakeResult } from './bucket.ts';
export { MemoryStore } from './memory-store.ts';
export { RedisStore } from './redis-store.ts';
export type { SharedStore, Verdict } from './store.ts';

export function createStore(c: BrokerConfig, errorLog: Logger): SharedStore {
  return c.rateLimit.store === 'memory' ? new MemoryStore() : new RedisStore(c, errorLog);
}
