/**
 * The C load generator (scripts/bench/loadgen.c): built once per source and compiler, cached in
 * os.tmpdir()/broker-bench-loadgen-UID/, and its config file. run.ts drives the binary over its
 * stdin/stdout with the same messages as load.ts over IPC (prepare, run, status, close → hello,
 * prepared, result, status, failed), so the rest of the bench does not care which generator ran.
 */
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { LoadConfig } from './load.ts';

const SOURCE = join(import.meta.dirname, 'loadgen.c');
const CC = process.env.CC ?? 'cc';
const FLAGS = ['-O2', '-Wall'];
const LIBS = ['-lssl', '-lcrypto', '-lm'];

function haveToolchain(): boolean {
  // a compiler, and OpenSSL's headers where it looks for them
  const r = spawnSync(CC, ['-x', 'c', '-fsyntax-only', '-'], { input: '#include <openssl/ssl.h>\nint main(void){return 0;}\n', timeout: 60_000 });
  return r.status === 0;
}

/** build-essential and libssl-dev from Debian's packages, as nginx.ts installs nginx (root only). */
function installToolchain(log: (s: string) => void): void {
  if (process.getuid?.() !== 0) throw new Error('cc or the OpenSSL headers are missing; install them (apt-get install -y build-essential libssl-dev) or run as root');
  log('cc or the OpenSSL headers are missing: apt-get install build-essential libssl-dev');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 300_000 });
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'build-essential', 'libssl-dev'], { stdio: 'ignore', env, timeout: 600_000 });
}

/**
 * The path of the built binary (compiled when this source and compiler have not been built
 * before), or undefined with a logged warning when it cannot be built: the caller falls back to
 * the Node generator.
 */
export function ensureLoadgen(log: (s: string) => void): string | undefined {
  try {
    if (!haveToolchain()) {
      installToolchain(log);
      if (!haveToolchain()) throw new Error('cc still cannot include <openssl/ssl.h> after apt-get install');
    }
    const ccVersion = spawnSync(CC, ['--version'], { encoding: 'utf8', timeout: 30_000 }).stdout ?? '';
    const hash = createHash('sha256').update(readFileSync(SOURCE)).update(ccVersion).update([...FLAGS, ...LIBS].join(' ')).digest('hex').slice(0, 16);
    const dir = join(os.tmpdir(), `broker-bench-loadgen-${process.getuid?.() ?? 'u'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (process.getuid && st.uid !== process.getuid()) throw new Error(`${dir} belongs to another user`);
    chmodSync(dir, 0o700);
    const bin = join(dir, `loadgen-${hash}`);
    if (existsSync(bin)) {
      const t = new Date();
      utimesSync(bin, t, t); // last used: builds unused for a week are pruned below
      return bin;
    }
    // built under a private name, then renamed: two benches starting at once do not see half a file
    const tmp = `${bin}.${process.pid}.tmp`;
    const r = spawnSync(CC, [...FLAGS, '-o', tmp, SOURCE, ...LIBS], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) {
      rmSync(tmp, { force: true });
      throw new Error(`${CC} failed: ${(r.stderr || r.error?.message || '').trim().slice(0, 2000)}`);
    }
    renameSync(tmp, bin);
    log(`built the C load generator: ${bin}`);
    // earlier builds (other versions of loadgen.c) not used for a week
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (f.startsWith('loadgen-') && p !== bin && Date.now() - statSync(p).mtimeMs > 7 * 86_400_000) rmSync(p, { force: true });
    }
    return bin;
  } catch (e) {
    log(`WARNING: no C load generator (${(e as Error).message}); using the Node one (scripts/bench/load.ts), which costs several times the CPU per request`);
    return undefined;
  }
}

/** The C generator's config file (key=value lines; one id=CERT<TAB>KEY line per identity). */
export function writeLoadgenConfig(file: string, cfg: LoadConfig): void {
  if (cfg.mode === 'idle') throw new Error('the C load generator has no idle mode');
  const clean = (k: string, v: string | number) => {
    const s = String(v);
    if (/[\n\r]/.test(s)) throw new Error(`loadgen config ${k}: no line breaks`);
    return `${k}=${s}`;
  };
  const lines = [
    clean('mode', cfg.mode),
    clean('host', cfg.host),
    clean('port', cfg.port),
    clean('servername', cfg.servername),
    clean('path', cfg.path),
    clean('ca', cfg.caFile),
    clean('offset', cfg.offset),
    clean('connections', cfg.connections),
    clean('concurrency', cfg.concurrency),
    clean('rate', cfg.rate ?? 0),
    clean('groups', cfg.groups),
    clean('open_concurrency', cfg.openConcurrency),
    clean('timeout_ms', cfg.requestTimeoutMs),
    clean('max_life_ms', cfg.maxLifeMs),
    // BENCH_LOADGEN_SHORTCUTS=0: no client-side handshake shortcuts (see loadgen.c), for comparison
    clean('shortcuts', process.env.BENCH_LOADGEN_SHORTCUTS === '0' ? 0 : 1),
    ...(cfg.connect !== undefined ? [clean('connect', cfg.connect)] : []),
    ...(cfg.hostHeader !== undefined ? [clean('host_header', cfg.hostHeader)] : []),
  ];
  for (const id of cfg.identities) {
    if (/[\t\n\r]/.test(id.cert + id.key)) throw new Error('loadgen config: identity paths with tabs or line breaks');
    lines.push(`id=${id.cert}\t${id.key}`);
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}
