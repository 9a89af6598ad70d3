/**
 * `broker connect --forward`: a local plain HTTP proxy whose traffic reaches the broker's forward
 * listener over mutual TLS. Real tools that only know HTTPS_PROXY / HTTP_PROXY (curl, Python
 * requests) reach an https destination (CONNECT) and an http one (absolute-form) through
 * connect → broker → destination; a destination the broker's rules refuse gives the tool the
 * broker's 403 and code; an origin-form request to the proxy port is refused with its code; an
 * unreachable broker is a coded 502; a reloaded or renewed (--renew-url) certificate is used by
 * the next tunnel; 6 MiB cross a tunnel each way intact; shutdown cuts open tunnels; with --via
 * everything reaches the broker through the outbound proxy.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { startConnect, parseListen, parseTarget, parseVia, type Connector } from '../../src/connect/index.ts';
import { captureLoggers, deadPort, makePki, startBroker, startUpstream, type Identity, type LogSink, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { startConnectProxy } from '../helpers/connect-proxy.ts';
import { eventually, within } from '../helpers/within.ts';
import { BIG, startTlsDestination } from '../helpers/forward.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface World {
  pki: TestPki;
  dir: string;
  proxy: string;
  connector: Connector;
  logs: LogSink;
  brokerLogs: LogSink;
  files: { cert: string; key: string; ca: string };
  file(name: string, text: string): string;
}

/** A broker with a forward listener and `rules`, and `broker connect --forward` in front of it as `id`. */
async function setup(
  t: TestContext,
  rules: (pki: TestPki) => unknown[],
  id = 'partner-a',
  o: { forwardPort?: number; broker?: Record<string, unknown>; ttlMs?: number; renewAt?: number; via?: string } = {},
): Promise<World & { partner: Identity }> {
  const pki = await makePki(t);
  const partner = await pki.issue(id, ['partner'], o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs });
  const b = await startBroker(t, pki, { forward: { listen: { host: '127.0.0.1', port: 0 }, rules: rules(pki) }, ...o.broker });
  const a = b.broker.forwardServer?.address();
  assert.ok(a && typeof a !== 'string', 'the forward listener listens');
  const dir = tempDir(t, 'broker-connect-forward-');
  const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
  const files = { cert: file('client.crt', partner.cert), key: file('client.key', partner.key), ca: file('ca.crt', pki.ca) };
  const { loggers, sink } = captureLoggers();
  const connector = await startConnect({ target: parseTarget(`https://localhost:${o.forwardPort ?? a.port}`), listen: parseListen('127.0.0.1:0', false), forward: true, via: o.via === undefined ? undefined : parseVia(o.via), files, debounceMs: 50, renewAt: o.renewAt, renewOrigin: `https://localhost:${b.port}` }, loggers);
  t.after(() => connector.close(1_000));
  return { pki, dir, proxy: `http://127.0.0.1:${connector.port}`, connector, logs: sink, brokerLogs: b.logs, files, file, partner };
}

/** A tool run with only the proxy environment (no NO_PROXY from the host). */
function tool(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(no|https?|all)_proxy$/i.test(k)));
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000, env: { ...clean, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const curl = (args: string[], env: Record<string, string>) => tool('curl', ['-sS', '--max-time', '20', ...args], env);

/** One raw exchange with the local proxy port: everything it answers until it closes. */
function raw(port: number, data: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return within(
    new Promise((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port }, () => s.write(data));
      let text = '';
      s.setEncoding('utf8').on('data', (d: string) => (text += d));
      s.on('end', () => {
        s.destroy();
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown> });
      });
      s.on('error', reject);
    }),
    15_000,
    'a raw exchange with the local proxy',
  );
}

