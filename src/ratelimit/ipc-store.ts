/**
 * One budget for several workers on one machine (node:cluster) without Redis: the primary holds
 * the memory store and answers its workers over the IPC channel. A decision costs one message
 * round trip; bans are broadcast to every worker.
 */
import type { Worker } from 'node:cluster';
import type { LimitCheck } from './policy.ts';
import type { MemoryStore } from './memory-store.ts';
import type { BucketState, ByteCount, ByteTotal, SharedStore, Verdict } from './store.ts';

const TAG = 'broker-store';

type Op =
  | { op: 'take'; checks: LimitCheck[] }
  | { op: 'acquire'; key: string; max: number }
  | { op: 'release'; key: string }
  | { op: 'bytes'; counts: ByteCount[] }
  | { op: 'failure'; ip: string; windowMs: number }
  | { op: 'ban'; ip: string; ms: number }
  | { op: 'unban'; key: string }
  | { op: 'peek'; key: string }
  | { op: 'bans' };

interface Request {
  tag: typeof TAG;
  id: number;
  call: Op;
}

interface Reply {
  tag: typeof TAG;
  id?: number;
  result?: unknown;
  ban?: [string, number];
}

/** Primary side: answers every worker from one memory store. */
export function serveStore(store: MemoryStore, worker: Worker): void {
  worker.on('message', (m: Request) => {
    if (!m || m.tag !== TAG) return;
    const c = m.call;
    let result: unknown;
    switch (c.op) {
      case 'take': result = store.take(c.checks); break;
      case 'acquire': result = store.acquire(c.key, c.max); break;
      case 'release': store.release(c.key); return;
      case 'bytes': result = store.addBytes(c.counts); break;
      case 'failure': result = store.countFailure(c.ip, c.windowMs); break;
      case 'ban': store.ban(c.ip, c.ms); result = true; break;
      case 'unban': store.unban(c.key); result = true; break;
      case 'peek': result = store.peekBucket(c.key) ?? null; break;
      case 'bans': result = store.activeBans(); break;
    }
    if (worker.isConnected()) worker.send({ tag: TAG, id: m.id, result } satisfies Reply);
  });
}

/** Primary side: tells every worker about each ban. */
export function broadcastBans(store: MemoryStore, workers: () => Iterable<Worker>): void {
  store.onBan((ip, until) => {
    for (const w of workers()) if (w.isConnected()) w.send({ tag: TAG, ban: [ip, until] } satisfies Reply);
  });
}

/** Worker side. */
export class IpcStore implements SharedStore {
  readonly kind = 'memory' as const;
  #next = 1;
  readonly #pending = new Map<number, (v: unknown) => void>();
  readonly #banListeners: Array<(ip: string, until: number) => void> = [];
  readonly #onMessage = (m: Reply) => {
    if (!m || m.tag !== TAG) return;
    if (m.ban) for (const l of this.#banListeners) l(m.ban[0], m.ban[1]);
    if (m.id !== undefined) {
      const resolve = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      resolve?.(m.result);
    }
  };

  constructor() {
    process.on('message', this.#onMessage);
  }

  #call<T>(call: Op): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, resolve as (v: unknown) => void);
      (process.send as NonNullable<typeof process.send>)({ tag: TAG, id, call } satisfies Request, undefined, {}, (err) => {
        if (err) {
          this.#pending.delete(id);
          reject(err);
        }
      });
    });
  }

  take(checks: readonly LimitCheck[]): Promise<Verdict> {
    return this.#call({ op: 'take', checks: [...checks] });
  }

  acquire(key: string, max: number): Promise<boolean> {
    return this.#call({ op: 'acquire', key, max });
  }

  release(key: string): void {
    process.send?.({ tag: TAG, id: 0, call: { op: 'release', key } } satisfies Request);
  }

  addBytes(counts: readonly ByteCount[]): Promise<ByteTotal[]> {
    return this.#call({ op: 'bytes', counts: [...counts] });
  }

  countFailure(ip: string, windowMs: number): Promise<number> {
    return this.#call({ op: 'failure', ip, windowMs });
  }

  async ban(ip: string, ms: number): Promise<void> {
    await this.#call({ op: 'ban', ip, ms });
  }

  async unban(key: string): Promise<void> {
    await this.#call({ op: 'unban', key });
  }

  async peekBucket(key: string): Promise<BucketState | undefined> {
    return (await this.#call<BucketState | null>({ op: 'peek', key })) ?? undefined;
  }

  onBan(listener: (ip: string, until: number) => void): void {
    this.#banListeners.push(listener);
  }

  activeBans(): Promise<Array<[string, number]>> {
    return this.#call({ op: 'bans' });
  }

  async close(): Promise<void> {
    process.off('message', this.#onMessage);
  }
}
