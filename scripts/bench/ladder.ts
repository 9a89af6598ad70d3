/**
 * The benchmark's report on the ladder (scripts/bench/run.ts): per scenario, each target's CPU per
 * request or handshake against nginx and the stock Fastify proxy; what each broker feature costs
 * (the broker with every feature on − the broker with that one feature off, round by round);
 * the allocation table; and issue 13's targets. Pure functions of the rounds and a few facts about
 * the run; run.ts measures, this module only reads.
 */
import type { CalibrationPhase, WindowAllocation } from './gc-alloc.ts';

/**
 * broker: every feature on; broker-ablated: one feature off, or the control; node-tls:
 * tls-server.ts; fastify: fastify-proxy.ts; broker-forward: a broker's forward listener;
 * nginx-forward: nginx as a forward proxy (the forward scenario).
 */
export type TargetKind = 'broker' | 'broker-ablated' | 'nginx' | 'node-tls' | 'fastify' | 'broker-forward' | 'nginx-forward';

export interface RoundResult {
  scenario: string;
  variant: string;
  target: string;
  kind: TargetKind;
  round: number;
  seconds: number;
  ok: number;
  non2xx: number;
  errors: number;
  errorSamples: string[];
  late: number;
  resumed: number;
  rps: number;
  mbps: number;
  p50ms: number;
  p90ms: number;
  p99ms: number;
  p999ms: number;
  maxMs: number;
  meanMs: number;
  proxyCpuS: number;
  proxyCpuUsPerReq: number;
  genCpuS: number;
  genCpuUsPerReq: number;
  upstreamCpuS: number;
  /**
   * CPU the rest of the machine used in the window (busy CPU time from /proc/stat − the target's,
   * the load generators' and the upstream's), and the hypervisor's steal time, as shares of the
   * machine (all cores): another workload during a round shows here.
   */
  otherCpuShare: number;
  stealShare: number;
  prepareMs: number;
  /** The measured window (epoch ms). */
  startAt: number;
  endAt: number;
}

export interface BrokerCheck {
  label: string;
  ablate?: string;
  /** Bytes the broker wrote to its access and auth logs over the whole run. */
  accessLogBytes: number;
  authLogBytes: number;
  /** The broker's own words about BROKER_ABLATE at start (error log), when it said any. */
  notice?: string;
  /** The features it said it switched off (its start warning: {"event":"ablation","off":[…]}). */
  off?: string[];
  /** The feature off by default that this broker runs with ("broker +NAME"); `notice` then says what it did. */
  added?: string;
}

export interface AllocRow extends WindowAllocation {
  target: string;
  label: string;
  rps: number;
  requests: number;
  proxyCpuUsPerReq: number;
  /** Bytes allocated on the V8 heap per request: bytesPerSecond ÷ rps. */
  bytesPerRequest: number;
  /** Collection pauses per second of the window (ms/s). */
  gcPauseMsPerSecond: number;
  /** Lines of --trace-gc-nvp read from the whole run of the process. */
  collectionsTraced: number;
}

export interface LadderSpec {
  scenario: string;
  variant: string;
  title: string;
  per: 'request' | 'handshake';
  rateName: string;
  rate: (r: RoundResult) => number;
  rateDigits: number;
}

export interface LadderRow {
  target: string;
  rounds: number;
  cpuUs: number;
  cpuUsPerRound: number[];
  cpuVsNginx: number;
  cpuVsFastify: number;
  rate: number;
  rateVsNginx: number;
  p50ms: number;
  p99ms: number;
  p99VsNginx: number;
  errors: number;
}

export interface FeatureCost {
  feature: string;
  label: string;
  scenarios: Record<string, { withoutUs: number; costUs: number; share: number; perRound: number[] }>;
  check?: BrokerCheck;
}

export interface AllocInfo {
  seconds: number;
  rows: AllocRow[];
  calibration?: CalibrationPhase[];
  calibrationError?: string;
}

export interface Verdict {
  target: string;
  value: string;
  met: boolean | undefined;
}

