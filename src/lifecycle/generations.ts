/**
 * The current generation and the replaced ones: a reload swaps in the next generation at once;
 * requests already running finish on the one they started with, which is closed after the drain
 * time (the longest upstream deadline, plus a margin).
 */
import type { Generation } from '../pipeline.ts';

export class Generations {
  #current: Generation;
  readonly #retired = new Map<NodeJS.Timeout, Generation>();

  constructor(first: Generation) {
    this.#current = first;
  }

  get current(): Generation {
    return this.#current;
  }

  swap(next: Generation, drainMs: number): void {
    const previous = this.#current;
    this.#current = next;
    const timer = setTimeout(() => {
      this.#retired.delete(timer);
      void previous.close().catch(() => {});
    }, drainMs).unref();
    this.#retired.set(timer, previous);
  }

  async closeAll(): Promise<void> {
    for (const t of this.#retired.keys()) clearTimeout(t);
    await Promise.all([this.#current.close(), ...[...this.#retired.values()].map((g) => g.close().catch(() => {}))]);
  }
}
