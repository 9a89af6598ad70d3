/**
 * Bytes allocated on the V8 heap, from a process run with `node --trace-gc-nvp`.
 *
 * Node 24 has no API for the total bytes a process has allocated (v8.getHeapStatistics() reports
 * what is live, not what was allocated and died), and the proxy runs in its own process anyway.
 * What V8 does report, with --trace-gc-nvp, is one line per garbage collection with
 * `start_object_size` (bytes of objects on the heap when that collection starts) and
 * `end_object_size` (when it ends), and `allocated` = this start_object_size − the previous
 * collection's end_object_size: everything allocated on the heap (every space, large objects too)
 * between two collections. Allocation is exactly that difference, because the heap grows between
 * collections only by allocating, and shrinks only in collections.
 *
 * The rate over a window: the collections whose timestamps fall inside it, and the sum of their
 * `allocated` except the first one's (that covers the time before the first collection), over the
 * time from the first to the last of them. Per request: that rate ÷ the requests per second the
 * load generator counted in the same round. Only whole collection-to-collection spans are counted,
 * so the edges of the window do not matter, as long as it holds a few collections; and the
 * timestamps (milliseconds since the isolate started) need only be roughly aligned with the window.
 * Off-heap memory (Buffers' backing stores, OpenSSL's and the kernel's buffers) is not counted.
 *
 * The method is checked against a child process that allocates a known number of arrays of a known
 * size (`calibrate()`; `node scripts/bench/gc-alloc.ts --self-test`): once with arrays that die
 * young (scavenges only), once with arrays kept alive long enough to be promoted (mark-compacts
 * too). The size of one iteration's allocation is measured in that child (used_heap_size before and
 * after 1,000 retained iterations, after a full collection), not assumed.
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';

export interface GcEvent {
  isolate: string;
  /** Milliseconds since the isolate started, when the collection's line was printed (its end). */
  ms: number;
  /** s: scavenge, mc: mark-compact, mmc: minor mark-compact … */
  type: string;
  pauseMs: number;
  allocated: number;
  startObjectSize: number;
  endObjectSize: number;
}

const LINE = /^\[(\d+):(0x[0-9a-f]+)(?::\d+)?\]\s+(\d+(?:\.\d+)?) ms: (pause=.*)$/;

/** The collections in --trace-gc-nvp output; other lines (and any a concurrent writer broke) are skipped. */
export function parseTraceGcNvp(text: string): GcEvent[] {
  const out: GcEvent[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    const f = new Map<string, string>();
    for (const kv of (m[4] as string).split(' ')) {
      const i = kv.indexOf('=');
      if (i > 0) f.set(kv.slice(0, i), kv.slice(i + 1));
    }
    const num = (k: string) => Number(f.get(k));
    const e: GcEvent = { isolate: `${m[1]}:${m[2]}`, ms: Number(m[3]), type: f.get('gc') ?? '?', pauseMs: num('pause'), allocated: num('allocated'), startObjectSize: num('start_object_size'), endObjectSize: num('end_object_size') };
    if (Number.isFinite(e.allocated) && Number.isFinite(e.ms)) out.push(e);
  }
  return out;
}

export interface WindowAllocation {
  /** Bytes allocated between the first and the last collection in the window (every isolate). */
  bytes: number;
  /** From the first to the last collection in the window (the main isolate: the one with most collections). */
  seconds: number;
  /** Σ over isolates of bytes ÷ seconds. */
  bytesPerSecond: number;
  collections: number;
  scavenges: number;
  markCompacts: number;
  /** Pauses of the collections in the window: total, and the longest. */
  pauseMs: number;
  maxPauseMs: number;
}

/** Allocation rate over [fromMs, toMs] (the isolate's clock: ms since it started). */
export function allocationInWindow(events: GcEvent[], fromMs: number, toMs: number): WindowAllocation {
  const byIsolate = new Map<string, GcEvent[]>();
  for (const e of events) {
    if (e.ms < fromMs || e.ms > toMs) continue;
    const list = byIsolate.get(e.isolate) ?? [];
    list.push(e);
    byIsolate.set(e.isolate, list);
  }
  let bytes = 0;
  let bytesPerSecond = 0;
  let seconds = 0;
  let most = 0;
  const all: GcEvent[] = [];
  for (const list of byIsolate.values()) {
    list.sort((p, q) => p.ms - q.ms);
    all.push(...list);
    if (list.length < 2) continue;
    const b = list.slice(1).reduce((s, e) => s + e.allocated, 0);
    const s = ((list[list.length - 1] as GcEvent).ms - (list[0] as GcEvent).ms) / 1000;
    if (s <= 0) continue;
    bytes += b;
    bytesPerSecond += b / s;
    if (list.length > most) {
      most = list.length;
      seconds = s;
    }
  }
  return {
    bytes,
    seconds,
    bytesPerSecond: most >= 2 ? bytesPerSecond : NaN,
    collections: all.length,
    scavenges: all.filter((e) => e.type === 's').length,
    markCompacts: all.filter((e) => e.type === 'mc').length,
    pauseMs: all.reduce((s, e) => s + e.pauseMs, 0),
    maxPauseMs: all.reduce((s, e) => Math.max(s, e.pauseMs), 0),
  };
}

