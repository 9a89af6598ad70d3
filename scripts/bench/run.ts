/**
 * The proxy benchmark: the broker against nginx and a ladder of Node servers, on loopback, in the
 * same interleaved run.
 *
 *   npm run bench                 # every scenario: the ladder in 5 rounds of 5 s per target, identities, crl and forward in 3; under 30 minutes on 2 cores
 *   npm run bench -- --quick      # 2 rounds of 2 s: ka64, ka16k, handshake and alloc only; about 4 minutes
 *   npm run bench -- --scenarios forward               # the forward listener's rows only (about 2.5 minutes; with --quick under 1)
 *   npm run bench -- --scenarios ka64,crl --rounds 5 --seconds 10
 *   npm run bench -- --ablations accessLog,metrics --ablation-scenarios ka64,ka16k,handshake
 *   npm run bench -- --ablations none --ladder none     # the broker against nginx alone, as before
 *   npm run bench -- --fixed-rate 3000                  # the latency rounds at 3,000 requests/s instead of half nginx's rate
 *
 * Starts an upstream (scripts/bench/upstream.ts) and these targets, each its own process:
 * - nginx, configured as the equivalent mTLS proxy (scripts/bench/nginx.ts; installed from
 *   Debian's packages when missing), one worker;
 * - node-bare: a bare Node HTTPS server with the broker's TLS options answering by itself
 *   (scripts/bench/tls-server.ts), the floor of Node's TLS and HTTP;
 * - fastify-stock: stock Fastify 5 + @fastify/http-proxy 11 with the broker's TLS options and
 *   nothing else (scripts/bench/fastify-proxy.ts);
 * - broker: `node dist/main.js serve --config …` (or `--broker src` for src/main.ts) with every
 *   feature on (ACL, generous rate and concurrency limits, bans, metrics, admin listener,
 *   auth/access/audit logs to files);
 * - "broker -NAME": the same broker with one feature switched off (env BROKER_ABLATE=NAME; names
 *   from --ablations: accessLog, authLog, metrics, limits, identityHeaders, guard, hostCheck,
 *   upstreamShare, traceContext, console (the operator console's activity counters)), one process
 *   per feature, measured in the --ablation-scenarios (ka64 and handshake by default); and with
 *   them "broker (control)", a second broker with every feature on: its "cost" is the noise floor
 *   of the feature costs (--no-control leaves it out).
 * - "broker +NAME": the same broker with one feature that is off by default switched on (names from
 *   --plus: rfc9440 and jwt, the route's identity also as RFC 9440 fields or a signed JWT; tracing,
 *   the OTLP span export of every request to a sink in this process that answers 200 and counts
 *   what it got), measured beside the ablation rows; its cost is it − the broker.
 * Rounds go round the targets in turn: A B C … A B C … Each round reports requests (or
 * handshakes, or MB) per second, p50/p99 latency, the target process tree's CPU time per request
 * (utime+stime from /proc) and the load generator's own CPU. Writes bench-results/bench-STAMP.{json,md}
 * and prints the Markdown: the ladder per scenario, what each feature costs (broker all on − broker
 * without it, per round), the targets of issue 13 and of the earlier performance work, and the
 * broker against nginx in detail.
 *
 * Scenarios: ka64 (keep-alive GET, 64 B, 50 connections; then the same at a fixed offered load,
 * by default half of nginx's saturated ka64 rate in this run: latency at equal load), ka16k (16 KiB
 * answers), handshake (a new connection and full mTLS handshake per request), alloc (bytes the
 * broker, the stock Fastify proxy and the bare server allocate on the V8 heap per request under
 * ka64, from --trace-gc-nvp: scripts/bench/gc-alloc.ts, whose method is checked in the same run),
 * identities (1,000 identities on 1,000 connections against one identity on 1,000 connections),
 * crl (a CRL with 100,000 revoked serials: handshake rate and the broker's reload time), idle
 * (10,000 idle mTLS connections: memory per connection), syscalls (strace -c on each proxy under
 * ka64: syscalls per request), profile (a --cpu-prof run of the broker under ka64, summarised;
 * --profile-load handshake or ka16k profiles that load instead), forward (the forward (egress)
 * listener, src/forward/: a broker with `forward:` on, measured in the same rounds on its main
 * listener (ka64, handshake: the reference) and on its forward listener: absolute-form keep-alive
 * `GET http://127.0.0.1:UPSTREAM/64` and a CONNECT tunnel per request (new mTLS connection,
 * CONNECT 127.0.0.1:UPSTREAM, one GET /64 through it, close); nginx as a forward proxy for the
 * absolute-form load beside them; --other-rounds rounds; `--scenarios forward` runs only these).
 *
 * Options besides those above: --rounds (the ladder's; default 5, quick 2), --other-rounds
 * (identities, crl and forward; default 3, or --rounds when given), --seconds, --warmup, --ladder
 * node-bare,fastify-stock|none, --ablations all|none|NAME,… , --ablation-scenarios (default
 * ka64,handshake; ka16k too when named), --no-control, --fixed-rate auto|N|0, --alloc-seconds
 * (default 10, quick 5), --ladder-warmup (seconds of unreported load per target before the first
 * round; default 3, quick 1), --broker dist|src, --keep (keep the work folder: configs, logs),
 * --baseline PATH (the main.js of the build before a change: one more broker in the ablation
 * scenarios, whose "cost" row is what the change costs),
 * --gen c|node, --gen-procs N|auto.
 *
 * Load generator: by default scripts/bench/loadgen.c (one process, epoll, OpenSSL; built at start
 * with cc into os.tmpdir(), cached by source hash: scripts/bench/loadgen.ts) for the keep-alive and
 * handshake loads, with 1 process for keep-alive and 2 for handshakes (--gen-procs auto); it costs
 * a fraction of the CPU per request of the Node one, which would otherwise take the CPU the
 * targets need on a small machine. --gen node uses scripts/bench/load.ts (node:https) for every
 * load, 2 processes by default; the idle scenario always does. When cc or OpenSSL's headers are
 * missing and cannot be installed, the bench warns and uses the Node generator.
 *
 * Not part of `npm test`. Loopback only; every loop is bounded by its round's deadline and the
 * whole run by --max-minutes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { Histogram, type HistogramJson } from './hist.ts';
import { cpuOf, machineCpuSeconds, tree, treeCpuSeconds, treeRssBytes } from './proc.ts';
import { ensureNginx, nginxVersion, writeNginxConfig } from './nginx.ts';
import { bigCrl, makePki, mintIdentities, type BenchPki, type IdentityFiles } from './pki.ts';
import { summarise, profileMarkdown, type CpuProfile } from './profile.ts';
import { allocationInWindow, calibrate, parseTraceGcNvp } from './gc-alloc.ts';
import { cell, fmt, ladderReport, median, verdict, type AllocInfo, type AllocRow, type BrokerCheck, type ForwardInfo, type LadderContext, type RoundResult, type TargetKind } from './ladder.ts';
import type { LoadConfig, LoadResult } from './load.ts';
import { ensureLoadgen, writeLoadgenConfig } from './loadgen.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const HERE = import.meta.dirname;
/** Whether the broker build under test knows a config key (its schema names it). */
function knowsKey(main: string, key: string): boolean {
  const schema = main.endsWith('.ts') ? join(ROOT, 'src', 'config', 'schema.ts') : join(dirname(main), 'config', 'schema.js');
  return existsSync(schema) && readFileSync(schema, 'utf8').includes(key);
}

