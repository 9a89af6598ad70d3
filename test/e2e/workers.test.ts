/**
 * `broker serve --workers 2`: two processes share the listener and, through the primary, one
 * rate-limit budget. The upstream lives in this process, so everything runs asynchronously. Which
 * worker forwarded a request is read from the operating system: the upstream sees the worker's
 * connection, and /proc says which process holds it (Linux only; elsewhere that part is skipped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, NODE, cliStore, tempDir } from '../helpers/cli.ts';
import { request } from '../helpers/broker.ts';
import { httpGet, parseMetrics } from '../helpers/admin.ts';

/** The inode of the TCP socket whose local port is `localPort` and peer port `remotePort`. */
function socketInode(localPort: number, remotePort: number): string | undefined {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const port = (addr: string | undefined) => parseInt(addr?.split(':').pop() ?? '', 16);
      if (port(cols[1]) === localPort && port(cols[2]) === remotePort) return cols[9];
    }
  }
  return undefined;
}

/** Which of `pids` holds the socket at the other end of the upstream's `req` (undefined if unknown). */
function forwardingPid(req: IncomingMessage, upstreamPort: number, pids: readonly number[]): number | undefined {
  const inode = socketInode(req.socket.remotePort ?? 0, upstreamPort);
  if (!inode) return undefined;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // closed while we looked
      }
    }
  }
  return undefined;
}

interface LogLine {
  [k: string]: unknown;
}

function jsonLines(text: string): LogLine[] {
  return text.split('\n').flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });
}