const hasRequests = (() => {
  try {
    execFileSync('python3', ['-c', 'import requests'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
})();

test('curl with HTTPS_PROXY reaches an https destination and with http_proxy an http one, through connect and the broker, as the partner', async (t) => {
  const dest = await startTlsDestination(t);
  const up = await startUpstream(t, (_req, res) => (res.writeHead(200, { 'content-type': 'text/plain', 'x-from': 'up' }), res.end('plain hello')));
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port, up.port], allowPrivate: ['127.0.0.0/8'] }]);
  const destCa = w.file('dest-ca.pem', dest.ca);

  const tls = await curl(['--cacert', destCa, `https://127.0.0.1:${dest.port}/vault?x=1`], { HTTPS_PROXY: w.proxy });
  assert.equal(tls.code, 0, tls.stderr);
  assert.equal(tls.stdout, 'secret from /vault?x=1');
  assert.deepEqual(dest.seen, ['/vault?x=1']);
  const tunnel = await w.logs.waitFor((l) => l.log === 'access' && l.method === 'CONNECT', 10_000);
  assert.equal(tunnel.host, '127.0.0.1');
  assert.equal(tunnel.port, dest.port);
  assert.equal(tunnel.status, 200);
  assert.ok((tunnel.bytesUp as number) > 0 && (tunnel.bytesDown as number) > 0, JSON.stringify(tunnel));
  assert.equal(typeof tunnel.durationMs, 'number');
  const atBroker = await w.brokerLogs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT', 10_000);
  assert.equal(atBroker.principal, 'partner-a');
  assert.equal(atBroker.outcome, 'ok');

  // curl reads http_proxy in lower case only (HTTP_PROXY is ignored: CGI's httpoxy)
  const plain = await curl(['-i', `http://127.0.0.1:${up.port}/hello?a=b`], { http_proxy: w.proxy });
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^HTTP\/1\.1 200 /);
  assert.match(plain.stdout, /\r\nx-from: up\r\n/i);
  assert.match(plain.stdout, /\r\n\r\nplain hello$/);
  assert.equal(up.seen.length, 1);
  assert.equal(up.seen[0]?.url, '/hello?a=b');
  assert.equal(up.seen[0]?.headers.host, `127.0.0.1:${up.port}`);
  assert.equal(up.seen[0]?.headers['proxy-connection'], undefined, 'hop-by-hop headers stay behind');
  const line = await w.logs.waitFor((l) => l.log === 'access' && l.method === 'GET', 10_000);
  assert.deepEqual([line.host, line.port, line.status, line.bytesDown], ['127.0.0.1', up.port, 200, 'plain hello'.length]);

  const posted = await curl(['--data-binary', 'order=42', `http://127.0.0.1:${up.port}/orders`], { http_proxy: w.proxy });
  assert.equal(posted.code, 0, posted.stderr);
  assert.equal(up.seen[1]?.method, 'POST');
  assert.equal(up.seen[1]?.body.toString(), 'order=42');
  const postLine = await w.logs.waitFor((l) => l.log === 'access' && l.method === 'POST', 10_000);
  assert.equal(postLine.bytesUp, 'order=42'.length);
});

test('Python requests with proxies= reaches both destinations through connect', { skip: hasRequests ? false : 'python3 with the requests module is not installed' }, async (t) => {
  const dest = await startTlsDestination(t);
  const up = await startUpstream(t, (_req, res) => (res.writeHead(200, { 'content-type': 'text/plain' }), res.end('plain hello')));
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port, up.port], allowPrivate: ['127.0.0.0/8'] }]);
  const destCa = w.file('dest-ca.pem', dest.ca);
  const script = [
    'import sys, requests',
    'proxy, ca, tls_url, plain_url = sys.argv[1:5]',
    'p = {"http": proxy, "https": proxy}',
    'a = requests.get(tls_url, proxies=p, verify=ca, timeout=20)',
    'b = requests.get(plain_url, proxies=p, timeout=20)',
    'print(a.status_code, a.text)',
    'print(b.status_code, b.text)',
    'try:',
    '    requests.get("https://127.0.0.1:1/", proxies=p, verify=ca, timeout=20)',
    'except requests.exceptions.ProxyError as e:',
    '    print("refused:", "Tunnel connection failed: 403 Forbidden" in str(e))',
  ].join('\n');
  const r = await tool('python3', ['-c', script, w.proxy, destCa, `https://127.0.0.1:${dest.port}/py`, `http://127.0.0.1:${up.port}/py-plain`], {});
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '200 secret from /py\n200 plain hello\nrefused: True\n');
  assert.deepEqual(dest.seen, ['/py']);
  assert.equal(up.seen[0]?.url, '/py-plain');
});