/** What the report needs to know about the run besides its rounds. */
export interface LadderContext {
  scenarios: readonly string[];
  connections: number;
  handshakeConcurrency: number;
  /** The fixed offered load of the ka64 latency rounds (0: none), how it was chosen, and whether it was chosen from nginx's rate (not --fixed-rate). */
  fixedRate: number;
  fixedRateHow: string;
  fixedRateAuto: boolean;
  ablationScenarios: readonly string[];
  controlLabel: string;
  /** The label of the build before a change (--baseline), measured like an ablation: its "cost" is what the change costs. */
  baselineLabel?: string | undefined;
  brokerChecks: BrokerCheck[];
  alloc?: AllocInfo | undefined;
  /** The forward scenario: its rounds, and why it or some of its rows did not run. */
  forward?: ForwardInfo | undefined;
}

export interface ForwardInfo {
  rounds: number;
  seconds: number;
  /** host:port of the destination (the upstream). */
  destination?: string;
  skipped?: string;
  notes: string[];
}

/** One row of a forward table: a target against the broker's own reverse row of the same load (and nginx's forward row). */
export interface ForwardRow {
  target: string;
  kind: TargetKind;
  rounds: number;
  cpuUs: number;
  cpuUsPerRound: number[];
  /** A broker's CPU per request ÷ the forward broker's reverse row of the same rounds (median ÷ median, and round by round); NaN for nginx. */
  cpuVsReverse: number;
  cpuVsReversePerRound: number[];
  /** A forward listener's CPU per request ÷ nginx's forward row (the absolute-form load only; NaN for the other rows). */
  cpuVsNginxForward: number;
  rate: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

// ---------------------------------------------------------------- formatting

export const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((p, q) => p - q);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return '–';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)" of a metric over rounds. */
export function cell(rows: readonly RoundResult[], f: (r: RoundResult) => number, digits = 0): string {
  if (!rows.length) return '–';
  const xs = rows.map(f);
  return rows.length > 1 ? `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})` : fmt(xs[0] as number, digits);
}

export function verdict(ok: boolean | undefined): string {
  return ok === undefined ? '–' : ok ? 'met' : '**missed**';
}

const med = (rows: readonly RoundResult[], f: (r: RoundResult) => number) => median(rows.map(f));
const cpuOfRound = (r: RoundResult) => r.proxyCpuUsPerReq;
/** A ratio to three places, for a verdict that turns on the second: 0.996× */
const times3 = (x: number) => (Number.isFinite(x) ? `${fmt(x, 3)}×` : '–');
/** A ratio: 1.23× */
export const times = (x: number) => (Number.isFinite(x) ? `${fmt(x, 2)}×` : '–');

function bytes(n: number): string {
  return n >= 1e6 ? `${fmt(n / 1e6, 1)} MB` : n >= 1e3 ? `${fmt(n / 1e3, 1)} kB` : `${fmt(n)} B`;
}

// ---------------------------------------------------------------- the report