/** The broker's entry: dist (this build), src (run from source), or the main.js of another build (e.g. the one before a change, for a before/after run). */
const brokerMain = (): string => (a.broker === 'src' ? join(ROOT, 'src', 'main.ts') : a.broker === 'dist' ? join(ROOT, 'dist', 'main.js') : resolve(a.broker as string));
const NODE = process.execPath;
const ALL = ['ka64', 'ka16k', 'handshake', 'alloc', 'identities', 'crl', 'idle', 'syscalls', 'profile', 'forward'] as const;
/** The features the broker can switch off one at a time (env BROKER_ABLATE, comma-separated). */
const FEATURES = ['accessLog', 'authLog', 'metrics', 'limits', 'identityHeaders', 'guard', 'hostCheck', 'upstreamShare', 'traceContext', 'console'] as const;
/**
 * Features that are off by default, each measured as one more broker with it switched on (row
 * "broker +NAME", cost = that broker − the broker): the route's identity also as RFC 9440 fields,
 * also as a signed JWT assertion, and spans exported over OTLP/HTTP (to a sink in this process).
 */
const PLUS = ['rfc9440', 'jwt', 'tracing'] as const;
/** The forward scenario's rows (the broker's own reverse rows keep the label "broker"). */
const FORWARD_LABEL = 'broker forward';
const FORWARD_CONNECT_LABEL = 'broker forward CONNECT';
const NGINX_FORWARD_LABEL = 'nginx forward';
/** The ladder's reference rows besides nginx and the broker. */
const LADDER_EXTRAS = ['node-bare', 'fastify-stock'] as const;
type Scenario = (typeof ALL)[number];

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scenarios: { type: 'string' },
    rounds: { type: 'string' },
    'other-rounds': { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    broker: { type: 'string', default: 'dist' },
    baseline: { type: 'string' },
    connections: { type: 'string', default: '50' },
    'handshake-concurrency': { type: 'string', default: '16' },
    'fixed-rate': { type: 'string', default: 'auto' },
    ladder: { type: 'string', default: LADDER_EXTRAS.join(',') },
    ablations: { type: 'string', default: 'all' },
    'ablation-scenarios': { type: 'string', default: 'ka64,handshake' },
    plus: { type: 'string', default: 'all' },
    control: { type: 'boolean', default: true },
    'alloc-seconds': { type: 'string' },
    'ladder-warmup': { type: 'string' },
    identities: { type: 'string' },
    'crl-entries': { type: 'string' },
    'idle-connections': { type: 'string' },
    gen: { type: 'string', default: 'c' },
    'gen-procs': { type: 'string', default: 'auto' },
    groups: { type: 'string', default: 'X25519' },
    'profile-seconds': { type: 'string' },
    'profile-load': { type: 'string' },
    'x509-crl-limit': { type: 'string', default: '60' },
    'max-minutes': { type: 'string', default: '60' },
    out: { type: 'string', default: 'bench-results' },
    keep: { type: 'boolean', default: false },
  },
  allowNegative: true,
});
const QUICK = a.quick === true;
const SCENARIOS = (a.scenarios ?? (QUICK ? 'ka64,ka16k,handshake,alloc' : ALL.join(','))).split(',').map((s) => s.trim()) as Scenario[];
for (const s of SCENARIOS) if (!ALL.includes(s)) throw new Error(`unknown scenario ${s}; one of ${ALL.join(', ')}`);
/** Rounds of the ladder scenarios (ka64, its fixed-rate part, ka16k, handshake): issue 13's targets are medians of 5. */
const ROUNDS = Number(a.rounds ?? (QUICK ? 2 : 5));
/** Rounds of the identities, crl and forward scenarios: 3 keeps the full run near 25 minutes. */
const OTHER_ROUNDS = Number(a['other-rounds'] ?? a.rounds ?? (QUICK ? 2 : 3));
const csv = (x: string) => x.split(',').map((s) => s.trim()).filter(Boolean);
const LADDER = a.ladder === 'none' ? [] : csv(a.ladder as string);
for (const l of LADDER) if (!(LADDER_EXTRAS as readonly string[]).includes(l)) throw new Error(`--ladder: ${LADDER_EXTRAS.join(', ')} or none, not ${l}`);
const ABLATIONS = a.ablations === 'none' ? [] : a.ablations === 'all' ? [...FEATURES] : csv(a.ablations as string);
const ABLATION_SCENARIOS = csv(a['ablation-scenarios'] as string);
/** With the ablation rows, one more broker with every feature on, whose "cost" is the noise floor of the feature costs (--no-control: without). */
const CONTROL = a.control === true && ABLATIONS.length > 0;
const CONTROL_LABEL = 'broker (control)';
/** --baseline PATH: the main.js of the build before a change, run beside this one in the ablation scenarios' rounds. */
const BASELINE_LABEL = 'broker (before)';
const PLUS_ROWS = a.plus === 'none' ? [] : a.plus === 'all' ? [...PLUS] : csv(a.plus as string);
for (const f of PLUS_ROWS) if (!(PLUS as readonly string[]).includes(f)) throw new Error(`--plus: all, none or some of ${PLUS.join(', ')}, not ${f}`);
for (const f of ABLATIONS) if (!(FEATURES as readonly string[]).includes(f)) throw new Error(`--ablations: all, none or some of ${FEATURES.join(', ')}, not ${f}`);
for (const s of ABLATION_SCENARIOS) if (!['ka64', 'ka16k', 'handshake'].includes(s)) throw new Error(`--ablation-scenarios: ka64, ka16k or handshake, not ${s}`);
const SECONDS = Number(a.seconds ?? (QUICK ? 2 : 5));
const WARMUP = Number(a.warmup ?? (QUICK ? 0.5 : 1));
const CONNS = Number(a.connections);
const HS_CONC = Number(a['handshake-concurrency']);
/** The fixed offered load of the ka64 latency rounds: 'auto' (half of nginx's saturated ka64 rate in this run), a number, or 0 (none). */
const FIXED_RATE_ARG = a['fixed-rate'] === 'auto' ? undefined : Number(a['fixed-rate']);
if (FIXED_RATE_ARG !== undefined && !(FIXED_RATE_ARG >= 0)) throw new Error(`--fixed-rate: auto or a number of requests/s, not ${a['fixed-rate']}`);
/** The rate used (set once ka64's saturated rounds are in). */
let fixedRate = FIXED_RATE_ARG ?? 0;
/** How fixedRate was chosen, for the report. */
let fixedRateHow = FIXED_RATE_ARG !== undefined ? '--fixed-rate' : '';
/** Seconds of keep-alive 64 B load each ladder target gets once before the first measured round (JIT and heap settle; not reported). */
const LADDER_WARMUP = Number(a['ladder-warmup'] ?? (QUICK ? 1 : 3));
/** The alloc scenario's measured window: long enough for several young-generation collections. */
const ALLOC_SECONDS = Number(a['alloc-seconds'] ?? (QUICK ? 5 : 10));
const N_IDS = Number(a.identities ?? (QUICK ? 100 : 1000));
const CRL_N = Number(a['crl-entries'] ?? (QUICK ? 10_000 : 100_000));
const IDLE_N = Number(a['idle-connections'] ?? (QUICK ? 1000 : 10_000));
/** Which load generator: c (scripts/bench/loadgen.c; keepalive and handshake) or node (scripts/bench/load.ts). */
const GEN = a.gen as string;
if (GEN !== 'c' && GEN !== 'node') throw new Error(`--gen: c or node, not ${GEN}`);
/** Load generator processes per round; auto: the C one 1 for keep-alive, 2 for handshakes (client handshakes are CPU-heavy); the Node one 2. */
const GEN_PROCS_ARG = a['gen-procs'] === 'auto' ? undefined : Math.max(1, Number(a['gen-procs']));
if (GEN_PROCS_ARG !== undefined && !Number.isFinite(GEN_PROCS_ARG)) throw new Error(`--gen-procs: auto or a number, not ${a['gen-procs']}`);
/** The C generator's binary once built (main); undefined: the Node generator everywhere. */
let loadgenBin: string | undefined;
const useC = (mode: LoadConfig['mode']) => loadgenBin !== undefined && mode !== 'idle';
const genProcs = (mode: LoadConfig['mode']) => GEN_PROCS_ARG ?? (useC(mode) ? (mode === 'handshake' || mode === 'tunnel' ? 2 : 1) : 2);
const genDescription = () =>
  loadgenBin
    ? `C (scripts/bench/loadgen.c: epoll, ${loadgenHello.openssl ?? 'OpenSSL'}${loadgenHello.fastCertDecode || loadgenHello.verifyCache ? `, client-side handshake shortcuts: ${[loadgenHello.fastCertDecode ? 'legacy EC key decoding' : '', loadgenHello.verifyCache ? 'server chain verdict cached per identical chain' : ''].filter(Boolean).join(', ')}` : ''}), ${GEN_PROCS_ARG ?? 1} process${(GEN_PROCS_ARG ?? 1) > 1 ? 'es' : ''} for keep-alive and ${GEN_PROCS_ARG ?? 2} for handshakes; idle connections from the Node one`
    : `Node (node:https, scripts/bench/load.ts), ${GEN_PROCS_ARG ?? 2} processes`;
