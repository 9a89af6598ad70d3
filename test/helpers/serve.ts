/** `broker serve` (the built CLI) as an operator runs it, in a test's CA folder, plus a plain upstream. */
import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE } from './cli.ts';

export interface Served {
  child: ChildProcess;
  port: number;
  out: { stdout: string; stderr: string };
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

/** Writes `config` to DIR/broker.yaml and starts `broker serve`; resolves once it logged "listening". */
export async function serve(t: TestContext, dir: string, config: string): Promise<Served> {
  writeFileSync(join(dir, 'broker.yaml'), config);
  const child = spawn(NODE, [BIN, 'serve', '--config', 'broker.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => void child.kill('SIGKILL'));
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${out.stderr}`)), 30_000);
    const onData = () => {
      const m = /"event":"listening".*?"port":(\d+)/.exec(out.stderr);
      if (!m) return;
      clearTimeout(timer);
      child.stderr.off('data', onData);
      resolve(Number(m[1]));
    };
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${out.stderr}`)));
  });
  return {
    child,
    port,
    out,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** An HTTP upstream on 127.0.0.1:0 that answers every request with `answer` and the path. */
export async function plainUpstream(t: TestContext, answer = 'hello from upstream'): Promise<string> {
  const upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ answer, url: req.url, method: req.method }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  return `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
}