test('a destination the rules refuse: the tool gets the broker\'s 403 and its code, nothing is reached', async (t) => {
  const dest = await startTlsDestination(t);
  const up = await startUpstream(t);
  // the rules name the host, on a port that is neither destination's
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [1], allowPrivate: ['127.0.0.0/8'] }]);

  const tunnel = await raw(w.connector.port, `CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: 127.0.0.1:${dest.port}\r\n\r\n`);
  assert.equal(tunnel.status, 403);
  assert.equal(tunnel.body.code, 'BRK_ERR_FORWARD_PORT');
  const denied = await raw(w.connector.port, `CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\n\r\n`);
  assert.equal(denied.status, 403);
  assert.equal(denied.body.code, 'BRK_ERR_FORWARD_DENIED');
  const line = await w.logs.waitFor((l) => l.log === 'access' && l.method === 'CONNECT' && l.code === 'BRK_ERR_FORWARD_DENIED', 10_000);
  assert.deepEqual([line.host, line.port, line.status], ['elsewhere.example', 443, 403]);

  const viaCurl = await curl(['--cacert', w.file('dest-ca.pem', dest.ca), `https://127.0.0.1:${dest.port}/`], { HTTPS_PROXY: w.proxy });
  assert.notEqual(viaCurl.code, 0);
  assert.match(viaCurl.stderr, /CONNECT tunnel failed, response 403/);
  const plain = await curl([`http://127.0.0.1:${up.port}/x`], { http_proxy: w.proxy });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal((JSON.parse(plain.stdout) as { code: string }).code, 'BRK_ERR_FORWARD_PORT');
  assert.deepEqual(dest.seen, []);
  assert.equal(up.seen.length, 0);
});

test('an origin-form request to the proxy port is refused with BRK_ERR_CONNECT_NOT_PROXY', async (t) => {
  const w = await setup(t, () => []);
  const got = await within(
    new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: w.connector.port, path: '/orders/1', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on('error', reject);
      req.end();
    }),
    15_000,
    'GET /orders/1',
  );
  assert.equal(got.status, 400);
  assert.equal(got.body.code, 'BRK_ERR_CONNECT_NOT_PROXY');
  assert.match(String(got.body.message), /HTTPS_PROXY/);
  const line = await w.logs.waitFor((l) => l.log === 'access' && l.status === 400, 10_000);
  assert.equal(line.code, 'BRK_ERR_CONNECT_NOT_PROXY');
});

