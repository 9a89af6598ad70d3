/**
 * A real redis-server for tests: no config file, no persistence, bound to 127.0.0.1 on a free port.
 * `stop()` kills it (SIGKILL, an outage as abrupt as a crash) and `start()` brings it back on the
 * same port, empty. It is killed after the test. When redis-server is not installed, `redisMissing`
 * is the reason to skip (CI installs it: .ci/run).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

const BIN = process.env.REDIS_SERVER ?? 'redis-server';

/** Why Redis tests cannot run here, or false when they can. */
export const redisMissing: string | false = (() => {
  const r = spawnSync(BIN, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return `${BIN} not found (install the redis-server package, as .ci/run does): ${r.error?.message ?? r.stderr}`;
  return false;
})();

export interface RunningRedis {
  url: string;
  port: number;
  /** Kills the server (SIGKILL) and resolves once it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port (with no data) and resolves once it answers PING. */
  start(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** One PING over a raw connection: true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = '';
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.setTimeout(2_000, () => socket.destroy());
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      got += d;
      if (got.includes('\r\n')) socket.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(got.startsWith('+PONG')));
  });
}

/** Spawns redis-server on `port`; resolves once it says it is ready and answers PING, rejects if it exits first. */
function spawnRedis(port: number): Promise<ChildProcess> {
  const child = spawn(BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`redis-server on port ${port} not ready after 10 s:\n${out}`)), 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.on('error', fail);
    child.on('exit', (code, signal) => fail(new Error(`redis-server on port ${port} exited (${signal ?? code}) before it was ready:\n${out}`)));
    const onOutput = (d: string) => {
      out += d;
      if (!/Ready to accept connections/.test(out)) return;
      child.stdout.off('data', onOutput).resume();
      void ping(port).then((ok) => {
        if (!ok) return fail(new Error(`redis-server on port ${port} said it was ready but did not answer PING:\n${out}`));
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
        child.stderr.resume();
        resolve(child);
      });
    };
    child.stdout.setEncoding('utf8').on('data', onOutput);
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  });
}

export async function startRedis(t: Pick<TestContext, 'after'>): Promise<RunningRedis> {
  if (redisMissing) throw new Error(redisMissing);
  let child: ChildProcess | undefined;
  let port = 0;
  // The free port can be taken between finding and binding it: try a few.
  for (let attempt = 1; child === undefined; attempt++) {
    port = await freePort();
    try {
      child = await spawnRedis(port);
    } catch (err) {
      if (attempt >= 5 || !/Address already in use/i.test(String(err))) throw err;
    }
  }
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGKILL');
    await exited;
  };
  t.after(stop);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    async start() {
      if (child) throw new Error('redis-server is already running');
      child = await spawnRedis(port);
    },
  };
}
