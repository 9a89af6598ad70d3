/**
 * The built `broker connect --forward` in front of a real broker with a forward listener (in this
 * process): curl with HTTPS_PROXY reaches an https destination through it, the access line names
 * the tunnel, it says it will not renew without --renew-url, SIGTERM stops it; and the flags that
 * do not fit --forward are refused with their codes.
 *
 * The broker lives in this process, so every child process here is asynchronous.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE, brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';
import { makePki, startBroker } from '../helpers/broker.ts';
import { eventually, within } from '../helpers/within.ts';

type Line = Record<string, unknown>;

test('curl with HTTPS_PROXY goes through the built "broker connect --forward" to an https destination; SIGTERM stops it', async (t) => {
  const pki = await makePki(t);
  const alice = await pki.issue('alice', ['partner']);
  const own = await makePki(t);
  const server = createHttpsServer({ cert: readFileSync(own.store.layout.serverCert('localhost')), key: readFileSync(own.store.layout.serverKey('localhost')) }, (req, res) => res.end(`hello ${req.url}`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  const destPort = (server.address() as AddressInfo).port;
  const b = await startBroker(t, pki, { forward: { listen: { host: '127.0.0.1', port: 0 }, rules: [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [destPort], allowPrivate: ['127.0.0.0/8'] }] } });
  const forwardPort = (b.broker.forwardServer?.address() as AddressInfo).port;

  const dir = tempDir(t, 'broker-connect-forward-e2e-');
  const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
  const flags = ['--url', `https://localhost:${forwardPort}`, '--cert', file('c.crt', alice.cert), '--key', file('c.key', alice.key), '--ca', file('ca.crt', pki.ca)];
  const child = spawn(NODE, [BIN, 'connect', '--forward', '--listen', '127.0.0.1:0', ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let raw = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (raw += d));
  const lines = (): Line[] => raw.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  const find = async (pred: (l: Line) => boolean, what: string): Promise<Line> => {
    await eventually(() => lines().some(pred) || child.exitCode !== null, what, 30_000);
    const hit = lines().find(pred);
    assert.ok(hit, `${what}: not logged; output:\n${raw.slice(-3_000)}`);
    return hit;
  };

  const listening = await find((l) => l.event === 'listening', 'the listening line');
  assert.equal(listening.mode, 'forward');
  const renew = await find((l) => l.event === 'renew', 'the renewal notice');
  assert.equal(renew.outcome, 'off');

  const got = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(no|https?|all)_proxy$/i.test(k)));
    execFile('curl', ['-sS', '--max-time', '20', '--cacert', file('dest-ca.pem', own.ca), `https://127.0.0.1:${destPort}/e2e`], { timeout: 30_000, env: { ...env, HTTPS_PROXY: `http://127.0.0.1:${String(listening.port)}` } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, 'hello /e2e');
  const access = await find((l) => l.log === 'access' && l.method === 'CONNECT', 'the tunnel line');
  assert.deepEqual([access.host, access.port, access.status], ['127.0.0.1', destPort, 200]);

  child.kill('SIGTERM');
  assert.equal(await within(exited, 15_000, 'exit after SIGTERM'), 0);
});

test('flags that do not fit --forward are refused with their codes', async (t) => {
  const dir = tempDir(t, 'broker-connect-forward-flags-');
  const base = ['connect', '--cert', join(dir, 'c.crt'), '--key', join(dir, 'c.key')];
  const cases = [
    { args: [...base, '--forward', '--url', 'https://broker.example:3129/base'], code: 'BRK_ERR_CONNECT_URL' },
    { args: [...base, '--forward', '--url', 'https://broker.example:3129', '--listen', '0.0.0.0:0'], code: 'BRK_ERR_CONNECT_LISTEN_REMOTE' },
    { args: [...base, '--forward', '--url', 'https://broker.example:3129', '--api-key-file', join(dir, 'key')], code: 'BRK_ERR_USAGE' },
    { args: [...base, '--url', 'https://broker.example', '--renew-url', 'https://broker.example'], code: 'BRK_ERR_USAGE' },
    { args: [...base, '--forward', '--url', 'https://broker.example:3129', '--renew-url', 'http://broker.example:8443'], code: 'BRK_ERR_CONNECT_URL' },
  ];
  const results = await Promise.all(cases.map((c) => brokerAsync(c.args)));
  results.forEach((r, i) => {
    const c = cases[i] as (typeof cases)[number];
    assert.equal(r.code, 2, `${c.args.join(' ')}: ${r.stderr}`);
    assert.equal(errorCode(r.stderr), c.code, `${c.args.join(' ')}: ${r.stderr}`);
  });
});