/** What the C generator said of itself (its hello): its OpenSSL and which handshake shortcuts it took. */
let loadgenHello: { openssl?: string; fastCertDecode?: boolean; verifyCache?: boolean } = {};
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
      // the JSON may follow part of a line another writer left unfinished (V8's --trace-gc-nvp
      // lines reach the same stdout through C's buffered stdio, flushed in 4 KiB blocks)
      for (let i = line.indexOf('{'); i >= 0; i = line.indexOf('{', i + 1)) {
        try {
          const j = JSON.parse(line.slice(i)) as Record<string, unknown>;
          if (pred(j)) return done(undefined, j as T);
          return;
        } catch {
          /* not JSON from here */
        }
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

/** What the OTLP sink ("broker +tracing"'s collector) received. */
const otlpSink = { requests: 0, bytes: 0, close: () => Promise.resolve() };

/** The sink's URL, once started (one sink for the run). */
let sinkUrl: Promise<string> | undefined;

/** A collector stand-in: answers 200 to every POST /v1/traces and counts requests and bytes, no parsing. */
async function startOtlpSink(): Promise<string> {
  const server = createHttpServer((req, res) => {
    req.on('data', (c: Buffer) => (otlpSink.bytes += c.length));
    req.on('end', () => {
      otlpSink.requests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  otlpSink.close = () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`;
}

interface Target {
  kind: TargetKind;
  label: string;
  pid: number;
  port: number;
  adminPort?: number;
  child: ChildProcess;
  /** The feature switched off (broker-ablated). */
  ablate?: string;
  /** The feature off by default switched on (broker-ablated, "broker +NAME"). */
  added?: string;
  /** The broker's own folder (config, logs). */
  dir?: string;
  /** The broker's forward listener (started with `forward`). */
  forwardPort?: number;
  /** Wall clock (epoch ms) when the process was started: about when its V8 isolate's clock starts. */
  startedAt: number;
  /** Everything it wrote to stdout, once it has exited (only when started with captureStdout). */
  stdout?: () => Promise<string>;
  stop(): Promise<void>;
}

/** Collects a child's stdout in memory; the promise settles when the stream ends (at the latest 5 s after exit). */
function captureStdout(child: ChildProcess): () => Promise<string> {
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => {
    child.stdout?.once('close', () => r());
    child.once('exit', () => setTimeout(r, 5_000).unref());
  });
  return async () => {
    await ended;
    return Buffer.concat(chunks).toString('utf8');
  };
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

async function startBroker(env: Env, label: string, o: { crlFile: string; nodeArgs?: string[]; ablate?: string; plus?: string; control?: boolean; captureStdout?: boolean; main?: string; forward?: boolean }): Promise<Target> {
  const main = o.main ?? brokerMain();
  const dir = join(env.work, label.replace(/[^\w.-]+/g, '_'));
  mkdirSync(dir, { recursive: true });
  const route: Record<string, unknown> = { name: 'bench', path: '/', upstream: `http://127.0.0.1:${env.upstream.port}`, roles: [ROLE] };
  if (o.plus === 'rfc9440') route.identity = ['headers', 'xfcc', 'rfc9440'];
  if (o.plus === 'jwt') route.identity = ['headers', 'xfcc', 'jwt'];
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    pki: { dir: env.pki.dir },
    tls: { server: 'localhost', crl: o.crlFile },
    routes: [route],
    ...(o.plus === 'tracing' ? { tracing: { otlp: { endpoint: await (sinkUrl ??= startOtlpSink()) }, sampleRatio: 1 } } : {}),
    // every feature on, with limits far above what the benchmark sends (it comes from one address)
    rateLimit: { rate: 1_000_000, per: '1s', burst: 1_000_000 },
    maxConcurrent: 100_000,
    // One identity sends all the load: its share of the upstream pool is the whole pool (the
    // counting still runs). Only for builds that know the key (a before/after run may use an older one).
    ...(knowsKey(main, 'upstreamShare') ? { limits: { upstreamShare: 1 } } : {}),
    filters: { maxConnectionsPerIp: 100_000, connectionRate: { rate: 100_000, per: '1s', burst: 100_000 } },
    bans: { enabled: true },
    timeouts: { keepAlive: '120s' },
    // Buffered like nginx's access_log (buffer=64k flush=1s in nginx.ts).
    log: { level: 'info', auth: join(dir, 'auth.log'), access: join(dir, 'access.log'), audit: join(dir, 'audit.log'), error: 'stderr', buffer: '64kb', flushInterval: '1s' },
    admin: { host: '127.0.0.1', port: 0 },
    // reloads are triggered (and timed) through POST /reload, not by the file watcher
    reload: { watch: false },
    // "broker +tracing": a span per request (server + client), every one sampled, exported to the bench's sink
    // the forward scenario: the forward listener, allowed to reach the upstream and nothing else
    // (its per-identity limits far above the load, like the reverse ones, for builds that have them: the counting still runs)
    ...(o.forward
      ? {
          forward: {
            listen: { host: '127.0.0.1', port: 0 },
            rules: [{ roles: [ROLE], hosts: ['127.0.0.1'], ports: [env.upstream.port], allowPrivate: ['127.0.0.0/8'] }],
            ...(knowsKey(main, 'maxTunnels') ? { limits: { tunnels: { rate: 1_000_000, per: '1s', burst: 1_000_000 }, maxTunnels: 100_000 } } : {}),
          },
        }
      : {}),
  };
  const file = join(dir, 'broker.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  // BENCH_BROKER_NODE_ARGS: extra Node flags for the broker, for diagnosis (e.g. --trace-gc; its output lands in stdout.log)
  const extraArgs = (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  // BROKER_ABLATE=NAME switches one feature off (the ablation rows); the main broker has every feature on
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.BROKER_ABLATE;
  if (o.ablate) childEnv.BROKER_ABLATE = o.ablate;
  const startedAt = wall();
  const child = spawnChild(NODE, [...extraArgs, ...(o.nodeArgs ?? []), main, 'serve', '--config', file], { env: childEnv });
  const stdout = o.captureStdout ? captureStdout(child) : undefined;
  child.stderr?.pipe(createWriteStream(join(dir, 'error.log')));
  child.stdout?.pipe(createWriteStream(join(dir, 'stdout.log')));
  const ready = await firstJsonLine<{ port: number; adminPort: number; forwardPort?: number | null }>(child, 'stderr', (j) => j.event === 'listening', 30_000, `broker ${label}`).catch((e: Error) => {
    throw new Error(`${e.message}; see ${join(dir, 'error.log')}`);
  });
  return {
    kind: o.ablate || o.plus || o.control ? 'broker-ablated' : 'broker',
    label,
    pid: child.pid as number,
    port: ready.port,
    adminPort: ready.adminPort,
    ...(typeof ready.forwardPort === 'number' ? { forwardPort: ready.forwardPort } : {}),
    child,
    ...(o.ablate ? { ablate: o.ablate } : {}),
    ...(o.plus ? { added: o.plus } : {}),
    dir,
    startedAt,
    ...(stdout ? { stdout } : {}),
    stop: () => stopChild(child, 10_000),
  };
}

async function startNginx(env: Env, label: string, crlFile: string, maxConnections: number, o: { forward?: boolean } = {}): Promise<Target> {
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
    ...(o.forward ? { forward: true } : {}),
  });
  const t = spawnSync(env.nginxBin, ['-t', '-p', prefix, '-c', conf, '-g', 'daemon off;'], { encoding: 'utf8', timeout: 60_000 });
  if (t.status !== 0) throw new Error(`nginx -t failed:\n${t.stderr}`);
  const startedAt = wall();
  const child = spawnChild(env.nginxBin, ['-p', prefix, '-c', conf, '-g', 'daemon off;']);
  child.stdout?.resume();
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label}] ${d}`));
  await waitForPort(port, 30_000);
  return { kind: 'nginx', label, pid: child.pid as number, port, child, startedAt, stop: () => stopChild(child, 10_000) };
}

/** A Node process of ours that prints {"port":N} on stdout: tls-server.ts (node-tls) or fastify-proxy.ts (fastify). */
async function startNodeScript(kind: 'node-tls' | 'fastify', script: string, args: string[], label: string, o: { nodeArgs?: string[]; captureStdout?: boolean } = {}): Promise<Target> {
  const startedAt = wall();
  const child = spawnChild(NODE, [...(o.nodeArgs ?? []), join(HERE, script), ...args]);
  const stdout = o.captureStdout ? captureStdout(child) : undefined;
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${label}] ${d}`));
  const { port } = await firstJsonLine<{ port: number }>(child, 'stdout', (j) => typeof j.port === 'number', 60_000, label);
  if (!stdout) child.stdout?.resume();
  return { kind, label, pid: child.pid as number, port, child, startedAt, ...(stdout ? { stdout } : {}), stop: () => stopChild(child) };
}