// ---------------------------------------------------------------- the check of the method

export interface CalibrationPhase {
  phase: string;
  /** Bytes one iteration allocates (measured in the child: used_heap_size around 1,000 retained iterations). */
  bytesPerIteration: number;
  iterations: number;
  seconds: number;
  /** iterations × bytesPerIteration ÷ seconds */
  knownBytesPerSecond: number;
  measuredBytesPerSecond: number;
  /** measured ÷ known: 1.00 is exact. */
  ratio: number;
  collections: number;
  markCompacts: number;
}

const ARRAY_LENGTH = 1000;

/** The calibration child: allocates arrays for a while, in two phases, and reports on stderr. */
function calibrationChild(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  // sink[i & mask] = a fresh array: it lives until the ring comes round again
  // spin: work between allocations (no allocation of its own), to bring the rate near a proxy's
  let acc = 0;
  const work = (n: number, sink: unknown[], mask: number, spin: number) => {
    for (let i = 0; i < n; i++) {
      sink[i & mask] = new Array(ARRAY_LENGTH);
      for (let j = 0; j < spin; j++) acc = (acc * 31 + j) | 0;
    }
  };
  const phases: Array<{ phase: string; ring: number; ms: number; spin: number }> = [
    { phase: 'short-lived arrays, as fast as possible (scavenges)', ring: 64, ms: 1000, spin: 0 },
    { phase: 'short-lived arrays, about 200 MB/s (scavenges)', ring: 64, ms: 2500, spin: 5_000 },
    { phase: 'arrays kept for 4,096 iterations, old generation capped at 96 MB (promotion, mark-compacts)', ring: 4096, ms: 1500, spin: 0 },
  ];
  const out: Array<Record<string, unknown>> = [];
  for (const p of phases) {
    const sink: unknown[] = new Array(p.ring).fill(null);
    work(p.ring * 8, sink, p.ring - 1, p.spin); // warm: optimised by now
    const t0 = performance.now();
    let iterations = 0;
    while (performance.now() - t0 < p.ms) {
      work(64, sink, p.ring - 1, p.spin);
      iterations += 64;
    }
    const t1 = performance.now();
    sink.fill(null);
    // one iteration's bytes, measured with the same (optimised) function
    const sizes: number[] = [];
    for (let k = 0; k < 3; k++) {
      const holder: unknown[] = new Array(1024).fill(null);
      gc();
      gc();
      const h0 = v8.getHeapStatistics().used_heap_size;
      work(1000, holder, 1023, 0);
      const h1 = v8.getHeapStatistics().used_heap_size;
      sizes.push((h1 - h0) / 1000);
      holder.fill(null);
    }
    sizes.sort((x, y) => x - y);
    out.push({ phase: p.phase, t0, t1, iterations, bytesPerIteration: sizes[1] });
  }
  process.stderr.write(`${JSON.stringify({ calibration: out, acc })}\n`);
}

/** Runs the child under --trace-gc-nvp and compares the measured allocation rate with the known one. */
export function calibrate(node = process.execPath): CalibrationPhase[] {
  const r = spawnSync(node, ['--trace-gc-nvp', '--expose-gc', '--max-old-space-size=96', import.meta.filename, '--calibration-child'], { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`calibration child failed (${r.status}): ${r.stderr.slice(-500)}`);
  const line = r.stderr.split('\n').find((l) => l.startsWith('{"calibration"'));
  if (!line) throw new Error(`calibration child printed no result: ${r.stderr.slice(-500)}`);
  const phases = (JSON.parse(line) as { calibration: Array<{ phase: string; t0: number; t1: number; iterations: number; bytesPerIteration: number }> }).calibration;
  const events = parseTraceGcNvp(r.stdout);
  return phases.map((p) => {
    const seconds = (p.t1 - p.t0) / 1000;
    const known = (p.iterations * p.bytesPerIteration) / seconds;
    // performance.now() counts from the process's start, the trace from the isolate's: close enough
    // for whole collection-to-collection spans; a little is trimmed at both ends.
    const w = allocationInWindow(events, p.t0 + 150, p.t1 - 50);
    return { phase: p.phase, bytesPerIteration: p.bytesPerIteration, iterations: p.iterations, seconds, knownBytesPerSecond: known, measuredBytesPerSecond: w.bytesPerSecond, ratio: w.bytesPerSecond / known, collections: w.collections, markCompacts: w.markCompacts };
  });
}

if (import.meta.main) {
  if (process.argv.includes('--calibration-child')) calibrationChild();
  else if (process.argv.includes('--self-test')) {
    for (const p of calibrate()) {
      process.stdout.write(
        `${p.phase}: ${p.iterations.toLocaleString('en-US')} iterations of ${p.bytesPerIteration.toFixed(0)} B in ${p.seconds.toFixed(2)} s: known ${(p.knownBytesPerSecond / 1e6).toFixed(1)} MB/s, measured ${(p.measuredBytesPerSecond / 1e6).toFixed(1)} MB/s over ${p.collections} collections (${p.markCompacts} mark-compacts): ratio ${p.ratio.toFixed(3)}\n`,
      );
    }
  } else {
    process.stderr.write('usage: node scripts/bench/gc-alloc.ts --self-test\n');
    process.exit(2);
  }
}
