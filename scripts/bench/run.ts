/**
 * The proxy benchmark: the broker against nginx, on loopback, in the same run.
 *
 *   npm run bench                 # every scenario, 3 rounds of 5 s each per side, plus a CPU profile
 *   npm run bench -- --quick      # 2 rounds of 2 s, scenarios ka64, ka16k, handshake only
 *   npm run bench -- --scenarios ka64,crl --rounds 5 --seconds 10
 *
 * Starts an upstream (scripts/bench/upstream.ts), the broker as its own process
 * (`node dist/main.js serve --config …`, or `--broker src` for src/main.ts) with every feature on
 * (ACL, generous rate and concurrency limits, bans, metrics, admin listener, auth/access/audit logs
 * to files), and nginx configured as the equivalent mTLS proxy (scripts/bench/nginx.ts; installed
 * from Debian's packages when missing). Rounds alternate broker, nginx, broker, nginx… Each round
 * reports requests (or handshakes, or MB) per second, p50/p99 latency, the proxy process tree's CPU
 * time per request (utime+stime from /proc) and the load generator's own CPU. Writes
 * bench-results/bench-STAMP.{json,md} and prints the Markdown.
 *
 * Scenarios: ka64 (keep-alive GET, 64 B, 50 connections), ka16k (16 KiB answers), handshake (a
 * new connection and full mTLS handshake per request), identities (1,000 identities on 1,000
 * connections against one identity on 1,000 connections), crl (a CRL with 100,000 revoked serials:
 * handshake rate and the broker's reload time), idle (10,000 idle mTLS connections: memory per
 * connection), syscalls (strace -c on each proxy under ka64: syscalls per request), profile (a
 * --cpu-prof run of the broker under ka64, summarised; --profile-load handshake or ka16k profiles that load instead).
 *
 * Not part of `npm test`. Loopback only; every loop is bounded by its round's deadline and the
 * whole run by --max-minutes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { request as httpRequest } from 'node:http';
import { Histogram, type HistogramJson } from './hist.ts';
import { cpuOf, tree, treeCpuSeconds, treeRssBytes } from './proc.ts';
import { ensureNginx, nginxVersion, writeNginxConfig } from './nginx.ts';
import { bigCrl, makePki, mintIdentities, type BenchPki, type IdentityFiles } from './pki.ts';
import { summarise, profileMarkdown, type CpuProfile } from './profile.ts';
import type { LoadConfig, LoadResult } from './load.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const HERE = import.meta.dirname;
const NODE = process.execPath;
const ALL = ['ka64', 'ka16k', 'handshake', 'identities', 'crl', 'idle', 'syscalls', 'profile'] as const;
type Scenario = (typeof ALL)[number];

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scenarios: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    broker: { type: 'string', default: 'dist' },
    connections: { type: 'string', default: '50' },
    'handshake-concurrency': { type: 'string', default: '16' },
    'fixed-rate': { type: 'string', default: '2000' },
    identities: { type: 'string' },
    'crl-entries': { type: 'string' },
    'idle-connections': { type: 'string' },
    'gen-procs': { type: 'string', default: '2' },
    groups: { type: 'string', default: 'X25519' },
    'profile-seconds': { type: 'string' },
    'profile-load': { type: 'string' },
    'x509-crl-limit': { type: 'string', default: '60' },
    'max-minutes': { type: 'string', default: '60' },
    out: { type: 'string', default: 'bench-results' },
    keep: { type: 'boolean', default: false },
  },
});
const QUICK = a.quick === true;
const SCENARIOS = (a.scenarios ?? (QUICK ? 'ka64,ka16k,handshake' : ALL.join(','))).split(',').map((s) => s.trim()) as Scenario[];
for (const s of SCENARIOS) if (!ALL.includes(s)) throw new Error(`unknown scenario ${s}; one of ${ALL.join(', ')}`);
const ROUNDS = Number(a.rounds ?? (QUICK ? 2 : 3));
const SECONDS = Number(a.seconds ?? (QUICK ? 2 : 5));
const WARMUP = Number(a.warmup ?? (QUICK ? 0.5 : 1));
const CONNS = Number(a.connections);
const HS_CONC = Number(a['handshake-concurrency']);
const FIXED_RATE = Number(a['fixed-rate']);
const N_IDS = Number(a.identities ?? (QUICK ? 100 : 1000));
const CRL_N = Number(a['crl-entries'] ?? (QUICK ? 10_000 : 100_000));
const IDLE_N = Number(a['idle-connections'] ?? (QUICK ? 1000 : 10_000));
const GEN_PROCS = Math.max(1, Number(a['gen-procs']));
const GROUPS = a.groups as string;
const PROFILE_SECONDS = Number(a['profile-seconds'] ?? (QUICK ? 3 : 10));
/** What the profile scenario runs: ka64 (default), ka16k or handshake. */
const PROFILE_LOAD = a['profile-load'] ?? 'ka64';
if (!['ka64', 'ka16k', 'handshake'].includes(PROFILE_LOAD)) throw new Error(`--profile-load: ka64, ka16k or handshake, not ${PROFILE_LOAD}`);
const ROLE = 'bench';
/** The children's open-files limit: they are raised to the hard limit (not beyond: that needs CAP_SYS_RESOURCE). */
const NOFILE = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024;

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const wall = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------- child processes

const children = new Set<ChildProcess>();
/** Raises the open-files limit to the hard limit for the child (sh's ulimit), then execs it. */
function spawnChild(cmd: string, args: string[], o: { stdio?: Array<'pipe' | 'ignore' | 'ipc'>; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', cmd, ...args], { stdio: o.stdio ?? ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env, cwd: ROOT });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

function killAll(): void {
  for (const c of children) c.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    killAll();
    process.exit(130);
  });
}