/** The bare Node HTTPS server with the broker's TLS options, answering by itself. */
function startNodeTls(env: Env, label: string, crlFile: string, o: { nodeArgs?: string[]; captureStdout?: boolean } = {}): Promise<Target> {
  return startNodeScript('node-tls', 'tls-server.ts', [env.pki.serverCert, env.pki.serverKey, env.pki.chainFile, crlFile], label, o);
}

/** Stock Fastify + @fastify/http-proxy with the broker's TLS options, proxying to the upstream. */
function startFastify(env: Env, label: string, crlFile: string, o: { nodeArgs?: string[]; captureStdout?: boolean } = {}): Promise<Target> {
  return startNodeScript('fastify', 'fastify-proxy.ts', [env.pki.serverCert, env.pki.serverKey, env.pki.chainFile, crlFile, `http://127.0.0.1:${env.upstream.port}`], label, o);
}

function adminPost(port: number, path: string, ms = 120_000): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'x-broker-admin': '1' }, timeout: ms }, (r) => {
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
    const one = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
    // prom-client's usual names; builds before issue 19 prefixed them with broker_process_.
    const get = (name: string) => {
      const v = one(name);
      return Number.isNaN(v) ? one(`broker_process_${name}`) : v;
    };
    return { heapUsed: get('nodejs_heap_size_used_bytes'), heapTotal: get('nodejs_heap_size_total_bytes'), external: get('nodejs_external_memory_bytes') };
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
  /** tunnel mode: the CONNECT target (host:port). */
  connect?: string;
  /** The Host header instead of localhost:PORT (absolute-form requests name their destination). */
  hostHeader?: string;
}

interface Gen {
  child: ChildProcess;
  pid: number;
  next<T>(type: string, ms: number): Promise<T>;
  send(m: unknown): void;
  /** Whether it still takes commands (IPC connected, or the C generator's stdin open). */
  canSend(): boolean;
}

/** The C generator's commands on stdin: the IPC messages of load.ts as lines. */
function loadgenCommand(m: { cmd: string; startAt?: number; endAt?: number }): string {
  if (m.cmd === 'run') return `run ${m.startAt} ${m.endAt}\n`;
  return `${m.cmd}\n`;
}