test('serve --workers 2: one budget of 20 for both workers (20 × 200, 40 × 429 of 60); every scrape counts all 60 requests; SIGTERM ends all three processes with 0', async (t) => {
  const dir = tempDir(t);
  const { ca, ids } = cliStore(dir, [['acme', 'partner']]);
  const acme = ids.acme!;

  let workerPids: number[] = [];
  const forwardedBy = new Map<number, number | undefined>(); // upstream-side remote port → worker pid
  const upstream = createServer((req, res) => {
    const port = req.socket.remotePort ?? 0;
    if (!forwardedBy.has(port)) forwardedBy.set(port, forwardingPid(req, (upstream.address() as AddressInfo).port, workerPids));
    res.setHeader('x-forwarded-by', String(forwardedBy.get(port) ?? 'unknown'));
    res.end('ok');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const upstreamPort = (upstream.address() as AddressInfo).port;

  // 20 per hour, not per minute: no token may come back while the 60 requests run, however slow the machine.
  writeFileSync(
    join(dir, 'broker.yaml'),
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'pki: { dir: ./pki }',
      'tls: { server: edge }',
      'rateLimit: { rate: 20, per: 1h, burst: 20 }',
      'routes:',
      `  - { name: orders, path: /orders, upstream: "http://127.0.0.1:${upstreamPort}", roles: [partner] }`,
    ].join('\n'),
  );
  // Each process says how it ended (a process killed by a signal says nothing).
  const probe = join(dir, 'exit-probe.mjs');
  writeFileSync(probe, "import { writeSync } from 'node:fs';\nprocess.on('exit', (code) => writeSync(2, JSON.stringify({ probe: 'exit', pid: process.pid, code }) + '\\n'));\n");

  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml', '--workers', '2'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(probe).href}`.trim(), NODE_CLUSTER_SCHED_POLICY: 'rr' },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    // Only if the test failed before SIGTERM ended it. Workers are never signalled by pid (a pid
    // could be reused once they are gone): a cluster worker exits by itself when its primary dies.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8');
  const listening = await new Promise<LogLine[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`two workers did not start:\n${stderr}`)), 60_000);
    child.stderr.on('data', (d: string) => {
      stderr += d;
      const lines = jsonLines(stderr).filter((l) => l.event === 'listening');
      if (lines.length === 2) {
        clearTimeout(timer);
        resolve(lines);
      }
    });
    child.on('exit', () => (clearTimeout(timer), reject(new Error(`serve exited early:\n${stderr}`))));
  });
  workerPids = listening.map((l) => Number(l.pid));
  assert.equal(new Set(workerPids).size, 2, 'two distinct worker processes');
  assert.ok(!workerPids.includes(child.pid ?? -1), 'the workers are not the primary');
  const [portA, portB] = listening.map((l) => Number(l.port));
  assert.equal(portA, portB, 'both workers serve the same port');
  assert.deepEqual(listening.map((l) => l.store), ['memory', 'memory']);

  // 60 requests, each on a fresh connection, so that the primary hands them to both workers.
  const answers: Array<{ status: number; remaining: number; by: string | undefined }> = [];
  for (let i = 0; i < 60; i++) {
    const res = await request(portA as number, { id: acme, ca, path: `/orders/${i}` });
    answers.push({ status: res.status, remaining: Number(res.headers['ratelimit-remaining']), by: res.headers['x-forwarded-by'] as string | undefined });
  }
  const allowed = answers.filter((a) => a.status === 200);
  const refused = answers.filter((a) => a.status === 429);
  assert.equal(allowed.length, 20, JSON.stringify(answers));
  assert.equal(refused.length, 40, JSON.stringify(answers));
  // One bucket: every count from 19 down to 0 exactly once (two buckets would each count down).
  assert.deepEqual(allowed.map((a) => a.remaining).sort((a, b) => b - a), Array.from({ length: 20 }, (_, i) => 19 - i));

  if (process.platform === 'linux' && existsSync('/proc/net/tcp')) {
    const by = new Set(allowed.map((a) => a.by));
    assert.deepEqual([...by].sort(), workerPids.map(String).sort(), `both workers forwarded some of the 20 allowed requests: ${JSON.stringify(allowed)}`);
  } else {
    t.diagnostic('no /proc: which worker forwarded each request is not checked');
  }

  // The admin listener is shared like the main one: scrapes on fresh connections reach either
  // worker (round robin), and each must count both workers' requests.
  const adminPorts = new Set(listening.map((l) => Number(l.adminPort)));
  assert.equal(adminPorts.size, 1, 'both workers serve the same admin port');
  const [adminPort] = adminPorts;
  for (let i = 0; i < 4; i++) {
    const res = await httpGet(adminPort as number, '/metrics');
    assert.equal(res.status, 200, res.text);
    const s = parseMetrics(res.text);
    assert.equal(s.value('broker_requests_total'), 60, `scrape ${i}: the requests of both workers`);
    assert.equal(s.value('broker_requests_total', { status: '429' }), 40);
    assert.equal(s.value('broker_request_duration_seconds_count'), 60);
    assert.equal(s.value('broker_config_last_reload_success'), 1, 'each worker\'s 1, combined by min, not summed');
    assert.equal(s.find('process_start_time_seconds').length, 0, 'prom-client omits per-process start times from a cluster sum');
    assert.ok(s.value('process_resident_memory_bytes') > 0 || process.platform !== 'linux', 'process metrics under their usual names');
  }

  child.kill('SIGTERM');
  const end = await exited;
  assert.deepEqual(end, { code: 0, signal: null }, stderr);
  const exits = jsonLines(stderr).filter((l) => l.probe === 'exit');
  assert.deepEqual(
    exits.map((l) => [l.pid, l.code]).sort(),
    [child.pid, ...workerPids].map((pid) => [pid, 0]).sort(),
    `every process ended with 0:\n${stderr}`,
  );
  const shutdowns = jsonLines(stderr).filter((l) => l.event === 'shutdown');
  assert.deepEqual(shutdowns.map((l) => l.pid).sort(), [...workerPids].sort());
  assert.doesNotMatch(stderr, /exited \(|starting another/);
  // Both workers' access lines, on the one stdout they share.
  const access = jsonLines(stdout).filter((l) => l.log === 'access');
  assert.equal(access.length, 60);
  assert.deepEqual(access.filter((l) => l.status === 429).map((l) => l.code), Array(40).fill('BRK_ERR_RATE_LIMITED'));
});