function firstJsonLine<T>(child: ChildProcess, stream: 'stdout' | 'stderr', pred: (x: Record<string, unknown>) => boolean, ms: number, what: string): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const rl = createInterface({ input: child[stream] as NodeJS.ReadableStream });
    const timer = setTimeout(() => done(new Error(`${what} did not start within ${ms} ms`)), ms);
    const onExit = (code: number | null) => done(new Error(`${what} exited (${code}) before it was ready`));
    const done = (err?: Error, v?: T) => {
      clearTimeout(timer);
      rl.removeAllListeners('line');
      child.off('exit', onExit);
      if (err) reject(err);
      else resolvePromise(v as T);
    };
    child.once('exit', onExit);
    rl.on('line', (line) => {
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (pred(j)) done(undefined, j as T);
      } catch {
        /* not JSON */
      }
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

// ---------------------------------------------------------------- the targets

interface Target {
  kind: 'broker' | 'nginx' | 'node-tls';
  label: string;
  pid: number;
  port: number;
  adminPort?: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

interface Env {
  work: string;
  pki: BenchPki;
  upstream: { pid: number; port: number; child: ChildProcess };
  nginxBin: string;
  /** The CRL file the main broker reads (its content is swapped for the crl scenario). */
  activeCrl: string;
}

async function startUpstream(): Promise<Env['upstream']> {
  const child = spawnChild(NODE, [join(HERE, 'upstream.ts')]);
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[upstream] ${d}`));
  const { port } = await firstJsonLine<{ port: number }>(child, 'stdout', (j) => typeof j.port === 'number', 15_000, 'upstream');
  return { pid: child.pid as number, port, child };
}

async function startBroker(env: Env, label: string, o: { crlFile: string; nodeArgs?: string[] }): Promise<Target> {
  const dir = join(env.work, label);
  mkdirSync(dir, { recursive: true });
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    pki: { dir: env.pki.dir },
    tls: { server: 'localhost', crl: o.crlFile },
    routes: [{ name: 'bench', path: '/', upstream: `http://127.0.0.1:${env.upstream.port}`, roles: [ROLE] }],
    // every feature on, with limits far above what the benchmark sends (it comes from one address)
    rateLimit: { rate: 1_000_000, per: '1s', burst: 1_000_000 },
    maxConcurrent: 100_000,
    filters: { maxConnectionsPerIp: 100_000, connectionRate: { rate: 100_000, per: '1s', burst: 100_000 } },
    bans: { enabled: true },
    timeouts: { keepAlive: '120s' },
    // Buffered like nginx's access_log (buffer=64k flush=1s in nginx.ts).
    log: { level: 'info', auth: join(dir, 'auth.log'), access: join(dir, 'access.log'), audit: join(dir, 'audit.log'), error: 'stderr', buffer: '64kb', flushInterval: '1s' },
    admin: { host: '127.0.0.1', port: 0 },
    // reloads are triggered (and timed) through POST /reload, not by the file watcher
    reload: { watch: false },
  };
  const file = join(dir, 'broker.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const main = a.broker === 'src' ? join(ROOT, 'src', 'main.ts') : join(ROOT, 'dist', 'main.js');
  // BENCH_BROKER_NODE_ARGS: extra Node flags for the broker, for diagnosis (e.g. --trace-gc; its output lands in stdout.log)
  const extraArgs = (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawnChild(NODE, [...extraArgs, ...(o.nodeArgs ?? []), main, 'serve', '--config', file]);
  child.stderr?.pipe(createWriteStream(join(dir, 'error.log')));
  child.stdout?.pipe(createWriteStream(join(dir, 'stdout.log')));
  const ready = await firstJsonLine<{ port: number; adminPort: number }>(child, 'stderr', (j) => j.event === 'listening', 30_000, `broker ${label}`).catch((e: Error) => {
    throw new Error(`${e.message}; see ${join(dir, 'error.log')}`);
  });
  return { kind: 'broker', label, pid: child.pid as number, port: ready.port, adminPort: ready.adminPort, child, stop: () => stopChild(child, 10_000) };
}

async function startNginx(env: Env, label: string, crlFile: string, maxConnections: number): Promise<Target> {
  const prefix = join(env.work, label);
  mkdirSync(prefix, { recursive: true });
  const port = await freePort();
  const conf = writeNginxConfig(prefix, {
    port,
    upstreamPort: env.upstream.port,
    files: { cert: env.pki.serverCert, key: env.pki.serverKey, clientCa: env.pki.chainFile, crl: crlFile },
    maxConnections,
    role: ROLE,
    nofile: NOFILE,
  });
  const t = spawnSync(env.nginxBin, ['-t', '-p', prefix, '-c', conf, '-g', 'daemon off;'], { encoding: 'utf8', timeout: 60_000 });
  if (t.status !== 0) throw new Error(`nginx -t failed:\n${t.stderr}`);
  const child = spawnChild(env.nginxBin, ['-p', prefix, '-c', conf, '-g', 'daemon off;']);
  child.stdout?.resume();
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label}] ${d}`));
  await waitForPort(port, 30_000);
  return { kind: 'nginx', label, pid: child.pid as number, port, child, stop: () => stopChild(child, 10_000) };
}

async function startNodeTls(env: Env, label: string, crlFile: string): Promise<Target> {
  const child = spawnChild(NODE, [join(HERE, 'tls-server.ts'), env.pki.serverCert, env.pki.serverKey, env.pki.chainFile, crlFile]);
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label}] ${d}`));
  const { port } = await firstJsonLine<{ port: number }>(child, 'stdout', (j) => typeof j.port === 'number', 60_000, label);
  return { kind: 'node-tls', label, pid: child.pid as number, port, child, stop: () => stopChild(child) };
}

function adminPost(port: number, path: string, ms = 120_000): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', timeout: ms }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (body += c));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('admin request timed out')));
    req.on('error', rej);
    req.end();
  });
}

function adminGet(port: number, path: string, ms = 10_000): Promise<string> {
  return new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, timeout: ms }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (body += c));
      r.on('end', () => res(body));
    });
    req.on('timeout', () => req.destroy(new Error('admin request timed out')));
    req.on('error', rej);
    req.end();
  });
}