async function startGens(env: Env, target: Target, spec: LoadSpec): Promise<Gen[]> {
  const procs = Math.min(genProcs(spec.mode), Math.max(1, spec.mode === 'handshake' || spec.mode === 'tunnel' ? spec.concurrency : spec.connections));
  const c = useC(spec.mode);
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
      ...(spec.connect !== undefined ? { connect: spec.connect } : {}),
      ...(spec.hostHeader !== undefined ? { hostHeader: spec.hostHeader } : {}),
      groups: GROUPS,
      openConcurrency: 32,
      requestTimeoutMs: 30_000,
      maxLifeMs: 20 * 60_000,
    };
    offset += cfg.connections || cfg.concurrency;
    const file = join(env.work, `load-${target.label.replace(/[^\w.-]+/g, '_')}-${g}.${c ? 'cfg' : 'json'}`);
    const inbox: Array<Record<string, unknown>> = [];
    const waiters: Array<() => void> = [];
    const deliver = (m: Record<string, unknown>) => {
      inbox.push(m);
      for (const w of waiters.splice(0)) w();
    };
    let child: ChildProcess;
    let send: (m: unknown) => void;
    let canSend: () => boolean;
    if (c) {
      // the C generator: commands as lines on its stdin, the same messages as JSON lines on its stdout;
      // it is the measured process itself (no wrapper), and exits when its stdin closes
      writeLoadgenConfig(file, cfg);
      child = spawnChild(loadgenBin as string, [file], { stdio: ['pipe', 'pipe', 'inherit' as never] });
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        try {
          const m = JSON.parse(line) as Record<string, unknown>;
          if (m.type === 'hello') loadgenHello = { openssl: String(m.openssl), fastCertDecode: m.fastCertDecode === true, verifyCache: m.verifyCache === true };
          deliver(m);
        } catch {
          process.stderr.write(`[loadgen] ${line}\n`);
        }
      });
      child.stdin?.on('error', () => {}); // it may exit before reading a last command
      send = (m) => child.stdin?.write(loadgenCommand(m as { cmd: string }));
      canSend = () => child.exitCode === null && child.stdin?.writable === true;
    } else {
      writeFileSync(file, JSON.stringify(cfg));
      child = spawnChild(NODE, [join(HERE, 'load.ts'), file], { stdio: ['ignore', 'inherit' as never, 'inherit' as never, 'ipc'] });
      child.on('message', deliver);
      send = (m) => child.send(m as never);
      canSend = () => child.connected;
    }
    const gen: Gen = {
      child,
      pid: child.pid as number,
      send,
      canSend,
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
  for (const g of gens) if (g.canSend()) g.send({ cmd: 'close' });
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

/** Every measured round of the run (RoundResult: scripts/bench/ladder.ts). */
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
    const zero = { proxy: 0, gen: 0, up: 0, machine: { busy: 0, steal: 0 } };
    let s0 = zero;
    let s1 = zero;
    const sample = () => ({ proxy: treeCpuSeconds(target.pid), gen: cpuOf(genPids), up: treeCpuSeconds(env.upstream.pid), machine: machineCpuSeconds() });
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
      otherCpuShare: (s1.machine.busy - s0.machine.busy - (s1.proxy - s0.proxy) - (s1.gen - s0.gen) - (s1.up - s0.up)) / seconds / os.availableParallelism(),
      stealShare: (s1.machine.steal - s0.machine.steal) / seconds / os.availableParallelism(),
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

/** Rounds going round the variants and targets in turn: A B C … A B C … */
async function alternate(env: Env, scenario: string, plan: Array<{ variant: string; target: Target; spec: LoadSpec; before?: () => Promise<void> }>, rounds = ROUNDS): Promise<void> {
  for (let r = 1; r <= rounds; r++) {
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
  // 1. how long the CA's CRL writer (signCrl) takes, growing n, then a capped attempt at the full size
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
  // Brokers refuse a CRL numbered below the one loaded (rollback protection), so every CRL put in
  // place is signed anew with the next number: the empty one, 1,000 entries, or the big one's entries.
  let number = 2_000_000;
  const bigTool = big.tool as 'x509' | 'openssl';
  const fresh = async (n: number) => (await bigCrl(env.pki, n, env.work, n === CRL_N ? bigTool : 'x509', number++)).file;
  const emptyCrl = async () => await reloadTo(await fresh(0), 'the empty CRL');
  const bigCrlNow = async () => await reloadTo(bigTool === 'x509' ? await fresh(CRL_N) : big.file, `the ${CRL_N}-entry CRL`);
  await reloadTo(await fresh(1000), 'a 1,000-entry CRL');
  await emptyCrl();
  await reloadTo(await fresh(1000), 'a 1,000-entry CRL');
  await emptyCrl();
  const brokerTakesBig = await bigCrlNow();
  if (brokerTakesBig) {
    await emptyCrl();
    await bigCrlNow();
  }
  await emptyCrl();
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
      plan.push({ variant: 'empty CRL', target: broker, spec: hsSpec, before: async () => void (await emptyCrl()) });
      plan.push({ variant: `${CRL_N} revoked`, target: broker, spec: hsSpec, before: async () => void (await bigCrlNow()) });
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
    await alternate(env, 'crl', plan, OTHER_ROUNDS);
    if (brokerTakesBig) await emptyCrl();
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

/** Whether an ablation took: what the broker said at start, and what it wrote to its logs (read after it stopped). */
function brokerCheck(t: Target): BrokerCheck {
  const size = (f: string) => {
    try {
      return statSync(join(t.dir as string, f)).size;
    } catch {
      return 0;
    }
  };
  let line: string | undefined;
  let off: string[] | undefined;
  try {
    line = readFileSync(join(t.dir as string, 'error.log'), 'utf8')
      .split('\n')
      .find((l) => /ablat/i.test(l));
    const j = JSON.parse(line ?? '') as { off?: unknown };
    if (Array.isArray(j.off)) off = j.off.map(String);
  } catch {
    /* no log, or not JSON */
  }
  if (t.added === 'tracing') {
    // the exporter's work is the cost measured: the sink says it was done (a failing export would be cheaper)
    const errors = (() => {
      try {
        return readFileSync(join(t.dir as string, 'error.log'), 'utf8').split('\n').filter((l) => /"level":(50|60)/.test(l)).length;
      } catch {
        return 0;
      }
    })();
    line = `OTLP sink received ${otlpSink.requests} exports (${(otlpSink.bytes / 1e6).toFixed(1)} MB)${errors ? `; ${errors} error lines` : ''}`;
  }
  return { label: t.label, ...(t.ablate ? { ablate: t.ablate } : {}), ...(t.added ? { added: t.added } : {}), accessLogBytes: size('access.log'), authLogBytes: size('auth.log'), ...(line ? { notice: line.slice(0, 300) } : {}), ...(off ? { off } : {}) };
}

/**
 * Allocation per request under keep-alive 64 B: each of the broker (every feature on), the stock
 * Fastify proxy and the bare Node server in a process of its own under --trace-gc-nvp, a warm-up
 * round, then one measured round of ALLOC_SECONDS; the method (scripts/bench/gc-alloc.ts) is first
 * checked on a child that allocates a known amount.
 */
async function allocScenario(env: Env, spec: LoadSpec): Promise<void> {
  const info: Record<string, unknown> = {};
  try {
    const cal = calibrate(NODE);
    info.calibration = cal;
    for (const c of cal) log(`  method check, ${c.phase}: known ${fmt(c.knownBytesPerSecond / 1e6, 1)} MB/s, measured ${fmt(c.measuredBytesPerSecond / 1e6, 1)} MB/s (×${fmt(c.ratio, 3)}, ${c.collections} collections)`);
  } catch (e) {
    info.calibrationError = (e as Error).message;
    log(`  method check failed: ${(e as Error).message}`);
  }
  const traced = { nodeArgs: ['--trace-gc-nvp'], captureStdout: true };
  const starters: Array<[string, () => Promise<Target>]> = [['broker', () => startBroker(env, 'broker-alloc', { crlFile: env.pki.emptyCrl, ...traced })]];
  if (LADDER.includes('fastify-stock')) starters.push(['fastify-stock', () => startFastify(env, 'fastify-stock-alloc', env.pki.emptyCrl, traced)]);
  if (LADDER.includes('node-bare')) starters.push(['node-bare', () => startNodeTls(env, 'node-bare-alloc', env.pki.emptyCrl, traced)]);
  const rows: AllocRow[] = [];
  for (const [name, start] of starters) {
    const t = await start();
    let r: RoundResult;
    try {
      await round(env, 'alloc-warmup', 'warm-up', t, spec, 1, Math.min(2, SECONDS));
      r = await round(env, 'alloc', 'ka64 under --trace-gc-nvp', t, spec, 1, ALLOC_SECONDS);
    } finally {
      await t.stop();
    }
    const events = parseTraceGcNvp(t.stdout ? await t.stdout() : '');
    // the window in the isolate's clock (ms since it started, about when the process was spawned), trimmed
    const trim = Math.max(200, ALLOC_SECONDS * 50);
    const from = r.startAt - t.startedAt + trim;
    const to = r.endAt - t.startedAt - trim;
    const w = allocationInWindow(events, from, to);
    const row: AllocRow = { target: name, label: t.label, rps: r.rps, requests: r.ok, proxyCpuUsPerReq: r.proxyCpuUsPerReq, ...w, bytesPerRequest: w.bytesPerSecond / r.rps, gcPauseMsPerSecond: w.pauseMs / ((to - from) / 1000), collectionsTraced: events.length };
    rows.push(row);
    log(`  ${name}: ${fmt(row.bytesPerRequest / 1000, 1)} KB/request (${fmt(w.bytesPerSecond / 1e6, 1)} MB/s at ${fmt(r.rps)} requests/s; ${w.collections} collections in the window, ${w.markCompacts} mark-compacts; pauses ${fmt(row.gcPauseMsPerSecond, 1)} ms/s, longest ${fmt(w.maxPauseMs, 1)} ms)`);
  }
  extra.alloc = { ...info, seconds: ALLOC_SECONDS, rows };
}

/**
 * The forward (egress) listener: one broker with every feature on and `forward:` on, measured in
 * the same rounds on its main listener (the reverse rows: keep-alive 64 B and a handshake per
 * request, the references) and on its forward listener (absolute-form keep-alive GETs to the
 * upstream, and a CONNECT tunnel per request with one GET through it), beside nginx as a forward
 * proxy for the absolute-form load (nginx has no CONNECT). With --baseline, the build before the
 * change runs its forward rows too when it has the forward listener; builds without one (their
 * config schema has no forward rules) are left out with a note, as is the whole scenario when the
 * broker under test has none.
 */
async function forwardScenario(env: Env): Promise<void> {
  const info: { skipped?: string; notes: string[]; destination?: string } = { notes: [] };
  extra.forward = info;
  // forward.rules[].allowPrivate came with the forward listener: a build without it refuses the config
  const hasForward = (main: string) => knowsKey(main, 'allowPrivate');
  if (!hasForward(brokerMain())) {
    info.skipped = `the broker under test (${brokerMain()}) has no forward listener (its config schema has no forward rules): scenario skipped`;
    log(`  ${info.skipped}`);
    return;
  }
  const dest = `127.0.0.1:${env.upstream.port}`;
  info.destination = dest;
  const one = [env.pki.client];
  const reverseKa: LoadSpec = { mode: 'keepalive', path: '/64', connections: CONNS, concurrency: CONNS, identities: one };
  const absoluteKa: LoadSpec = { ...reverseKa, path: `http://${dest}/64`, hostHeader: dest };
  const reverseHs: LoadSpec = { mode: 'handshake', path: '/64', connections: 0, concurrency: HS_CONC, identities: one };
  const tunnel: LoadSpec = { ...reverseHs, mode: 'tunnel', connect: dest };
  const started: Target[] = [];
  /** The broker's forward listener as a target of its own (same process, so the same CPU counter). */
  const forwardOf = (b: Target, label: string): Target => {
    if (b.forwardPort === undefined) throw new Error(`${b.label} did not report a forward listener (no forwardPort in its "listening" line)`);
    return { ...b, kind: 'broker-forward', label, port: b.forwardPort };
  };
  try {
    const b = await startBroker(env, 'broker-forward', { crlFile: env.pki.emptyCrl, forward: true });
    started.push(b);
    const n = await startNginx(env, 'nginx-forward', env.pki.emptyCrl, 2_000, { forward: true });
    started.push(n);
    const bf = forwardOf(b, FORWARD_LABEL);
    // its main listener, the reference of both loads (label "broker" in this scenario's rounds)
    const reverse: Target = { ...b, label: 'broker' };
    const plan: Parameters<typeof alternate>[2] = [
      { variant: 'ka64', target: reverse, spec: reverseKa },
      { variant: 'ka64', target: bf, spec: absoluteKa },
      { variant: 'ka64', target: { ...n, kind: 'nginx-forward', label: NGINX_FORWARD_LABEL }, spec: absoluteKa },
      { variant: 'handshake', target: reverse, spec: reverseHs },
      { variant: 'handshake', target: { ...bf, label: FORWARD_CONNECT_LABEL }, spec: tunnel },
    ];
    if (a.baseline) {
      const main = resolve(a.baseline as string);
      if (hasForward(main)) {
        const before = await startBroker(env, 'broker-forward-before', { crlFile: env.pki.emptyCrl, forward: true, main });
        started.push(before);
        const bb = forwardOf(before, `${BASELINE_LABEL} forward`);
        plan.splice(3, 0, { variant: 'ka64', target: bb, spec: absoluteKa });
        plan.push({ variant: 'handshake', target: { ...bb, label: `${BASELINE_LABEL} forward CONNECT` }, spec: tunnel });
      } else {
        info.notes.push(`The --baseline build (${main}) has no forward listener: its forward rows are left out.`);
        log(`  ${info.notes[info.notes.length - 1]}`);
      }
    }
    log(`  targets: ${plan.map((p) => `${p.target.label} (${p.variant})`).join(', ')}; ${OTHER_ROUNDS} rounds`);
    if (LADDER_WARMUP > 0) {
      // fresh processes and a code path not run yet: one unreported round of each load first
      for (const p of plan) await round(env, 'forward-warmup', 'warm-up', p.target, p.spec, 1, LADDER_WARMUP);
    }
    await alternate(env, 'forward', plan, OTHER_ROUNDS);
  } finally {
    for (const t of started) await t.stop();
  }
}

// ---------------------------------------------------------------- report

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

function ratioOf(b: RoundResult[], n: RoundResult[], f: (r: RoundResult) => number): { ratio: number; perRound: string } {
  const ratio = median(b.map(f)) / median(n.map(f));
  const per = b.map((x) => {
    const y = n.find((z) => z.round === x.round);
    return y ? f(x) / f(y) : NaN;
  });
  return { ratio, perRound: per.map((x) => fmt(x, 2)).join(' / ') };
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

  // broker against nginx in detail; the targets are issue 13's (the verdicts are in targetVerdicts())
  if (SCENARIOS.includes('ka64')) {
    const s = 'ka64';
    const label = `keep-alive GET 64 B, ${CONNS} conns`;
    compare(lines, s, label, 'ka64', 'requests/s', (r) => r.rps, 0);
    compare(lines, s, label, 'ka64', 'p50 latency (ms)', (r) => r.p50ms, 2);
    compare(lines, s, label, 'ka64', 'p99 latency (ms)', (r) => r.p99ms, 2);
    compare(lines, s, label, 'ka64', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0, { text: '≤ 3.5×', ok: (x) => x <= 3.5 });
    compare(lines, s, label, 'ka64', 'load generator CPU µs/request', (r) => r.genCpuUsPerReq, 0);
    if (pick(s, 'ka64-rate', 'broker').length) {
      const rl = `keep-alive GET 64 B at a fixed ${fmt(fixedRate)} requests/s (${fixedRateHow}), ${CONNS} conns`;
      compare(lines, s, rl, 'ka64-rate', 'requests/s', (r) => r.rps, 0);
      compare(lines, s, rl, 'ka64-rate', 'p50 latency (ms)', (r) => r.p50ms, 2);
      compare(lines, s, rl, 'ka64-rate', 'p99 latency (ms)', (r) => r.p99ms, 2, { text: '≤ 2×', ok: (x) => x <= 2 });
      compare(lines, s, rl, 'ka64-rate', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0);
    }
  }
  if (SCENARIOS.includes('ka16k')) {
    const s = 'ka16k';
    const label = `keep-alive GET 16 KiB, ${CONNS} conns`;
    compare(lines, s, label, 'ka16k', 'MB/s', (r) => r.mbps, 1, { text: '≥ 0.7×', ok: (x) => x >= 0.7 });
    compare(lines, s, label, 'ka16k', 'p99 latency (ms)', (r) => r.p99ms, 2);
    compare(lines, s, label, 'ka16k', 'proxy CPU µs/request', (r) => r.proxyCpuUsPerReq, 0, { text: '≤ 2.5×', ok: (x) => x <= 2.5 });
    compare(lines, s, label, 'ka16k', 'load generator CPU µs/request', (r) => r.genCpuUsPerReq, 0);
  }
  if (SCENARIOS.includes('handshake')) {
    const s = 'handshake';
    const label = `new connection + full mTLS handshake per request, ${HS_CONC} at once`;
    compare(lines, s, label, 'handshake', 'handshakes/s', (r) => r.rps, 0, { text: '≥ 1.0×', ok: (x) => x >= 1 });
    compare(lines, s, label, 'handshake', 'p99 latency (ms)', (r) => r.p99ms, 2);
    compare(lines, s, label, 'handshake', 'proxy CPU µs/handshake', (r) => r.proxyCpuUsPerReq, 0, { text: '≤ 1.1×', ok: (x) => x <= 1.1 });
    compare(lines, s, label, 'handshake', 'load generator CPU µs/handshake', (r) => r.genCpuUsPerReq, 0);
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

/** The ladder report (scripts/bench/ladder.ts) over this run's rounds. */
function report() {
  const ctx: LadderContext = {
    scenarios: SCENARIOS,
    connections: CONNS,
    handshakeConcurrency: HS_CONC,
    fixedRate,
    fixedRateHow,
    fixedRateAuto: FIXED_RATE_ARG === undefined,
    ablationScenarios: ABLATION_SCENARIOS,
    controlLabel: CONTROL_LABEL,
    baselineLabel: a.baseline ? BASELINE_LABEL : undefined,
    brokerChecks: (extra.brokerChecks ?? []) as BrokerCheck[],
    alloc: extra.alloc as AllocInfo | undefined,
    forward: extra.forward ? { rounds: OTHER_ROUNDS, seconds: SECONDS, ...(extra.forward as Omit<ForwardInfo, 'rounds' | 'seconds'>) } : undefined,
  };
  return ladderReport(results, ctx);
}

function summaryJson(): Record<string, unknown> {
  const r = report();
  return {
    ladder: r.ladderSpecs().map((s) => ({ scenario: s.scenario, variant: s.variant, title: s.title, per: s.per, rate: s.rateName, rows: r.ladderRows(s) })),
    featureCosts: r.featureCosts(),
    forward: r.forwardSummary(),
    fixedRate: { rate: fixedRate, how: fixedRateHow },
    targets: r.targetVerdicts(),
    earlierTargets: buildLines().verdicts,
  };
}

function markdown(meta: Record<string, unknown>): string {
  const { lines, verdicts } = buildLines();
  const ladderScenarios = SCENARIOS.filter((x) => x === 'ka64' || x === 'ka16k' || x === 'handshake');
  const otherScenarios = SCENARIOS.filter((x) => x === 'identities' || x === 'crl' || x === 'forward');
  const out: string[] = [];
  out.push(`- Date: ${meta.date}, ${meta.startTime}–${meta.endTime} UTC (${fmt((meta.totalSeconds as number) / 60, 1)} min)`);
  out.push(`- Machine: ${meta.cpu}, ${meta.cores} cores, ${meta.kernel}, ${fmt(meta.memGiB as number, 1)} GiB`);
  out.push(`- Node ${meta.node} (OpenSSL ${meta.openssl}), nginx ${meta.nginx}; broker ${meta.broker} at ${meta.commit}`);
  out.push(`- Command: \`${meta.command}\``);
  out.push(
    `- Rounds: ${[
      ladderScenarios.length ? `${ROUNDS} per target for ${ladderScenarios.join(', ')}` : '',
      otherScenarios.length ? `${OTHER_ROUNDS} for ${otherScenarios.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join(', ')}, each ${SECONDS} s measured after ${WARMUP} s of warm-up, the targets in turn round after round (A B C … A B C …); cells are the median (min–max) over rounds. CPU: the target's process tree (utime+stime from /proc). Load generator: ${genDescription()}, client certificates, ${CONNS} keep-alive connections, ${HS_CONC} handshakes at once, client groups ${GROUPS}; nginx with one worker, the broker as one process.${ABLATIONS.length ? ` The broker with one feature off (${ABLATIONS.join(', ')}) runs in ${ABLATION_SCENARIOS.filter((x) => (ladderScenarios as string[]).includes(x)).join(', ') || 'no scenario of this run'}.` : ''}`,
  );
  const measured = results.filter((r) => !r.scenario.endsWith('warmup'));
  if (measured.length) {
    const pct = (x: number) => `${fmt(x * 100, 1)} %`;
    const worst = [...measured].sort((p, q) => q.otherCpuShare - p.otherCpuShare)[0] as RoundResult;
    const busy = measured.filter((r) => r.otherCpuShare > 0.1);
    out.push(
      `- Other load in the measured windows (busy CPU not charged to the target, its load generators or the upstream), share of the machine: median ${pct(median(measured.map((r) => r.otherCpuShare)))}, max ${pct(worst.otherCpuShare)} (${worst.scenario}/${worst.variant} ${worst.target} r${worst.round}); hypervisor steal: median ${pct(median(measured.map((r) => r.stealShare)))}, max ${pct(Math.max(...measured.map((r) => r.stealShare)))}.${busy.length ? ` ${busy.length} of ${measured.length} rounds had more than 10 % other load: treat those rounds with care.` : ''}`,
    );
  }
  const r = report();
  const tv = r.targetVerdicts();
  out.push(...r.ladderMarkdown());
  out.push(...r.featureCostMarkdown());
  out.push(...r.allocMarkdown());
  out.push(...r.forwardMarkdown());
  if (tv.length || verdicts.length) {
    out.push('');
    out.push('**Targets** (issue 13: the broker with every feature on; then the earlier targets that must not get worse)');
    out.push('');
    out.push('| target | value | |');
    out.push('| --- | --- | --- |');
    for (const v of tv) out.push(`| ${v.target} | ${v.value} | ${verdict(v.met)} |`);
    for (const v of verdicts) out.push(`| earlier: ${v.target} | ${v.value} | ${verdict(v.met)} |`);
  }
  if (lines.length) {
    out.push('');
    out.push('**The broker against nginx in detail** ("per round": broker ÷ nginx round by round)');
    out.push('');
  }
  out.push('| scenario | metric | broker | nginx | broker ÷ nginx | per round | target | |');
  out.push('| --- | --- | ---: | ---: | ---: | --- | --- | --- |');
  let last = '';
  for (const l of lines) {
    out.push(`| ${l.scenario === last ? '' : l.scenario} | ${l.metric} | ${l.broker} | ${l.nginx} | ${l.ratio} | ${l.perRound} | ${l.target} | ${l.verdict} |`);
    last = l.scenario;
  }
  if (!lines.length) out.splice(out.length - 2, 2);
  const crl = extra.crl as { createCrlScaling?: Array<{ entries: number; ms: number }>; createCrlFull?: Record<string, unknown>; crlFile?: Record<string, unknown>; nodeTlsStartEmptyMs?: number; nodeTlsStartBigMs?: number } | undefined;
  if (crl) {
    out.push('');
    out.push(
      `CRL generation: the CA's CRL writer (signCrl, src/pki/crl-builder.ts) ${crl.createCrlScaling?.map((s) => `${s.entries.toLocaleString('en-US')} entries ${fmt(s.ms)} ms`).join(', ')}; ${CRL_N.toLocaleString('en-US')} entries: ${crl.createCrlFull ? (crl.createCrlFull.finished === false ? `not finished after ${crl.createCrlFull.limitSeconds} s` : `${fmt(crl.createCrlFull.ms as number)} ms`) : 'not tried'}. The big CRL used: ${crl.crlFile?.tool} in ${fmt(crl.crlFile?.ms as number)} ms, ${fmt((crl.crlFile?.bytes as number) / 1e6, 1)} MB.${crl.nodeTlsStartBigMs !== undefined ? ` Node TLS server start with the big CRL ${fmt(crl.nodeTlsStartBigMs)} ms (empty: ${fmt(crl.nodeTlsStartEmptyMs as number)} ms).` : ''}`,
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

/** The command as typed (npm run bench -- … when npm ran it), arguments quoted where the shell needs it. */
function commandLine(): string {
  const args = process.argv.slice(2).map((x) => (/^[\w@%+=:,./-]+$/.test(x) ? x : `'${x.replace(/'/g, "'\\''")}'`));
  const env = process.env.BENCH_BROKER_NODE_ARGS ? `BENCH_BROKER_NODE_ARGS='${process.env.BENCH_BROKER_NODE_ARGS}' ` : '';
  if (process.env.npm_lifecycle_event === 'bench') return `${env}npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `${env}node scripts/bench/run.ts${args.length ? ` ${args.join(' ')}` : ''}`;
}

/** The commit the broker was built from, and whether src/ differs from it. */
function gitCommit(): string {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 });
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return 'unknown commit';
  const dirty = git('status', '--porcelain', '--', 'src').stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? ' with uncommitted changes in src/' : ''}`;
}

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    log(`--max-minutes ${a['max-minutes']} reached: stopping`);
    killAll();
    process.exit(1);
  }, Number(a['max-minutes']) * 60_000);
  deadline.unref();
  const t0 = performance.now();
  if (!existsSync(brokerMain())) throw new Error(`${brokerMain()} is missing: run "npm run build" first (or pass --broker src, or --broker PATH/TO/main.js of another build)`);
  const nginxBin = ensureNginx(log);
  if (GEN === 'c') loadgenBin = ensureLoadgen(log);
  const work = mkdtempSync(join(os.tmpdir(), 'broker-bench-'));
  log(`work folder ${work}; scenarios ${SCENARIOS.join(', ')}; ${ROUNDS} rounds × ${SECONDS} s`);
  const pki = await makePki(work, ROLE);
  const activeCrl = join(work, 'crl-active.pem');
  copyFileSync(pki.emptyCrl, activeCrl);
  const env: Env = { work, pki, upstream: await startUpstream(), nginxBin, activeCrl };
  const started = new Date();
  const meta: Record<string, unknown> = {
    date: started.toISOString().slice(0, 10),
    startTime: started.toISOString().slice(11, 16),
    cpu: (os.cpus()[0]?.model ?? '?').trim(),
    cores: os.availableParallelism(),
    kernel: `${os.type()} ${os.release()} (${os.arch()})`,
    memGiB: os.totalmem() / 2 ** 30,
    node: process.versions.node,
    openssl: process.versions.openssl,
    nginx: nginxVersion(nginxBin),
    nofile: NOFILE,
    command: commandLine(),
    broker: a.broker === 'src' ? 'src/main.ts' : a.broker === 'dist' ? 'dist/main.js' : brokerMain(),
    commit: gitCommit(),
    rounds: ROUNDS,
    otherRounds: OTHER_ROUNDS,
    ladder: LADDER,
    ablations: ABLATIONS,
    ablationScenarios: ABLATION_SCENARIOS,
    seconds: SECONDS,
    warmup: WARMUP,
    gen: loadgenBin ? 'c' : 'node',
    genProcs: { keepalive: genProcs('keepalive'), handshake: genProcs('handshake'), idle: genProcs('idle') },
    groups: GROUPS,
  };
  log(`nginx ${meta.nginx}, Node ${meta.node} (OpenSSL ${meta.openssl}), open files limit ${meta.nofile}; load generator ${loadgenBin ? 'C' : 'Node'}`);
  const one = [pki.client];
  const ka = (path: string): LoadSpec => ({ mode: 'keepalive', path, connections: CONNS, concurrency: CONNS, identities: one });
  const hs: LoadSpec = { mode: 'handshake', path: '/64', connections: 0, concurrency: HS_CONC, identities: one };
  try {
    const needMain = SCENARIOS.some((s) => ['ka64', 'ka16k', 'handshake', 'identities', 'crl', 'syscalls'].includes(s));
    const broker = needMain ? await startBroker(env, 'broker', { crlFile: activeCrl }) : undefined;
    const nginx = needMain ? await startNginx(env, 'nginx', pki.emptyCrl, Math.max(2_000, N_IDS * 2)) : undefined;
    // the ladder's other rows: started once, measured in the same rounds as nginx and the broker
    const ladderScenarios = SCENARIOS.filter((s) => s === 'ka64' || s === 'ka16k' || s === 'handshake');
    const extras: Target[] = [];
    const ablated: Target[] = [];
    try {
      if (broker && nginx) {
        if (ladderScenarios.length) {
          if (LADDER.includes('node-bare')) extras.push(await startNodeTls(env, 'node-bare', pki.emptyCrl));
          if (LADDER.includes('fastify-stock')) extras.push(await startFastify(env, 'fastify-stock', pki.emptyCrl));
          if (ladderScenarios.some((s) => ABLATION_SCENARIOS.includes(s))) {
            for (const f of ABLATIONS) ablated.push(await startBroker(env, `broker -${f}`, { crlFile: pki.emptyCrl, ablate: f }));
            for (const f of PLUS_ROWS) ablated.push(await startBroker(env, `broker +${f}`, { crlFile: pki.emptyCrl, plus: f }));
            if (CONTROL) ablated.push(await startBroker(env, CONTROL_LABEL, { crlFile: pki.emptyCrl, control: true }));
            if (a.baseline) ablated.push(await startBroker(env, BASELINE_LABEL, { crlFile: pki.emptyCrl, control: true, main: resolve(a.baseline as string) }));
          }
          log(`ladder: ${[nginx, ...extras, broker].map((t) => t.label).join(', ')}${ablated.length ? `; in ${ABLATION_SCENARIOS.filter((s) => (ladderScenarios as string[]).includes(s)).join(', ')} also ${ablated.map((t) => t.label).join(', ')}` : ''}`);
        }
        // every target of the scenario in turn, round after round: nginx, node-bare, fastify-stock, broker, broker -x …
        const ladder = (s: string) => [nginx, ...extras, broker, ...(ABLATION_SCENARIOS.includes(s) ? ablated : [])];
        if (ladderScenarios.length && LADDER_WARMUP > 0) {
          // Node processes fresh from start differ until their JIT and heap sizes settle: one unreported round each first
          log(`warm-up: ${LADDER_WARMUP} s of keep-alive 64 B for each target`);
          for (const t of [nginx, ...extras, broker, ...ablated]) await round(env, 'ladder-warmup', 'warm-up', t, ka('/64'), 1, LADDER_WARMUP);
        }
        const plan = (targets: Target[], spec: LoadSpec, variant: string) => targets.map((target) => ({ variant, target, spec }));
        if (SCENARIOS.includes('ka64')) {
          log(`scenario ka64: keep-alive GET, 64 B; ${ladder('ka64').length} targets × ${ROUNDS} rounds`);
          await alternate(env, 'ka64', plan(ladder('ka64'), ka('/64'), 'ka64'));
          if (FIXED_RATE_ARG === undefined) {
            // half of nginx's saturated rate, measured just now
            const sat = median(pick('ka64', 'ka64', 'nginx').map((r) => r.rps));
            fixedRate = Number.isFinite(sat) && sat > 0 ? Math.round(sat / 2) : 2000;
            fixedRateHow = Number.isFinite(sat) && sat > 0 ? `half of nginx's saturated ${fmt(sat)} requests/s` : "nginx's saturated rate unknown: 2,000";
          }
          if (fixedRate > 0) {
            // the targets whose latency at equal load matters: nginx, the stock proxy, the broker
            const rateTargets = [nginx, ...extras.filter((t) => t.kind === 'fastify'), broker];
            log(`scenario ka64 at a fixed ${fixedRate} requests/s (${fixedRateHow}): latency at the same load`);
            await alternate(env, 'ka64', plan(rateTargets, { ...ka('/64'), rate: fixedRate }, 'ka64-rate'));
          }
        }
        if (SCENARIOS.includes('ka16k')) {
          log(`scenario ka16k: keep-alive GET, 16 KiB; ${ladder('ka16k').length} targets × ${ROUNDS} rounds`);
          await alternate(env, 'ka16k', plan(ladder('ka16k'), ka('/16k'), 'ka16k'));
        }
        if (SCENARIOS.includes('handshake')) {
          log(`scenario handshake: a full mTLS handshake per request; ${ladder('handshake').length} targets × ${ROUNDS} rounds`);
          await alternate(env, 'handshake', plan(ladder('handshake'), hs, 'handshake'));
        }
        // the ladder's other rows are done: the scenarios below measure the broker and nginx alone
        for (const t of [...ablated, ...extras]) await t.stop();
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
          ], OTHER_ROUNDS);
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
      for (const t of [...ablated, ...extras]) await t.stop();
      await broker?.stop();
      await nginx?.stop();
      if (broker) extra.brokerChecks = [broker, ...ablated].map(brokerCheck);
      await otlpSink.close();
    }
    if (SCENARIOS.includes('forward')) {
      log(`scenario forward: the forward listener, absolute-form keep-alive GET 64 B and a CONNECT tunnel per request, against the broker's main listener and nginx as a forward proxy; ${OTHER_ROUNDS} rounds`);
      await forwardScenario(env);
    }
    if (SCENARIOS.includes('alloc')) {
      log(`scenario alloc: bytes allocated on the V8 heap per request under keep-alive 64 B (--trace-gc-nvp, ${ALLOC_SECONDS} s)`);
      await allocScenario(env, ka('/64'));
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
  meta.endTime = new Date().toISOString().slice(11, 16);
  meta.fixedRate = fixedRate;
  meta.fixedRateHow = fixedRateHow;
  if (loadgenBin) meta.loadgen = { binary: loadgenBin, ...loadgenHello };
  const md = markdown(meta);
  const outDir = resolve(ROOT, a.out as string);
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const base = join(outDir, `bench-${stamp}${QUICK ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, JSON.stringify({ meta, scenarios: SCENARIOS, summary: summaryJson(), rounds: results, extra: { ...extra, profileMarkdown: undefined } }, null, 2));
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
