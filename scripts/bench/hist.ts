/**
 * A latency histogram with logarithmic buckets (2% wide), mergeable across processes: a count per
 * bucket, plus exact min and max. Values are microseconds.
 */
const GROWTH = 1.02;
const LOG_GROWTH = Math.log(GROWTH);
/** Bucket 0 holds everything up to 1 µs; the last one everything past ~10 minutes. */
const BUCKETS = Math.ceil(Math.log(600e6) / LOG_GROWTH) + 2;

export interface HistogramJson {
  counts: number[];
  n: number;
  min: number;
  max: number;
  sum: number;
}

export class Histogram {
  counts = new Float64Array(BUCKETS);
  n = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  record(us: number): void {
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / LOG_GROWTH));
    this.counts[i] = (this.counts[i] as number) + 1;
    this.n++;
    this.sum += us;
    if (us < this.min) this.min = us;
    if (us > this.max) this.max = us;
  }

  merge(o: HistogramJson | Histogram): this {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] = (this.counts[i] as number) + (o.counts[i] ?? 0);
    this.n += o.n;
    this.sum += o.sum;
    if (o.n) {
      this.min = Math.min(this.min, o.min);
      this.max = Math.max(this.max, o.max);
    }
    return this;
  }

  /** The upper edge of the bucket holding the q-th quantile (0 < q ≤ 1), clamped to [min, max]. */
  quantile(q: number): number {
    if (this.n === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, GROWTH ** i));
    }
    return this.max;
  }

  toJSON(): HistogramJson {
    // trailing zero buckets are left off to keep IPC messages small
    let last = BUCKETS - 1;
    while (last > 0 && this.counts[last] === 0) last--;
    return { counts: Array.from(this.counts.subarray(0, last + 1)), n: this.n, min: this.n ? this.min : 0, max: this.max, sum: this.sum };
  }

  static from(j: HistogramJson): Histogram {
    return new Histogram().merge(j);
  }
}