/** The broker's own view of its memory (prom-client's process metrics on the admin listener), in MiB. */
async function brokerHeap(t: Target): Promise<{ heapUsed: number; heapTotal: number; external: number } | undefined> {
  if (t.kind !== 'broker' || t.adminPort === undefined) return undefined;
  try {
    const text = await adminGet(t.adminPort, '/metrics');
    const get = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
    return { heapUsed: get('broker_process_nodejs_heap_size_used_bytes'), heapTotal: get('broker_process_nodejs_heap_size_total_bytes'), external: get('broker_process_nodejs_external_memory_bytes') };
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- load generators

interface LoadSpec {
  mode: LoadConfig['mode'];
  path: string;
  connections: number;
  concurrency: number;
  identities: IdentityFiles[];
  /** Requests per second in total (keepalive only); none: closed loop, as fast as answers come. */
  rate?: number;
}

interface Gen {
  child: ChildProcess;
  pid: number;
  next<T>(type: string, ms: number): Promise<T>;
  send(m: unknown): void;
}

async function startGens(env: Env, target: Target, spec: LoadSpec): Promise<Gen[]> {
  const procs = Math.min(GEN_PROCS, Math.max(1, spec.mode === 'handshake' ? spec.concurrency : spec.connections));
  const gens: Gen[] = [];
  let offset = 0;
  for (let g = 0; g < procs; g++) {
    const share = (n: number) => Math.floor(n / procs) + (g < n % procs ? 1 : 0);
    const cfg: LoadConfig = {
      mode: spec.mode,
      host: '127.0.0.1',
      port: target.port,
      servername: 'localhost',
      path: spec.path,
      caFile: env.pki.caFile,
      identities: spec.identities,
      offset,
      connections: share(spec.connections),
      concurrency: share(spec.concurrency),
      ...(spec.rate ? { rate: (spec.rate * share(spec.connections)) / spec.connections } : {}),
      groups: GROUPS,
      openConcurrency: 32,
      requestTimeoutMs: 30_000,
      maxLifeMs: 20 * 60_000,
    };
    offset += cfg.connections || cfg.concurrency;
    const file = join(env.work, `load-${target.label}-${g}.json`);
    writeFileSync(file, JSON.stringify(cfg));
    const child = spawnChild(NODE, [join(HERE, 'load.ts'), file], { stdio: ['ignore', 'inherit' as never, 'inherit' as never, 'ipc'] });
    const inbox: Array<Record<string, unknown>> = [];
    const waiters: Array<() => void> = [];
    child.on('message', (m: Record<string, unknown>) => {
      inbox.push(m);
      for (const w of waiters.splice(0)) w();
    });
    const gen: Gen = {
      child,
      pid: child.pid as number,
      send: (m) => child.send(m as never),
      async next<T>(type: string, ms: number): Promise<T> {
        const end = Date.now() + ms;
        for (;;) {
          const i = inbox.findIndex((m) => m.type === type || m.type === 'failed');
          if (i >= 0) {
            const m = inbox.splice(i, 1)[0] as Record<string, unknown>;
            if (m.type === 'failed') throw new Error(`load generator: ${String(m.error)}`);
            return m as T;
          }
          if (child.exitCode !== null) throw new Error(`load generator exited (${child.exitCode}) waiting for ${type}`);
          const left = end - Date.now();
          if (left <= 0) throw new Error(`load generator: no ${type} within ${ms} ms`);
          await new Promise<void>((r) => {
            const t = setTimeout(r, Math.min(left, 1_000));
            waiters.push(() => (clearTimeout(t), r()));
          });
        }
      },
    };
    gens.push(gen);
  }
  await Promise.all(gens.map((g) => g.next('hello', 30_000)));
  return gens;
}

async function closeGens(gens: Gen[]): Promise<void> {
  for (const g of gens) if (g.child.connected) g.send({ cmd: 'close' });
  await Promise.all(
    gens.map(
      (g) =>
        new Promise<void>((r) => {
          if (g.child.exitCode !== null) return r();
          const t = setTimeout(() => g.child.kill('SIGKILL'), 5_000);
          g.child.once('exit', () => (clearTimeout(t), r()));
        }),
    ),
  );
}

// ---------------------------------------------------------------- rounds

interface RoundResult {
  scenario: string;
  variant: string;
  target: string;
  kind: Target['kind'];
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
  prepareMs: number;
  /** The measured window (epoch ms). */
  startAt: number;
  endAt: number;
}

const results: RoundResult[] = [];

interface RoundHooks {
  /** Right after the CPU sample at the start of the measured window. */
  atStart?(): void;
  /** Right after the CPU sample at its end. */
  atEnd?(): Promise<void>;
}

async function round(env: Env, scenario: string, variant: string, target: Target, spec: LoadSpec, r: number, seconds = SECONDS, hooks: RoundHooks = {}): Promise<RoundResult> {
  const gens = await startGens(env, target, spec);
  try {
    gens.forEach((g) => g.send({ cmd: 'prepare' }));
    const prep = await Promise.all(gens.map((g) => g.next<{ open: number; errors: number; errorSamples: string[]; ms: number }>('prepared', 300_000)));
    const prepErrors = prep.reduce((s, p) => s + p.errors, 0);
    if (prepErrors) log(`  ${target.label}: ${prepErrors} connections failed to open: ${prep.flatMap((p) => p.errorSamples).slice(0, 3).join('; ')}`);
    const startAt = wall() + WARMUP * 1000 + 100;
    const endAt = startAt + seconds * 1000;
    gens.forEach((g) => g.send({ cmd: 'run', startAt, endAt }));
    const genPids = gens.map((g) => g.pid);
    let s0 = { proxy: 0, gen: 0, up: 0 };
    let s1 = { proxy: 0, gen: 0, up: 0 };
    const sample = () => ({ proxy: treeCpuSeconds(target.pid), gen: cpuOf(genPids), up: treeCpuSeconds(env.upstream.pid) });
    await sleep(Math.max(0, startAt - wall()));
    s0 = sample();
    hooks.atStart?.();
    await sleep(Math.max(0, endAt - wall()));
    s1 = sample();
    await hooks.atEnd?.();
    const res = await Promise.all(gens.map((g) => g.next<LoadResult>('result', 60_000)));
    const hist = new Histogram();
    for (const x of res) hist.merge(x.latency as HistogramJson);
    const sum = (f: (x: LoadResult) => number) => res.reduce((s, x) => s + f(x), 0);
    const ok = sum((x) => x.ok);
    const out: RoundResult = {
      scenario,
      variant,
      target: target.label,
      kind: target.kind,
      round: r,
      seconds,
      ok,
      non2xx: sum((x) => x.non2xx),
      errors: sum((x) => x.errors),
      errorSamples: res.flatMap((x) => x.errorSamples).slice(0, 5),
      late: sum((x) => x.late),
      resumed: sum((x) => x.resumed),
      rps: ok / seconds,
      mbps: sum((x) => x.bytes) / seconds / 1e6,
      p50ms: hist.quantile(0.5) / 1000,
      p90ms: hist.quantile(0.9) / 1000,
      p99ms: hist.quantile(0.99) / 1000,
      p999ms: hist.quantile(0.999) / 1000,
      maxMs: hist.n ? hist.max / 1000 : NaN,
      meanMs: hist.n ? hist.sum / hist.n / 1000 : NaN,
      proxyCpuS: s1.proxy - s0.proxy,
      proxyCpuUsPerReq: ok ? ((s1.proxy - s0.proxy) * 1e6) / ok : NaN,
      genCpuS: s1.gen - s0.gen,
      genCpuUsPerReq: ok ? ((s1.gen - s0.gen) * 1e6) / ok : NaN,
      upstreamCpuS: s1.up - s0.up,
      prepareMs: Math.max(...prep.map((p) => p.ms)),
      startAt,
      endAt,
    };
    results.push(out);
    log(
      `  ${scenario}/${variant} ${target.label} r${r}: ${out.rps.toFixed(0)}/s ${spec.path === '/16k' ? `${out.mbps.toFixed(1)} MB/s ` : ''}p50 ${out.p50ms.toFixed(2)} ms p90 ${out.p90ms.toFixed(2)} ms p99 ${out.p99ms.toFixed(2)} ms max ${out.maxMs.toFixed(1)} ms, proxy ${out.proxyCpuUsPerReq.toFixed(0)} µs/req, gen ${out.genCpuUsPerReq.toFixed(0)} µs/req${out.errors || out.non2xx ? `, ${out.errors} errors, ${out.non2xx} non-200 ${out.errorSamples.slice(0, 2).join('; ')}` : ''}`,
    );
    return out;
  } finally {
    await closeGens(gens);
  }
}

/** Rounds alternating between the variants and targets: A B A B … */
async function alternate(env: Env, scenario: string, plan: Array<{ variant: string; target: Target; spec: LoadSpec; before?: () => Promise<void> }>): Promise<void> {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const p of plan) {
      await p.before?.();
      await round(env, scenario, p.variant, p.target, p.spec, r);
    }
  }
}

// ---------------------------------------------------------------- scenarios

interface Extra {
  [k: string]: unknown;
}
const extra: Extra = {};