test('an unreachable broker is a 502 BRK_ERR_CONNECT_UPSTREAM for the tunnel', async (t) => {
  const w = await setup(t, () => [], 'partner-a', { forwardPort: await deadPort() });
  const r = await raw(w.connector.port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n');
  assert.equal(r.status, 502);
  assert.equal(r.body.code, 'BRK_ERR_CONNECT_UPSTREAM');
  assert.match(String(r.body.message), /ECONNREFUSED/);
});

test('after a certificate reload, new tunnels go out with the new certificate', async (t) => {
  const dest = await startTlsDestination(t);
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const destCa = w.file('dest-ca.pem', dest.ca);
  const before = await curl(['--cacert', destCa, `https://127.0.0.1:${dest.port}/one`], { HTTPS_PROXY: w.proxy });
  assert.equal(before.code, 0, before.stderr);
  // another identity, whose role no rule names: the broker must now refuse
  const bob = await w.pki.issue('bob', ['other']);
  writeFileSync(w.files.cert, bob.cert);
  writeFileSync(w.files.key, bob.key);
  w.connector.reload('test');
  await w.logs.waitFor((l) => l.event === 'reload' && l.outcome === 'ok', 10_000);
  const after = await raw(w.connector.port, `CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: 127.0.0.1:${dest.port}\r\n\r\n`);
  assert.equal(after.status, 403);
  assert.equal(after.body.code, 'BRK_ERR_FORWARD_DENIED');
  const refused = await w.brokerLogs.waitFor((l) => l.event === 'forward' && l.outcome === 'refused', 10_000);
  assert.equal(refused.principal, 'bob');
  assert.deepEqual(dest.seen, ['/one']);
});

test('a tunnel carries 6 MiB each way intact (backpressure), counted in its access line', async (t) => {
  const dest = await startTlsDestination(t);
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const destCa = w.file('dest-ca.pem', dest.ca);
  const out = join(w.dir, 'big.out');
  const down = await curl(['--cacert', destCa, '-o', out, `https://127.0.0.1:${dest.port}/big`], { HTTPS_PROXY: w.proxy });
  assert.equal(down.code, 0, down.stderr);
  assert.equal(sha(readFileSync(out)), sha(BIG));
  const upload = w.file('big.in', '');
  writeFileSync(upload, BIG);
  const up = await curl(['--cacert', destCa, '--data-binary', `@${upload}`, `https://127.0.0.1:${dest.port}/upload`], { HTTPS_PROXY: w.proxy });
  assert.equal(up.code, 0, up.stderr);
  assert.equal(up.stdout, `${BIG.length} ${sha(BIG)}`);
  const tunnels = () => w.logs.of('access').filter((x) => x.method === 'CONNECT');
  await eventually(() => tunnels().length === 2, 'two tunnel lines', 10_000);
  const lines = tunnels();
  assert.ok((lines[0]?.bytesDown as number) > BIG.length, JSON.stringify(lines[0]));
  assert.ok((lines[1]?.bytesUp as number) > BIG.length, JSON.stringify(lines[1]));
});

test('shutdown cuts tunnels still open after the grace period', async (t) => {
  const dest = await startTlsDestination(t);
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const s = netConnect({ host: '127.0.0.1', port: w.connector.port }, () => s.write(`CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: x\r\n\r\n`));
  t.after(() => s.destroy());
  s.on('error', () => {});
  await within(new Promise<void>((resolve) => s.once('data', () => resolve())), 10_000, 'the tunnel is established');
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await within(w.connector.close(200), 10_000, 'connect stops');
  await within(closed, 10_000, 'the tunnel is closed');
  const line = await w.logs.waitFor((l) => l.log === 'access' && l.method === 'CONNECT', 10_000);
  assert.equal(line.status, 200);
});

test('with renewOrigin (--renew-url), the certificate is renewed at the main listener and the next tunnel uses it', async (t) => {
  const dest = await startTlsDestination(t);
  // a 60 s certificate valid from a minute back: half its lifetime is gone, so renewal at 0.5 is due at once
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], 'partner-a', {
    broker: { listenCertOptional: { host: '127.0.0.1', port: 0 }, enrollment: { enabled: true, certTtl: '1h', renewAfter: 0.5 } },
    ttlMs: 60_000,
    renewAt: 0.5,
  });
  const renewed = await w.logs.waitFor((l) => l.event === 'renew' && l.outcome === 'ok', 30_000);
  await w.logs.waitFor((l) => l.event === 'reload' && l.outcome === 'ok' && l.serial === renewed.serial, 10_000);
  const got = await curl(['--cacert', w.file('dest-ca.pem', dest.ca), `https://127.0.0.1:${dest.port}/renewed`], { HTTPS_PROXY: w.proxy });
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, 'secret from /renewed');
  const atBroker = await w.brokerLogs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT', 10_000);
  assert.equal(atBroker.serial, renewed.serial);
  assert.notEqual(atBroker.serial, w.partner.serial);
});

test('with --via, tunnels and absolute-form requests reach the broker through the outbound proxy; a proxy refusal is a 502', async (t) => {
  const dest = await startTlsDestination(t);
  const up = await startUpstream(t, (_req, res) => (res.writeHead(200, { 'content-type': 'text/plain' }), res.end('plain hello')));
  const proxy = await startConnectProxy(t, { auth: 'partner:s3cret' });
  const w = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port, up.port], allowPrivate: ['127.0.0.0/8'] }], 'partner-a', { via: proxy.url.replace('http://', 'http://partner:s3cret@') });
  const tls = await curl(['--cacert', w.file('dest-ca.pem', dest.ca), `https://127.0.0.1:${dest.port}/via`], { HTTPS_PROXY: w.proxy });
  assert.equal(tls.code, 0, tls.stderr);
  assert.equal(tls.stdout, 'secret from /via');
  const plain = await curl([`http://127.0.0.1:${up.port}/via-plain`], { http_proxy: w.proxy });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, 'plain hello');
  // both went to the broker's forward listener through the proxy, with its credentials
  assert.equal(proxy.seen.length, 2, JSON.stringify(proxy.seen));
  for (const s of proxy.seen) {
    assert.match(s.target, /^localhost:\d+$/);
    assert.equal(s.proxyAuthorization, `Basic ${Buffer.from('partner:s3cret').toString('base64')}`);
  }

  const wrong = await startConnectProxy(t, { auth: 'partner:other' });
  const w2 = await setup(t, () => [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }], 'partner-a', { via: wrong.url.replace('http://', 'http://partner:s3cret@') });
  const r = await raw(w2.connector.port, `CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.equal(r.status, 502);
  assert.equal(r.body.code, 'BRK_ERR_CONNECT_UPSTREAM');
  assert.match(String(r.body.message), /407/);
  assert.deepEqual(dest.seen, ['/via']);
});