export function ladderReport(results: readonly RoundResult[], ctx: LadderContext) {
  /** A scenario's rounds of one target (by label), in round order. */
  function byLabel(scenario: string, variant: string, label: string): RoundResult[] {
    return results.filter((r) => r.scenario === scenario && r.variant === variant && r.target === label).sort((p, q) => p.round - q.round);
  }

  /** The targets of a scenario's variant, in the order they ran. */
  function labelsOf(scenario: string, variant: string): string[] {
    const out: string[] = [];
    for (const r of results) if (r.scenario === scenario && r.variant === variant && !out.includes(r.target)) out.push(r.target);
    return out;
  }

  function ladderSpecs(): LadderSpec[] {
    const out: LadderSpec[] = [];
    const rps = (r: RoundResult) => r.rps;
    if (ctx.scenarios.includes('ka64')) {
      out.push({ scenario: 'ka64', variant: 'ka64', title: `Keep-alive GET 64 B, ${ctx.connections} connections, closed loop (each target at its own saturation)`, per: 'request', rateName: 'requests/s', rate: rps, rateDigits: 0 });
      if (results.some((r) => r.scenario === 'ka64' && r.variant === 'ka64-rate')) {
        out.push({ scenario: 'ka64', variant: 'ka64-rate', title: `Keep-alive GET 64 B at a fixed offered load of ${fmt(ctx.fixedRate)} requests/s (${ctx.fixedRateHow}), ${ctx.connections} connections`, per: 'request', rateName: 'requests/s', rate: rps, rateDigits: 0 });
      }
    }
    if (ctx.scenarios.includes('ka16k')) out.push({ scenario: 'ka16k', variant: 'ka16k', title: `Keep-alive GET 16 KiB, ${ctx.connections} connections, closed loop`, per: 'request', rateName: 'MB/s', rate: (r) => r.mbps, rateDigits: 1 });
    if (ctx.scenarios.includes('handshake')) out.push({ scenario: 'handshake', variant: 'handshake', title: `A new connection and a full mTLS handshake per request, ${ctx.handshakeConcurrency} at once`, per: 'handshake', rateName: 'handshakes/s', rate: (r) => r.rps, rateDigits: 0 });
    return out;
  }

  function ladderRows(spec: LadderSpec): LadderRow[] {
    const ng = byLabel(spec.scenario, spec.variant, 'nginx');
    const fs = byLabel(spec.scenario, spec.variant, 'fastify-stock');
    return labelsOf(spec.scenario, spec.variant).map((label) => {
      const rows = byLabel(spec.scenario, spec.variant, label);
      const cpu = med(rows, cpuOfRound);
      return {
        target: label,
        rounds: rows.length,
        cpuUs: cpu,
        cpuUsPerRound: rows.map(cpuOfRound),
        cpuVsNginx: cpu / med(ng, cpuOfRound),
        cpuVsFastify: cpu / med(fs, cpuOfRound),
        rate: med(rows, spec.rate),
        rateVsNginx: med(rows, spec.rate) / med(ng, spec.rate),
        p50ms: med(rows, (r) => r.p50ms),
        p99ms: med(rows, (r) => r.p99ms),
        p99VsNginx: med(rows, (r) => r.p99ms) / med(ng, (r) => r.p99ms),
        errors: rows.reduce((n, r) => n + r.errors + r.non2xx, 0),
      };
    });
  }

  function ladderMarkdown(): string[] {
    const out: string[] = [];
    for (const spec of ladderSpecs()) {
      const rows = ladderRows(spec);
      if (!rows.length) continue;
      out.push('');
      out.push(`**${spec.title}**`);
      out.push('');
      out.push(`| target | CPU µs/${spec.per} | ÷ nginx | ÷ fastify-stock | ${spec.rateName} | ÷ nginx | p50 ms | p99 ms | p99 ÷ nginx |`);
      out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
      for (const r of rows) {
        const all = byLabel(spec.scenario, spec.variant, r.target);
        out.push(
          `| ${r.target}${r.errors ? ` (${fmt(r.errors)} errors or non-200)` : ''} | ${cell(all, cpuOfRound)} | ${times(r.cpuVsNginx)} | ${times(r.cpuVsFastify)} | ${cell(all, spec.rate, spec.rateDigits)} | ${times(r.rateVsNginx)} | ${fmt(r.p50ms, 2)} | ${cell(all, (x) => x.p99ms, 2)} | ${times(r.p99VsNginx)} |`,
        );
      }
    }
    return out;
  }

  /** What each feature costs: the broker with every feature on − the broker without it, median and round by round. */
  function featureCosts(): { scenarios: string[]; rows: FeatureCost[]; allOn: Record<string, number> } {
    const scenarios = ctx.ablationScenarios.filter((s) => results.some((r) => r.scenario === s && r.variant === s && r.kind === 'broker-ablated'));
    const labels = [...new Set(results.filter((r) => r.kind === 'broker-ablated').map((r) => r.target))];
    const checks = ctx.brokerChecks;
    const allOn: Record<string, number> = {};
    for (const s of scenarios) allOn[s] = med(byLabel(s, s, 'broker'), cpuOfRound);
    const rows = labels.map((label) => {
      const sc: FeatureCost['scenarios'] = {};
      for (const s of scenarios) {
        // "broker +NAME": a feature that is off by default, switched on: its cost is that broker − the broker
        const plus = label.startsWith('broker +');
        const on = byLabel(s, s, plus ? label : 'broker');
        const off = byLabel(s, s, plus ? 'broker' : label);
        const withoutUs = med(off, cpuOfRound);
        const costUs = med(on, cpuOfRound) - withoutUs;
        const perRound = on.map((x) => {
          const y = off.find((z) => z.round === x.round);
          return y ? x.proxyCpuUsPerReq - y.proxyCpuUsPerReq : NaN;
        });
        sc[s] = { withoutUs, costUs, share: costUs / (allOn[s] as number), perRound };
      }
      const check = checks.find((c) => c.label === label);
      return { feature: label === ctx.controlLabel ? 'none (control: a second broker, every feature on)' : label === ctx.baselineLabel ? 'this change (the broker before it: --baseline)' : label.startsWith('broker +') ? `${label.slice(8)} (off by default: switched on)` : label.replace(/^broker -/, ''), label, scenarios: sc, ...(check ? { check } : {}) };
    });
    return { scenarios, rows, allOn };
  }

  function featureCostMarkdown(): string[] {
    const { scenarios, rows, allOn } = featureCosts();
    if (!rows.length || !scenarios.length) return [];
    const per = (s: string) => (s === 'handshake' ? 'handshake' : 'request');
    const checks = ctx.brokerChecks;
    const main = checks.find((c) => c.label === 'broker');
    const out: string[] = [''];
    out.push(
      `**What each feature costs**: the broker with every feature on − the broker with that one feature off (env BROKER_ABLATE), and for a feature that is off by default ("switched on") the broker with it on − the broker, CPU µs per request or handshake, median over rounds and round by round (the same rounds); a negative cost is noise${rows.some((r) => r.label === ctx.controlLabel) ? ', and so is anything the size of the control row\'s (a second broker with every feature on)' : ''}. "check": what the ablated broker said at start about BROKER_ABLATE (error log) and what it wrote to the log files it would stop writing.`,
    );
    out.push('');
    out.push(`| feature off | ${scenarios.map((s) => `${s}: without it, µs/${per(s)} | ${s}: cost, µs/${per(s)} (share) | ${s}: cost per round`).join(' | ')} | check |`);
    out.push(`| --- | ${scenarios.map(() => '---: | ---: | ---').join(' | ')} | --- |`);
    const check = (c: BrokerCheck | undefined, feature: string) => {
      if (!c) return '–';
      if (c.label === ctx.controlLabel) return 'BROKER_ABLATE unset: any "cost" here is noise';
      if (c.label === ctx.baselineLabel) return 'the build before the change, every feature on';
      if (c.added !== undefined) return c.notice ?? 'config variant: the route\'s identity formats';
      const off = c.off;
      const said = !c.notice ? '**not announced at start** (BROKER_ABLATE ignored?)' : off ? (off.join(',') === feature ? `announced: ${off.join(', ')} off` : `**announced: ${off.join(', ')} off**`) : 'announced at start';
      if (feature === 'accessLog') return `${said}; access.log ${bytes(c.accessLogBytes)} (all on: ${bytes(main?.accessLogBytes ?? NaN)})`;
      if (feature === 'authLog') return `${said}; auth.log ${bytes(c.authLogBytes)} (all on: ${bytes(main?.authLogBytes ?? NaN)})`;
      return said;
    };
    for (const r of rows) {
      const cells = scenarios.map((s) => {
        const x = r.scenarios[s];
        return x ? `${fmt(x.withoutUs)} | ${fmt(x.costUs)} (${fmt(x.share * 100)} %) | ${x.perRound.map((v) => fmt(v)).join(' / ')}` : '– | – | –';
      });
      out.push(`| ${r.feature} | ${cells.join(' | ')} | ${check(r.check, r.feature)} |`);
    }
    out.push(`| *every feature on* | ${scenarios.map((s) => `${fmt(allOn[s] as number)} | | `).join(' | ')} | |`);
    out.push(`| *sum of the feature costs above* | ${scenarios.map((s) => ` | ${fmt(rows.filter((r) => r.label !== ctx.controlLabel && r.label !== ctx.baselineLabel && !r.label.startsWith('broker +')).reduce((t, r) => t + (r.scenarios[s]?.costUs ?? 0), 0))} | `).join(' | ')} | |`);
    if (results.some((r) => r.target === 'fastify-stock')) {
      out.push(
        `| *broker − fastify-stock* | ${scenarios
          .map((s) => {
            const on = byLabel(s, s, 'broker');
            const fs = byLabel(s, s, 'fastify-stock');
            const per = on.map((x) => {
              const y = fs.find((z) => z.round === x.round);
              return y ? x.proxyCpuUsPerReq - y.proxyCpuUsPerReq : NaN;
            });
            return ` | ${fmt((allOn[s] as number) - med(fs, cpuOfRound))} | ${per.map((v) => fmt(v)).join(' / ')}`;
          })
          .join(' | ')} | |`,
      );
    }
    return out;
  }

  function allocMarkdown(): string[] {
    const info = ctx.alloc;
    if (!info) return [];
    const out: string[] = [''];
    out.push(
      `**Allocation on the V8 heap per request**, keep-alive 64 B, ${ctx.connections} connections, each target in a process of its own under \`node --trace-gc-nvp\` for ${info.seconds} s after a warm-up round: the bytes V8 reports allocated between collections (Σ \`allocated\` = start_object_size − the previous end_object_size) over the window's whole collection-to-collection spans, ÷ the requests in them (scripts/bench/gc-alloc.ts). Off-heap memory (Buffer backing stores, OpenSSL) is not counted. KB = 1,000 bytes.`,
    );
    out.push('');
    out.push('| target | KB/request | MB/s allocated | requests/s | CPU µs/request | collections in the window (mark-compacts) | GC pauses, ms per s (longest ms) |');
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of info.rows) {
      out.push(`| ${r.target} | ${fmt(r.bytesPerRequest / 1000, 1)} | ${fmt(r.bytesPerSecond / 1e6, 1)} | ${fmt(r.rps)} | ${fmt(r.proxyCpuUsPerReq)} | ${r.collections} (${r.markCompacts}) | ${fmt(r.gcPauseMsPerSecond, 1)} (${fmt(r.maxPauseMs, 1)}) |`);
    }
    out.push('');
    if (info.calibration) {
      out.push(
        `Method check in this run (a child allocating arrays of a measured size, counted): ${info.calibration.map((c) => `${c.phase}: measured ÷ known ${fmt(c.ratio, 3)} (${fmt(c.knownBytesPerSecond / 1e6)} MB/s, ${c.collections} collections)`).join('; ')}.`,
      );
    } else out.push(`Method check failed: ${info.calibrationError ?? '?'}.`);
    return out;
  }

  /** Issue 13's targets, the broker with every feature on. */
  function targetVerdicts(): Verdict[] {
    const v: Verdict[] = [];
    const cpu = (s: string, variant: string, label: string) => med(byLabel(s, variant, label), cpuOfRound);
    const push = (target: string, x: number, ok: (x: number) => boolean, value: string) => v.push({ target, value: Number.isFinite(x) ? value : `– (${value})`, met: Number.isFinite(x) ? ok(x) : undefined });
    if (ctx.scenarios.includes('ka64')) {
      const b = cpu('ka64', 'ka64', 'broker');
      const f = cpu('ka64', 'ka64', 'fastify-stock');
      const n = cpu('ka64', 'ka64', 'nginx');
      push('keep-alive 64 B: CPU/request ≤ 1.25× the stock Fastify proxy', b / f, (x) => x <= 1.25, `${times3(b / f)} (broker ${fmt(b)} µs, fastify-stock ${fmt(f)} µs)`);
      push('keep-alive 64 B: CPU/request ≤ 3.5× nginx', b / n, (x) => x <= 3.5, `${times3(b / n)} (broker ${fmt(b)} µs, nginx ${fmt(n)} µs)`);
    }
    if (ctx.scenarios.includes('handshake')) {
      const b = cpu('handshake', 'handshake', 'broker');
      const n = cpu('handshake', 'handshake', 'nginx');
      push('full mTLS handshakes: CPU/handshake ≤ 1.1× nginx', b / n, (x) => x <= 1.1, `${times3(b / n)} (broker ${fmt(b)} µs, nginx ${fmt(n)} µs)`);
      const hb = med(byLabel('handshake', 'handshake', 'broker'), (r) => r.rps);
      const hn = med(byLabel('handshake', 'handshake', 'nginx'), (r) => r.rps);
      push('full mTLS handshakes: handshakes/s ≥ 1.0× nginx', hb / hn, (x) => x >= 1, `${times3(hb / hn)} (broker ${fmt(hb)}/s, nginx ${fmt(hn)}/s)`);
    }
    if (ctx.scenarios.includes('ka16k')) {
      const b = cpu('ka16k', 'ka16k', 'broker');
      const n = cpu('ka16k', 'ka16k', 'nginx');
      push('16 KiB answers: CPU/request ≤ 2.5× nginx', b / n, (x) => x <= 2.5, `${times3(b / n)} (broker ${fmt(b)} µs, nginx ${fmt(n)} µs)`);
      const mb = med(byLabel('ka16k', 'ka16k', 'broker'), (r) => r.mbps);
      const mn = med(byLabel('ka16k', 'ka16k', 'nginx'), (r) => r.mbps);
      push('16 KiB answers: MB/s ≥ 0.7× nginx', mb / mn, (x) => x >= 0.7, `${times3(mb / mn)} (broker ${fmt(mb, 1)} MB/s, nginx ${fmt(mn, 1)} MB/s)`);
    }
    if (ctx.scenarios.includes('ka64') && ctx.fixedRate > 0) {
      const pb = med(byLabel('ka64', 'ka64-rate', 'broker'), (r) => r.p99ms);
      const pn = med(byLabel('ka64', 'ka64-rate', 'nginx'), (r) => r.p99ms);
      const half = ctx.fixedRateAuto ? "half of nginx's saturated keep-alive 64 B rate" : 'set by --fixed-rate, not half of nginx\'s saturated rate';
      // a target that cannot keep up with the offered load answers fewer requests/s, and its latency (counted from each request's scheduled start) grows with the backlog
      const served = med(byLabel('ka64', 'ka64-rate', 'broker'), (r) => r.rps);
      push(`p99 at a fixed offered load of ${fmt(ctx.fixedRate)} requests/s (${half}) ≤ 2× nginx's p99`, pb / pn, (x) => x <= 2, `${times3(pb / pn)} (broker ${fmt(pb, 2)} ms, nginx ${fmt(pn, 2)} ms; the broker answered ${fmt(served)} requests/s${served < ctx.fixedRate * 0.98 ? ': it could not keep up' : ''})`);
    }
    const alloc = ctx.alloc;
    if (alloc) {
      const b = alloc.rows.find((r) => r.target === 'broker');
      const f = alloc.rows.find((r) => r.target === 'fastify-stock');
      const kb = (b?.bytesPerRequest ?? NaN) / 1000;
      push('allocation per proxied request ≤ 15 KB (V8 heap, keep-alive 64 B)', kb, (x) => x <= 15, `${fmt(kb, 1)} KB${f ? ` (fastify-stock ${fmt(f.bytesPerRequest / 1000, 1)} KB)` : ''}`);
    }
    return v;
  }

  /** The forward scenario's two tables: absolute-form keep-alive (variant ka64) and a CONNECT tunnel per request (variant handshake). */
  function forwardSpecs(): Array<{ variant: string; title: string; per: string; rateName: string; reference: string }> {
    const f = ctx.forward;
    const dest = f?.destination ?? '127.0.0.1:UPSTREAM';
    return [
      {
        variant: 'ka64',
        title: `Forward listener, absolute-form keep-alive \`GET http://${dest}/64\` (64 B answers), ${ctx.connections} connections, closed loop; reference: the same broker's main listener, keep-alive GET /64`,
        per: 'request',
        rateName: 'requests/s',
        reference: 'broker, reverse keep-alive',
      },
      {
        variant: 'handshake',
        title: `Forward listener, a CONNECT tunnel per request: new connection, full mTLS handshake, \`CONNECT ${dest}\`, one GET /64 through the tunnel, close; ${ctx.handshakeConcurrency} at once; reference: the same broker's main listener, new connection and full mTLS handshake per GET /64`,
        per: 'tunnel',
        rateName: 'tunnels/s',
        reference: 'broker, reverse handshake',
      },
    ];
  }

  function forwardRows(variant: string): ForwardRow[] {
    const ref = byLabel('forward', variant, 'broker');
    const ngf = results.filter((r) => r.scenario === 'forward' && r.variant === variant && r.kind === 'nginx-forward');
    return labelsOf('forward', variant).map((label) => {
      const rows = byLabel('forward', variant, label);
      const cpu = med(rows, cpuOfRound);
      const kind = (rows[0] as RoundResult).kind;
      // a ratio to the broker's reverse row says what forwarding costs that broker; nginx is not that broker
      const broker = kind !== 'nginx-forward';
      return {
        target: label,
        kind,
        rounds: rows.length,
        cpuUs: cpu,
        cpuUsPerRound: rows.map(cpuOfRound),
        cpuVsReverse: broker ? cpu / med(ref, cpuOfRound) : NaN,
        cpuVsReversePerRound: rows.map((x) => {
          const y = ref.find((z) => z.round === x.round);
          return broker && y ? x.proxyCpuUsPerReq / y.proxyCpuUsPerReq : NaN;
        }),
        cpuVsNginxForward: ngf.length && kind !== 'broker' ? cpu / med(ngf, cpuOfRound) : NaN,
        rate: med(rows, (r) => r.rps),
        p50ms: med(rows, (r) => r.p50ms),
        p99ms: med(rows, (r) => r.p99ms),
        errors: rows.reduce((n, r) => n + r.errors + r.non2xx, 0),
      };
    });
  }

  function forwardSummary(): Record<string, unknown> | undefined {
    const f = ctx.forward;
    if (!f) return undefined;
    return { ...f, tables: forwardSpecs().map((s) => ({ variant: s.variant, title: s.title, per: s.per, rate: s.rateName, reference: s.reference, rows: forwardRows(s.variant) })) };
  }

  function forwardMarkdown(): string[] {
    const f = ctx.forward;
    if (!f) return [];
    const out: string[] = [''];
    if (f.skipped) return [...out, `**Forward listener**: ${f.skipped}.`];
    out.push(
      `**Forward (egress) listener** (\`--scenarios forward\`): one broker with every feature on and \`forward:\` on (a rule for role bench to 127.0.0.1 on the upstream's port, \`allowPrivate: [127.0.0.0/8]\`), measured on its forward listener and, as the reference, on its own main listener, with nginx as a plain forward proxy for the absolute-form load (nginx has no CONNECT), in the same ${f.rounds} round${f.rounds === 1 ? "" : "s"} of ${f.seconds} s (A B C … A B C …). Both forward paths keep their destination connections alive and reuse them, as the reverse rows do. CPU: the target's process tree (the broker's two listeners are one process); "÷ …": CPU per request or tunnel ÷ that row's, median ÷ median and round by round.${results.some((r) => r.scenario === 'forward' && r.target.includes('(before)')) ? ' The "(before)" rows are the --baseline build\'s forward listener: their ratio is to this build\'s reverse row; set them against the "broker forward" rows for what the change costs.' : ''}${f.notes.length ? ` ${f.notes.join(' ')}` : ''}`,
    );
    for (const spec of forwardSpecs()) {
      const rows = forwardRows(spec.variant);
      if (!rows.length) continue;
      const ka = spec.variant === 'ka64';
      out.push('');
      out.push(`**${spec.title}**`);
      out.push('');
      out.push(`| target | CPU µs/${spec.per} | ÷ ${spec.reference} | CPU ÷ reference, per round |${ka ? ' ÷ nginx forward |' : ''} ${spec.rateName} | p50 ms | p99 ms |`);
      out.push(`| --- | ---: | ---: | --- |${ka ? ' ---: |' : ''} ---: | ---: | ---: |`);
      for (const r of rows) {
        const all = byLabel('forward', spec.variant, r.target);
        const name = r.target === 'broker' ? `${spec.reference} (reference)` : r.target;
        out.push(
          `| ${name}${r.errors ? ` (${fmt(r.errors)} errors or non-200)` : ''} | ${cell(all, cpuOfRound)} | ${times(r.cpuVsReverse)} | ${r.cpuVsReversePerRound.map((x) => fmt(x, 2)).join(' / ')} |${ka ? ` ${times(r.cpuVsNginxForward)} |` : ''} ${cell(all, (x) => x.rps)} | ${fmt(r.p50ms, 2)} | ${cell(all, (x) => x.p99ms, 2)} |`,
        );
      }
    }
    return out;
  }

  return { ladderSpecs, ladderRows, ladderMarkdown, featureCosts, featureCostMarkdown, allocMarkdown, targetVerdicts, forwardSpecs, forwardRows, forwardSummary, forwardMarkdown };
}