async function idleScenario(env: Env): Promise<void> {
  const rows: Array<Record<string, unknown>> = [];
  for (const kind of ['broker', 'nginx'] as const) {
    const t = kind === 'broker' ? await startBroker(env, 'broker-idle', { crlFile: env.pki.emptyCrl }) : await startNginx(env, 'nginx-idle', env.pki.emptyCrl, IDLE_N + 100);
    try {
      // warm up: some requests, so lazily loaded code and first-use buffers are in the baseline
      await round(env, 'idle-warmup', 'warm-up', t, { mode: 'keepalive', path: '/64', connections: 10, concurrency: 10, identities: [env.pki.client] }, 1, 1);
      await sleep(1_000);
      const before = treeRssBytes(t.pid);
      const heapBefore = await brokerHeap(t);
      const gens = await startGens(env, t, { mode: 'idle', path: '/64', connections: IDLE_N, concurrency: IDLE_N, identities: [env.pki.client] });
      try {
        const t0 = performance.now();
        gens.forEach((g) => g.send({ cmd: 'prepare' }));
        const prep = await Promise.all(gens.map((g) => g.next<{ open: number; errors: number; errorSamples: string[] }>('prepared', 600_000)));
        const openMs = performance.now() - t0;
        await sleep(3_000);
        gens.forEach((g) => g.send({ cmd: 'status' }));
        const status = await Promise.all(gens.map((g) => g.next<{ open: number; closedByPeer: number }>('status', 30_000)));
        const after = treeRssBytes(t.pid);
        const heapAfter = await brokerHeap(t);
        const open = status.reduce((s, x) => s + x.open, 0);
        const row = {
          target: t.label,
          kind,
          requested: IDLE_N,
          opened: prep.reduce((s, p) => s + p.open, 0),
          failed: prep.reduce((s, p) => s + p.errors, 0),
          errorSamples: prep.flatMap((p) => p.errorSamples).slice(0, 3),
          stillOpen: open,
          closedByPeer: status.reduce((s, x) => s + x.closedByPeer, 0),
          openSeconds: openMs / 1000,
          rssBeforeMiB: before / 2 ** 20,
          rssAfterMiB: after / 2 ** 20,
          kibPerConnection: open ? (after - before) / 1024 / open : NaN,
          // of which the V8 heap (live objects and garbage not yet collected) and external buffers
          ...(heapBefore && heapAfter
            ? {
                heapUsedMiB: [heapBefore.heapUsed, heapAfter.heapUsed],
                heapTotalMiB: [heapBefore.heapTotal, heapAfter.heapTotal],
                externalMiB: [heapBefore.external, heapAfter.external],
                heapKibPerConnection: open ? ((heapAfter.heapTotal - heapBefore.heapTotal) * 1024) / open : NaN,
              }
            : {}),
        };
        rows.push(row);
        log(`  idle ${t.label}: ${open} open (${row.failed} failed) in ${row.openSeconds.toFixed(1)} s, RSS ${row.rssBeforeMiB.toFixed(1)} → ${row.rssAfterMiB.toFixed(1)} MiB, ${row.kibPerConnection.toFixed(1)} KiB/connection${row.heapTotalMiB ? `; V8 heap total ${row.heapTotalMiB.map((x) => x.toFixed(1)).join(' → ')} MiB (used ${row.heapUsedMiB?.map((x) => x.toFixed(1)).join(' → ')}), external ${row.externalMiB?.map((x) => x.toFixed(1)).join(' → ')} MiB` : ''}`);
      } finally {
        await closeGens(gens);
      }
    } finally {
      await t.stop();
    }
  }
  extra.idle = rows;
}

async function crlScenario(env: Env, broker: Target, nginx: Target, hsSpec: LoadSpec): Promise<void> {
  const info: Record<string, unknown> = { entries: CRL_N };
  // 1. how long createCrl (@peculiar/x509) takes, growing n, then a capped attempt at the full size
  const scaling: Array<{ entries: number; ms: number }> = [];
  for (const n of QUICK ? [1000, 2000] : [1000, 2000, 4000, 8000]) {
    const r = await bigCrl(env.pki, n, env.work);
    scaling.push({ entries: n, ms: Math.round(r.ms) });
    log(`  createCrl with ${n} entries: ${r.ms.toFixed(0)} ms`);
  }
  info.createCrlScaling = scaling;
  const limitS = Number(a['x509-crl-limit']);
  if (!QUICK && limitS > 0) {
    const probe = join(env.work, 'x509-probe.ts');
    writeFileSync(
      probe,
      `import { performance } from 'node:perf_hooks';\nimport { makePki, bigCrl } from ${JSON.stringify(join(HERE, 'pki.ts'))};\n` +
        `const w = ${JSON.stringify(join(env.work, 'x509-probe'))};\nconst pki = await makePki(w, 'bench');\nconst r = await bigCrl(pki, ${CRL_N}, w);\nprocess.stdout.write(JSON.stringify({ ms: r.ms }) + '\\n');\n`,
    );
    const child = spawnChild(NODE, [probe]);
    child.stderr?.resume();
    const t0 = performance.now();
    const done = await firstJsonLine<{ ms: number }>(child, 'stdout', (j) => typeof j.ms === 'number', limitS * 1000, 'createCrl probe').catch(() => undefined);
    child.kill('SIGKILL'); // a busy event loop never runs the lock library's SIGTERM handler
    info.createCrlFull = done ? { entries: CRL_N, ms: Math.round(done.ms) } : { entries: CRL_N, finished: false, limitSeconds: limitS, elapsedMs: Math.round(performance.now() - t0) };
    log(`  createCrl with ${CRL_N} entries: ${done ? `${done.ms.toFixed(0)} ms` : `not finished after ${limitS} s (stopped)`}`);
  }
  // 2. the big CRL itself: createCrl when it is fast enough, otherwise openssl ca -gencrl
  const fullDone = (info.createCrlFull as { ms?: number } | undefined)?.ms;
  const tool = fullDone !== undefined || CRL_N <= 8000 ? 'x509' : 'openssl';
  const big = await bigCrl(env.pki, CRL_N, env.work, tool);
  info.crlFile = { tool: big.tool, ms: Math.round(big.ms), bytes: big.bytes };
  log(`  ${CRL_N}-entry CRL made with ${big.tool} in ${big.ms.toFixed(0)} ms (${(big.bytes / 1e6).toFixed(1)} MB)`);

  // 3. the broker's reload: empty → big (timed), then back
  const reloads: Array<Record<string, unknown>> = [];
  const reloadTo = async (file: string, what: string) => {
    copyFileSync(file, env.activeCrl);
    const t0 = performance.now();
    const r = await adminPost(broker.adminPort as number, '/reload');
    const ms = performance.now() - t0;
    let body: { ok?: boolean; problems?: string[] } = {};
    try {
      body = JSON.parse(r.body) as typeof body;
    } catch {
      /* not JSON */
    }
    // the line that names the CRL, without the temp path: "CRL: … cannot be parsed (cause)" → "cannot be parsed (cause)"
    const problems = (body.problems ?? []).filter((p) => !/^TLS material is not usable/.test(p)).map((p) => p.replace(/^CRL: \S+ /, 'CRL '));
    const row = { to: what, status: r.status, ok: body.ok === true, ms: Math.round(ms), problems: problems.slice(0, 3) };
    reloads.push(row);
    log(`  reload to ${what}: ${r.status} in ${ms.toFixed(0)} ms${row.ok ? '' : ` (${(row.problems ?? []).join('; ').slice(0, 200)})`}`);
    return row.ok;
  };
  // the largest CRL the broker's parser was seen to take, for a reload time that can be measured
  const mid = await bigCrl(env.pki, 1000, env.work);
  await reloadTo(mid.file, 'a 1,000-entry CRL');
  await reloadTo(env.pki.emptyCrl, 'the empty CRL');
  await reloadTo(mid.file, 'a 1,000-entry CRL');
  await reloadTo(env.pki.emptyCrl, 'the empty CRL');
  const brokerTakesBig = await reloadTo(big.file, `the ${CRL_N}-entry CRL`);
  if (brokerTakesBig) {
    await reloadTo(env.pki.emptyCrl, 'the empty CRL');
    await reloadTo(big.file, `the ${CRL_N}-entry CRL`);
  }
  await reloadTo(env.pki.emptyCrl, 'the empty CRL');
  info.reloads = reloads;
  info.brokerLoadsBigCrl = brokerTakesBig;

  // 4. handshake rates, empty against big: the broker when it takes the big CRL, otherwise Node's
  // TLS layer alone with the broker's listener options; and nginx, each side alternating
  const nginxBig = await startNginx(env, 'nginx-bigcrl', big.file, 2_000);
  let nodeEmpty: Target | undefined;
  let nodeBig: Target | undefined;
  try {
    const plan: Parameters<typeof alternate>[2] = [];
    if (brokerTakesBig) {
      plan.push({ variant: 'empty CRL', target: broker, spec: hsSpec, before: async () => void (await reloadTo(env.pki.emptyCrl, 'the empty CRL')) });
      plan.push({ variant: `${CRL_N} revoked`, target: broker, spec: hsSpec, before: async () => void (await reloadTo(big.file, `the ${CRL_N}-entry CRL`)) });
    } else {
      const t0 = performance.now();
      nodeEmpty = await startNodeTls(env, 'node-tls-empty', env.pki.emptyCrl);
      info.nodeTlsStartEmptyMs = Math.round(performance.now() - t0);
      const t1 = performance.now();
      nodeBig = await startNodeTls(env, 'node-tls-bigcrl', big.file);
      info.nodeTlsStartBigMs = Math.round(performance.now() - t1);
      plan.push({ variant: 'empty CRL', target: nodeEmpty, spec: hsSpec });
      plan.push({ variant: `${CRL_N} revoked`, target: nodeBig, spec: hsSpec });
    }
    plan.push({ variant: 'empty CRL', target: nginx, spec: hsSpec });
    plan.push({ variant: `${CRL_N} revoked`, target: nginxBig, spec: hsSpec });
    await alternate(env, 'crl', plan);
    if (brokerTakesBig) await reloadTo(env.pki.emptyCrl, 'the empty CRL');
  } finally {
    await nginxBig.stop();
    await nodeEmpty?.stop();
    await nodeBig?.stop();
  }
  extra.crl = info;
}

