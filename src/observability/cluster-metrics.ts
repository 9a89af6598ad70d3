/**
 * One scrape for the whole broker under `--workers N`. The workers share the admin listener's
 * socket, so a scrape reaches one of them; by itself it would answer with its own counts only
 * (a share of the requests, and counters that jump between workers from scrape to scrape).
 *
 * So a worker asks the primary, and the primary gathers every worker's registry with prom-client's
 * cluster aggregation (AggregatorRegistry.clusterMetrics: each worker answers with its registry as
 * JSON, the primary adds them up series by series, each gauge by its own `aggregator`). A worker
 * that does not answer within prom-client's 5 s fails the scrape rather than leaving its share out:
 * a partial sum would look like a counter reset to Prometheus.
 */
import type { Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { createMetrics, type Metrics } from './metrics.ts';

/** Messages between a worker and the primary (the rate-limit store's IPC uses a tag of its own). */
const TAG = 'broker:metrics';
/** Longer than prom-client's own 5 s, so the primary's answer (metrics or its timeout) comes first. */
const ASK_TIMEOUT_MS = 8_000;

interface Ask {
  tag: typeof TAG;
  id: number;
}
interface Answer {
  tag: typeof TAG;
  id: number;
  text?: string;
  error?: string;
}

/**
 * A worker's metrics: its own registry, answered to the primary's collection requests, and a
 * scrape that returns every worker's sum. Called as early as possible in the worker, so that a
 * scrape during its start finds it listening (with an empty registry until the broker is built).
 */
export function workerMetrics(): Metrics {
  const metrics = createMetrics();
  AggregatorRegistry.setRegistries([metrics.registry]);
  new AggregatorRegistry(); // installs prom-client's answer to the primary's requests
  let next = 0;
  const scrape = (): Promise<string> =>
    new Promise((resolve, reject) => {
      if (!process.send || !process.connected) return reject(new Error('no connection to the primary process'));
      const id = next++;
      const onMessage = (m: unknown) => {
        const a = m as Partial<Answer> | null;
        if (a?.tag !== TAG || a.id !== id) return;
        done();
        if (typeof a.text === 'string') resolve(a.text);
        else reject(new Error(a.error ?? 'no metrics from the primary'));
      };
      const timer = setTimeout(() => (done(), reject(new Error(`the primary did not answer within ${ASK_TIMEOUT_MS} ms`))), ASK_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        process.off('message', onMessage);
      };
      process.on('message', onMessage);
      process.send({ tag: TAG, id } satisfies Ask);
    });
  return { ...metrics, scrape };
}

/** The primary's part: answers a worker's scrape with the sum of every connected worker's registry. */
export function servePrimaryMetrics(cluster: { on(event: 'message', fn: (w: Worker, m: unknown) => void): unknown }): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, m) => {
    const ask = m as Partial<Ask> | null;
    if (ask?.tag !== TAG || typeof ask.id !== 'number') return;
    const id = ask.id;
    const reply = (a: Answer) => {
      if (worker.isConnected()) worker.send(a);
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ tag: TAG, id, text }),
      (err: unknown) => reply({ tag: TAG, id, error: `collecting the workers' metrics: ${(err as Error).message}` }),
    );
  });
}