/** `strace -c` output: calls per syscall. */
function parseStraceSummary(text: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^[\d.]+$/.test(f[0] as string) || f[f.length - 1] === 'total') continue;
    calls.set(f[f.length - 1] as string, Number(f[3]));
  }
  return calls;
}

/** Syscalls per request under keep-alive 64 B: strace -c attached to the proxy's processes for the measured window only. */
async function syscallScenario(env: Env, targets: Target[], spec: LoadSpec): Promise<void> {
  if (spawnSync('strace', ['-V'], { timeout: 10_000 }).status !== 0) {
    log('  strace is not installed: syscalls scenario skipped (apt-get install strace)');
    extra.syscalls = { skipped: 'strace missing' };
    return;
  }
  const out: Record<string, { requests: number; perRequest: Record<string, number>; total: number }> = {};
  for (const t of targets) {
    const file = join(env.work, `strace-${t.label}.txt`);
    let tracer: ChildProcess | undefined;
    const r = await round(env, 'syscalls', 'ka64 under strace -c', t, spec, 1, Math.min(SECONDS, 3), {
      atStart: () => {
        tracer = spawnChild('strace', ['-c', '-f', '-o', file, ...tree(t.pid).flatMap((p) => ['-p', String(p)])], { stdio: ['ignore', 'ignore', 'ignore'] });
      },
      atEnd: async () => {
        if (!tracer) return;
        const exited = new Promise<void>((res) => tracer?.once('exit', () => res()));
        tracer.kill('SIGINT'); // detaches and writes the summary
        const timer = setTimeout(() => tracer?.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      },
    });
    const calls = existsSync(file) ? parseStraceSummary(readFileSync(file, 'utf8')) : new Map<string, number>();
    const perRequest: Record<string, number> = {};
    let total = 0;
    for (const [name, n] of calls) {
      perRequest[name] = r.ok ? n / r.ok : NaN;
      total += n;
    }
    out[t.kind] = { requests: r.ok, perRequest, total: r.ok ? total / r.ok : NaN };
    log(`  ${t.label}: ${out[t.kind]?.total.toFixed(1)} syscalls per request (${r.ok} requests under strace)`);
  }
  extra.syscalls = out;
}

async function profileScenario(env: Env, spec: LoadSpec): Promise<void> {
  const dir = join(env.work, 'prof');
  mkdirSync(dir, { recursive: true });
  const t = await startBroker(env, 'broker-profile', { crlFile: env.pki.emptyCrl, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-name=broker.cpuprofile'] });
  let r: RoundResult;
  let exitWall = 0;
  t.child.once('exit', () => (exitWall = wall()));
  try {
    r = await round(env, 'profile', `${PROFILE_LOAD} under --cpu-prof`, t, spec, 1, PROFILE_SECONDS);
  } finally {
    await t.stop();
  }
  const file = join(dir, 'broker.cpuprofile');
  if (!existsSync(file)) throw new Error(`no profile written (${readdirSync(dir).join(', ')})`);
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  // The profile's clock is monotonic: its end is (about) the process's exit, which is where the
  // round's wall-clock window is anchored; a little is trimmed at both ends for the slack.
  const toProfile = (w: number) => prof.endTime - (exitWall - w) * 1000;
  const window = { from: toProfile(r.startAt) + 200_000, to: toProfile(r.endAt) - 200_000 };
  const s = summarise(prof, 15, window);
  const requests = Math.round((r.ok * (window.to - window.from)) / 1e6 / r.seconds);
  extra.profile = { requests, seconds: (window.to - window.from) / 1e6, file, summary: s, rps: r.rps, proxyCpuUsPerReq: r.proxyCpuUsPerReq };
  extra.profileMarkdown = profileMarkdown(s, requests);
}

// ---------------------------------------------------------------- report

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((p, q) => p - q);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function pick(scenario: string, variant: string, kind: string): RoundResult[] {
  return results.filter((r) => r.scenario === scenario && r.variant === variant && (r.kind === kind || r.target === kind));
}

interface Line {
  scenario: string;
  metric: string;
  broker: string;
  nginx: string;
  ratio: string;
  perRound: string;
  target: string;
  verdict: string;
}

function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return '–';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)" of a metric over rounds. */
function cell(rows: RoundResult[], f: (r: RoundResult) => number, digits = 0): string {
  if (!rows.length) return '–';
  const xs = rows.map(f);
  return rows.length > 1 ? `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})` : fmt(xs[0] as number, digits);
}

function ratioOf(b: RoundResult[], n: RoundResult[], f: (r: RoundResult) => number): { ratio: number; perRound: string } {
  const ratio = median(b.map(f)) / median(n.map(f));
  const per = b.map((x) => {
    const y = n.find((z) => z.round === x.round);
    return y ? f(x) / f(y) : NaN;
  });
  return { ratio, perRound: per.map((x) => fmt(x, 2)).join(' / ') };
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? '–' : ok ? 'met' : '**missed**';
}

function compare(lines: Line[], scenario: string, label: string, variant: string, metric: string, f: (r: RoundResult) => number, digits: number, target?: { text: string; ok: (ratio: number) => boolean }): number {
  const b = pick(scenario, variant, 'broker');
  const n = pick(scenario, variant, 'nginx');
  if (!b.length && !n.length) return NaN;
  const { ratio, perRound } = ratioOf(b, n, f);
  lines.push({ scenario: label, metric, broker: cell(b, f, digits), nginx: cell(n, f, digits), ratio: fmt(ratio, 2), perRound, target: target?.text ?? '', verdict: target && Number.isFinite(ratio) ? verdict(target.ok(ratio)) : '' });
  return ratio;
}

function buildLines(): { lines: Line[]; verdicts: Array<{ target: string; value: string; met: boolean | undefined }> } {
  const lines: Line[] = [];
  const verdicts: Array<{ target: string; value: string; met: boolean | undefined }> = [];
  const note = (t: string, value: number, ok: (x: number) => boolean, digits = 2) => verdicts.push({ target: t, value: fmt(value, digits), met: Number.isFinite(value) ? ok(value) : undefined });

  if (SCENARIOS.includes('ka64')) {
    const s = 'ka64';
    const label = `keep-alive GET 64 B, ${CONNS} conns`;
    compare(lines, s, label, 'ka64', 'requests/s', (r) => r.rps, 0);
    compare(lines, s, label, 'ka64', 'p50 latency (ms)', (r) => r.p50ms, 2);
    const p99 = compare(lines, s, label, 'ka64', 'p99 latency (ms)', (r) => r.p99ms, 2, { text: '≤ 2×', ok: (x) => x <= 2 });
    const cpu = compare(lines, s, label, 'ka64', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0, { text: '≤ 2×', ok: (x) => x <= 2 });
    compare(lines, s, label, 'ka64', 'load generator CPU µs/request', (r) => r.genCpuUsPerReq, 0);
    note('keep-alive 64 B: proxy CPU per request ≤ 2× nginx', cpu, (x) => x <= 2);
    note('keep-alive 64 B: p99 ≤ 2× nginx (closed loop, each at its own saturation)', p99, (x) => x <= 2);
    if (pick(s, 'ka64-rate', 'broker').length) {
      const rl = `keep-alive GET 64 B at a fixed ${FIXED_RATE.toLocaleString('en-US')} requests/s, ${CONNS} conns`;
      compare(lines, s, rl, 'ka64-rate', 'requests/s', (r) => r.rps, 0);
      compare(lines, s, rl, 'ka64-rate', 'p50 latency (ms)', (r) => r.p50ms, 2);
      const p99r = compare(lines, s, rl, 'ka64-rate', 'p99 latency (ms)', (r) => r.p99ms, 2, { text: '≤ 2×', ok: (x) => x <= 2 });
      compare(lines, s, rl, 'ka64-rate', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0);
      note(`keep-alive 64 B: p99 ≤ 2× nginx (both at a fixed ${FIXED_RATE} requests/s)`, p99r, (x) => x <= 2);
    }
  }
  if (SCENARIOS.includes('ka16k')) {
    const s = 'ka16k';
    const label = `keep-alive GET 16 KiB, ${CONNS} conns`;
    const mb = compare(lines, s, label, 'ka16k', 'MB/s', (r) => r.mbps, 1, { text: '≥ 0.7×', ok: (x) => x >= 0.7 });
    compare(lines, s, label, 'ka16k', 'p99 latency (ms)', (r) => r.p99ms, 2);
    compare(lines, s, label, 'ka16k', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0);
    compare(lines, s, label, 'ka16k', 'load generator CPU µs/request', (r) => r.genCpuUsPerReq, 0);
    note('16 KiB throughput ≥ 0.7× nginx', mb, (x) => x >= 0.7);
  }
  if (SCENARIOS.includes('handshake')) {
    const s = 'handshake';
    const label = `new connection + full mTLS handshake per request, ${HS_CONC} at once`;
    const hs = compare(lines, s, label, 'handshake', 'handshakes/s', (r) => r.rps, 0, { text: '≥ 0.9×', ok: (x) => x >= 0.9 });
    compare(lines, s, label, 'handshake', 'p99 latency (ms)', (r) => r.p99ms, 2);
    compare(lines, s, label, 'handshake', 'proxy CPU µs/handshake', (r) => r.proxyCpuUsPerReq, 0);
    compare(lines, s, label, 'handshake', 'load generator CPU µs/handshake', (r) => r.genCpuUsPerReq, 0);
    note('handshakes/s ≥ 0.9× nginx', hs, (x) => x >= 0.9);
  }
  if (SCENARIOS.includes('identities')) {
    const s = 'identities';
    const label = `${N_IDS} connections, 50 in flight`;
    compare(lines, s, label, 'one identity', 'requests/s, one identity', (r) => r.rps, 0);
    compare(lines, s, label, `${N_IDS} identities`, `requests/s, ${N_IDS} identities`, (r) => r.rps, 0);
    compare(lines, s, label, `${N_IDS} identities`, `proxy CPU µs/request, ${N_IDS} identities`, (r) => r.proxyCpuUsPerReq, 0);
    for (const kind of ['broker', 'nginx'] as const) {
      const one = median(pick(s, 'one identity', kind).map((r) => r.rps));
      const many = median(pick(s, `${N_IDS} identities`, kind).map((r) => r.rps));
      const oneCpu = median(pick(s, 'one identity', kind).map((r) => r.proxyCpuUsPerReq));
      const manyCpu = median(pick(s, `${N_IDS} identities`, kind).map((r) => r.proxyCpuUsPerReq));
      lines.push({ scenario: label, metric: `${kind}: ${N_IDS} identities ÷ one (req/s; CPU/req)`, broker: kind === 'broker' ? `${fmt(many / one, 2)}; ${fmt(manyCpu / oneCpu, 2)}` : '', nginx: kind === 'nginx' ? `${fmt(many / one, 2)}; ${fmt(manyCpu / oneCpu, 2)}` : '', ratio: '', perRound: '', target: kind === 'broker' ? '≥ 0.9 (within 10%)' : '', verdict: kind === 'broker' ? verdict(many / one >= 0.9) : '' });
      if (kind === 'broker') note(`${N_IDS} identities: requests/s within 10% of one identity (not more than 10% slower)`, many / one, (x) => x >= 0.9);
    }
  }
  if (SCENARIOS.includes('crl')) {
    const s = 'crl';
    const info = (extra.crl ?? {}) as { reloads?: Array<{ to: string; ok: boolean; ms: number; status: number; problems?: string[] }>; brokerLoadsBigCrl?: boolean };
    const label = `CRL with ${CRL_N.toLocaleString('en-US')} revoked serials${info.brokerLoadsBigCrl ? '' : ' (the broker refuses it: its handshake columns are Node\'s TLS layer alone with the broker\'s listener options, scripts/bench/tls-server.ts)'}`;
    const bigV = `${CRL_N} revoked`;
    const side = (kind: string) => {
      const e = median(pick(s, 'empty CRL', kind).map((r) => r.rps));
      const b = median(pick(s, bigV, kind).map((r) => r.rps));
      return { e, b, r: b / e, label: pick(s, 'empty CRL', kind)[0]?.target ?? kind };
    };
    const brokerSide = info.brokerLoadsBigCrl ? side('broker') : side('node-tls');
    const nginxSide = side('nginx');
    lines.push({ scenario: label, metric: 'handshakes/s, empty CRL', broker: cell(pick(s, 'empty CRL', info.brokerLoadsBigCrl ? 'broker' : 'node-tls'), (r) => r.rps), nginx: cell(pick(s, 'empty CRL', 'nginx'), (r) => r.rps), ratio: fmt(brokerSide.e / nginxSide.e, 2), perRound: '', target: '', verdict: '' });
    lines.push({ scenario: label, metric: `handshakes/s, ${CRL_N.toLocaleString('en-US')} revoked`, broker: cell(pick(s, bigV, info.brokerLoadsBigCrl ? 'broker' : 'node-tls'), (r) => r.rps), nginx: cell(pick(s, bigV, 'nginx'), (r) => r.rps), ratio: fmt(brokerSide.b / nginxSide.b, 2), perRound: '', target: '', verdict: '' });
    lines.push({ scenario: label, metric: 'big ÷ empty handshake rate', broker: fmt(brokerSide.r, 2), nginx: fmt(nginxSide.r, 2), ratio: '', perRound: '', target: '≥ 0.9 (within 10%)', verdict: info.brokerLoadsBigCrl ? verdict(brokerSide.r >= 0.9) : '**missed** (not loadable)' });
    note(`${CRL_N}-entry CRL: handshake rate within 10% of empty`, info.brokerLoadsBigCrl ? brokerSide.r : NaN, (x) => x >= 0.9);
    if (!info.brokerLoadsBigCrl) verdicts[verdicts.length - 1] = { target: `${CRL_N}-entry CRL: handshake rate within 10% of empty`, value: `broker refuses the CRL; Node TLS layer alone ${fmt(brokerSide.r, 2)}`, met: false };
    const big = (info.reloads ?? []).filter((r) => r.to.includes(`${CRL_N}`));
    const empties = (info.reloads ?? []).filter((r) => r.to.includes('empty') && r.ok);
    const mids = (info.reloads ?? []).filter((r) => r.to.includes('1,000') && r.ok);
    const bigOk = big.filter((r) => r.ok);
    lines.push({
      scenario: label,
      metric: 'broker reload time (POST /reload)',
      broker: `${bigOk.length ? `${fmt(median(bigOk.map((r) => r.ms)))} ms to the big CRL` : `refused (${big[0]?.status ?? '?'} after ${fmt(median(big.map((r) => r.ms)))} ms): ${(big[0]?.problems ?? []).join('; ').slice(0, 160)}`}; ${fmt(median(empties.map((r) => r.ms)))} ms to the empty CRL; ${fmt(median(mids.map((r) => r.ms)))} ms to 1,000 entries`,
      nginx: '',
      ratio: '',
      perRound: '',
      target: '< 1 s',
      verdict: verdict(bigOk.length > 0 && median(bigOk.map((r) => r.ms)) < 1000),
    });
    verdicts.push({ target: `${CRL_N}-entry CRL: broker reload < 1 s`, value: bigOk.length ? `${fmt(median(bigOk.map((r) => r.ms)))} ms` : 'refused', met: bigOk.length > 0 && median(bigOk.map((r) => r.ms)) < 1000 });
  }
  if (SCENARIOS.includes('idle')) {
    const rows = (extra.idle ?? []) as Array<{ kind: string; stillOpen: number; kibPerConnection: number; rssBeforeMiB: number; rssAfterMiB: number; failed: number }>;
    const b = rows.find((r) => r.kind === 'broker');
    const n = rows.find((r) => r.kind === 'nginx');
    const label = `${IDLE_N.toLocaleString('en-US')} idle mTLS connections`;
    const ratio = b && n ? b.kibPerConnection / n.kibPerConnection : NaN;
    lines.push({ scenario: label, metric: 'connections held open', broker: b ? fmt(b.stillOpen) : '–', nginx: n ? fmt(n.stillOpen) : '–', ratio: '', perRound: '', target: '', verdict: '' });
    lines.push({ scenario: label, metric: 'RSS before → after (MiB)', broker: b ? `${fmt(b.rssBeforeMiB, 1)} → ${fmt(b.rssAfterMiB, 1)}` : '–', nginx: n ? `${fmt(n.rssBeforeMiB, 1)} → ${fmt(n.rssAfterMiB, 1)}` : '–', ratio: '', perRound: '', target: '', verdict: '' });
    const hb = b as { heapTotalMiB?: number[]; heapUsedMiB?: number[]; externalMiB?: number[]; heapKibPerConnection?: number } | undefined;
    if (hb?.heapTotalMiB) lines.push({ scenario: label, metric: 'broker: V8 heap total (used), external (MiB)', broker: `${hb.heapTotalMiB.map((x) => fmt(x, 1)).join(' → ')} (${hb.heapUsedMiB?.map((x) => fmt(x, 1)).join(' → ')}); ${hb.externalMiB?.map((x) => fmt(x, 1)).join(' → ')}`, nginx: '', ratio: '', perRound: '', target: '', verdict: '' });
    lines.push({ scenario: label, metric: 'memory per idle connection (KiB)', broker: b ? fmt(b.kibPerConnection, 1) : '–', nginx: n ? fmt(n.kibPerConnection, 1) : '–', ratio: fmt(ratio, 2), perRound: '', target: '≤ 2×', verdict: Number.isFinite(ratio) ? verdict(ratio <= 2) : '' });
    note('memory per idle connection ≤ 2× nginx', ratio, (x) => x <= 2);
  }
  return { lines, verdicts };
}

function markdown(meta: Record<string, unknown>): string {
  const { lines, verdicts } = buildLines();
  const out: string[] = [];
  out.push(`${meta.date}, ${meta.cpu}, ${meta.cores} cores, Node ${meta.node}, nginx ${meta.nginx}; \`${meta.command}\``);
  out.push('');
  out.push(`Rounds: ${ROUNDS} per side of ${SECONDS} s (after ${WARMUP} s of warm-up), alternating broker and nginx; cells are the median (min–max) over rounds; "per round" is broker ÷ nginx round by round. Load: ${GEN_PROCS} generator processes, client groups ${GROUPS}.`);
  out.push('');
  out.push('| scenario | metric | broker | nginx | broker ÷ nginx | per round | target | |');
  out.push('| --- | --- | ---: | ---: | ---: | --- | --- | --- |');
  let last = '';
  for (const l of lines) {
    out.push(`| ${l.scenario === last ? '' : l.scenario} | ${l.metric} | ${l.broker} | ${l.nginx} | ${l.ratio} | ${l.perRound} | ${l.target} | ${l.verdict} |`);
    last = l.scenario;
  }
  if (verdicts.length) {
    out.push('');
    out.push('| target | value | |');
    out.push('| --- | --- | --- |');
    for (const v of verdicts) out.push(`| ${v.target} | ${v.value} | ${verdict(v.met)} |`);
  }
  const crl = extra.crl as { createCrlScaling?: Array<{ entries: number; ms: number }>; createCrlFull?: Record<string, unknown>; crlFile?: Record<string, unknown>; nodeTlsStartEmptyMs?: number; nodeTlsStartBigMs?: number } | undefined;
  if (crl) {
    out.push('');
    out.push(
      `CRL generation: createCrl (@peculiar/x509) ${crl.createCrlScaling?.map((s) => `${s.entries.toLocaleString('en-US')} entries ${fmt(s.ms)} ms`).join(', ')}; ${CRL_N.toLocaleString('en-US')} entries: ${crl.createCrlFull ? (crl.createCrlFull.finished === false ? `not finished after ${crl.createCrlFull.limitSeconds} s` : `${fmt(crl.createCrlFull.ms as number)} ms`) : 'not tried'}. The big CRL used: ${crl.crlFile?.tool} in ${fmt(crl.crlFile?.ms as number)} ms, ${fmt((crl.crlFile?.bytes as number) / 1e6, 1)} MB.${crl.nodeTlsStartBigMs !== undefined ? ` Node TLS server start with the big CRL ${fmt(crl.nodeTlsStartBigMs)} ms (empty: ${fmt(crl.nodeTlsStartEmptyMs as number)} ms).` : ''}`,
    );
  }
  const sc = extra.syscalls as Record<string, { requests: number; perRequest: Record<string, number>; total: number }> | undefined;
  if (sc?.broker && sc.nginx) {
    const names = [...new Set([...Object.keys(sc.broker.perRequest), ...Object.keys(sc.nginx.perRequest)])]
      .sort((x, y) => (sc.broker?.perRequest[y] ?? 0) + (sc.nginx?.perRequest[y] ?? 0) - (sc.broker?.perRequest[x] ?? 0) - (sc.nginx?.perRequest[x] ?? 0))
      .slice(0, 10);
    out.push('');
    out.push(`Syscalls per request, keep-alive 64 B (\`strace -c -f\` on the proxy's processes during the window; strace slows both, the counts stay): broker ${fmt(sc.broker.total, 1)}, nginx ${fmt(sc.nginx.total, 1)}.`);
    out.push('');
    out.push('| syscall | broker per request | nginx per request |');
    out.push('| --- | ---: | ---: |');
    for (const n of names) out.push(`| ${n} | ${fmt(sc.broker.perRequest[n] ?? 0, 2)} | ${fmt(sc.nginx.perRequest[n] ?? 0, 2)} |`);
  }
  if (extra.profileMarkdown) {
    const p = extra.profile as { requests: number; seconds: number };
    out.push('');
    out.push(`CPU profile of the broker under ${PROFILE_LOAD === 'ka64' ? 'keep-alive 64 B' : PROFILE_LOAD} (\`node --cpu-prof\`; self time in the ${fmt(p.seconds, 1)} s measured window, about ${fmt(p.requests)} requests):`);
    out.push('');
    out.push(extra.profileMarkdown as string);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    log(`--max-minutes ${a['max-minutes']} reached: stopping`);
    killAll();
    process.exit(1);
  }, Number(a['max-minutes']) * 60_000);
  deadline.unref();
  const t0 = performance.now();
  if (a.broker !== 'src' && !existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/main.js is missing: run "npm run build" first (or pass --broker src)');
  const nginxBin = ensureNginx(log);
  const work = mkdtempSync(join(os.tmpdir(), 'broker-bench-'));
  log(`work folder ${work}; scenarios ${SCENARIOS.join(', ')}; ${ROUNDS} rounds × ${SECONDS} s`);
  const pki = await makePki(work, ROLE);
  const activeCrl = join(work, 'crl-active.pem');
  copyFileSync(pki.emptyCrl, activeCrl);
  const env: Env = { work, pki, upstream: await startUpstream(), nginxBin, activeCrl };
  const meta: Record<string, unknown> = {
    date: new Date().toISOString().slice(0, 10),
    cpu: (os.cpus()[0]?.model ?? '?').trim(),
    cores: os.availableParallelism(),
    node: process.versions.node,
    openssl: process.versions.openssl,
    nginx: nginxVersion(nginxBin),
    nofile: NOFILE,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    broker: a.broker === 'src' ? 'src/main.ts' : 'dist/main.js',
    rounds: ROUNDS,
    seconds: SECONDS,
    warmup: WARMUP,
    genProcs: GEN_PROCS,
    groups: GROUPS,
  };
  log(`nginx ${meta.nginx}, Node ${meta.node} (OpenSSL ${meta.openssl}), open files limit ${meta.nofile}`);
  const one = [pki.client];
  const ka = (path: string): LoadSpec => ({ mode: 'keepalive', path, connections: CONNS, concurrency: CONNS, identities: one });
  const hs: LoadSpec = { mode: 'handshake', path: '/64', connections: 0, concurrency: HS_CONC, identities: one };
  try {
    const needMain = SCENARIOS.some((s) => ['ka64', 'ka16k', 'handshake', 'identities', 'crl', 'syscalls'].includes(s));
    const broker = needMain ? await startBroker(env, 'broker', { crlFile: activeCrl }) : undefined;
    const nginx = needMain ? await startNginx(env, 'nginx', pki.emptyCrl, Math.max(2_000, N_IDS * 2)) : undefined;
    try {
      if (broker && nginx) {
        const both = (spec: LoadSpec, variant: string) => [
          { variant, target: broker, spec },
          { variant, target: nginx, spec },
        ];
        if (SCENARIOS.includes('ka64')) {
          log('scenario ka64: keep-alive GET, 64 B');
          await alternate(env, 'ka64', both(ka('/64'), 'ka64'));
          if (FIXED_RATE > 0) {
            log(`scenario ka64 at a fixed ${FIXED_RATE} requests/s: latency at the same load`);
            await alternate(env, 'ka64', both({ ...ka('/64'), rate: FIXED_RATE }, 'ka64-rate'));
          }
        }
        if (SCENARIOS.includes('ka16k')) {
          log('scenario ka16k: keep-alive GET, 16 KiB');
          await alternate(env, 'ka16k', both(ka('/16k'), 'ka16k'));
        }
        if (SCENARIOS.includes('handshake')) {
          log('scenario handshake: a full mTLS handshake per request');
          await alternate(env, 'handshake', both(hs, 'handshake'));
        }
        if (SCENARIOS.includes('identities')) {
          log(`scenario identities: minting ${N_IDS} client certificates`);
          const { ids, ms } = await mintIdentities(pki, N_IDS, join(work, 'identities'));
          extra.mint = { identities: N_IDS, ms: Math.round(ms), msEach: ms / N_IDS };
          log(`  minted in ${ms.toFixed(0)} ms (${(ms / N_IDS).toFixed(2)} ms each)`);
          const single: LoadSpec = { mode: 'keepalive', path: '/64', connections: N_IDS, concurrency: 50, identities: one };
          const many: LoadSpec = { ...single, identities: ids };
          await alternate(env, 'identities', [
            { variant: 'one identity', target: broker, spec: single },
            { variant: `${N_IDS} identities`, target: broker, spec: many },
            { variant: 'one identity', target: nginx, spec: single },
            { variant: `${N_IDS} identities`, target: nginx, spec: many },
          ]);
        }
        if (SCENARIOS.includes('crl')) {
          log(`scenario crl: ${CRL_N} revoked serials`);
          await crlScenario(env, broker, nginx, hs);
        }
        if (SCENARIOS.includes('syscalls')) {
          log('scenario syscalls: strace -c on each proxy under keep-alive 64 B');
          await syscallScenario(env, [broker, nginx], ka('/64'));
        }
      }
    } finally {
      await broker?.stop();
      await nginx?.stop();
    }
    if (SCENARIOS.includes('idle')) {
      log(`scenario idle: ${IDLE_N} idle connections`);
      await idleScenario(env);
    }
    if (SCENARIOS.includes('profile')) {
      log(`profile: the broker under --cpu-prof, ${PROFILE_LOAD} for ${PROFILE_SECONDS} s`);
      await profileScenario(env, PROFILE_LOAD === 'handshake' ? hs : ka(PROFILE_LOAD === 'ka16k' ? '/16k' : '/64'));
    }
  } finally {
    await stopChild(env.upstream.child);
  }
  meta.totalSeconds = Math.round((performance.now() - t0) / 1000);
  const md = markdown(meta);
  const outDir = resolve(ROOT, a.out as string);
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const base = join(outDir, `bench-${stamp}${QUICK ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, JSON.stringify({ meta, scenarios: SCENARIOS, rounds: results, extra: { ...extra, profileMarkdown: undefined } }, null, 2));
  writeFileSync(`${base}.md`, `${md}\n`);
  const prof = (extra.profile as { file?: string } | undefined)?.file;
  if (prof && existsSync(prof)) copyFileSync(prof, `${base}.cpuprofile`);
  process.stdout.write(`\n${md}\n\nwritten: ${base}.json, ${base}.md${prof ? `, ${base}.cpuprofile` : ''}\n`);
  if (!a.keep) rmSync(work, { recursive: true, force: true });
  else log(`kept ${work}`);
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    log(`failed: ${e.stack ?? e.message}`);
    killAll();
    process.exit(1);
  },
);
