/**
 * `broker doctor` against failures made for real on loopback: a port held by another process, an
 * expired server certificate, a missing CRL level, a key readable by others, an upstream that is
 * down, a name the certificate does not cover; and from the partner's side a broker that answers,
 * an ACL refusal, a listener that never speaks TLS, a port whose SYNs are dropped, a
 * TLS-intercepting middlebox, proxies that refuse and accept CONNECT, a certificate from a foreign
 * CA and an expired one. The built CLI runs asynchronously: the servers it talks to live in this
 * process.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { join } from 'node:path';
import { NODE, brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';
import { makePki, startUpstream, type Identity, type TestPki } from '../helpers/broker.ts';
import { eventually, within } from '../helpers/within.ts';
import type { Finding } from '../../src/doctor/finding.ts';
import { runDoctor, runningBroker, type Report } from '../helpers/doctor.ts';

const DAY = 86_400_000;

const doctor = (args: string[], cwd: string) => runDoctor(args, cwd);

const show = (r: Report) => `exit ${r.code}\n${r.findings.map((f) => `${f.status} ${f.check}: ${f.message}`).join('\n')}\n${r.stderr}`;

/** Exit 3, BRK_ERR_DOCTOR_PROBLEMS, and `check` fails with `message`; `only` when no other check may fail. */
function assertProblem(r: Report, check: string, message: RegExp, o: { only?: boolean } = {}): Finding {
  assert.equal(r.code, 3, show(r));
  assert.equal(errorCode(r.stderr), 'BRK_ERR_DOCTOR_PROBLEMS', show(r));
  assert.equal(r.ok, false);
  const f = r.findings.find((x) => x.status === 'fail' && x.check === check);
  assert.ok(f, `no failing "${check}":\n${show(r)}`);
  assert.match(f.message, message);
  if (o.only ?? true) assert.deepEqual([...new Set(r.findings.filter((x) => x.status === 'fail').map((x) => x.check))], [check], show(r));
  return f;
}

function assertHealthy(r: Report): void {
  assert.equal(r.code, 0, show(r));
  assert.equal(r.ok, true);
  assert.deepEqual(r.findings.filter((f) => f.status === 'fail'), []);
}

const listening = async (server: NetServer): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
};

/** A net server closed in t.after, with every connection it took destroyed. */
async function netServer(t: TestContext, onConnection: (socket: Socket) => void, make: (listener: (socket: Socket) => void) => NetServer = (l) => createNetServer(l)): Promise<{ port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = make((socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  const port = await listening(server);
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port, sockets };
}

/** A port nothing listens on: bound by this process, then released. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  const port = await listening(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A child process that prints one line (e.g. the port it listens on); killed in t.after. */
async function child(t: TestContext, command: string, args: string[]): Promise<{ proc: ChildProcess; line: string }> {
  const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.after(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  let out = '';
  let err = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const line = await within(
    new Promise<string>((resolve, reject) => {
      proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0] as string);
      });
      proc.once('exit', (code) => reject(new Error(`${command} exited with ${code} before it was ready: ${err}`)));
    }),
    15_000,
    `${command} ready`,
  );
  return { proc, line };
}

// ---------------------------------------------------------------- server side

interface Site {
  dir: string;
  pki: TestPki;
  /** Writes broker.json: listen and admin on 127.0.0.1 port 0, tls.server localhost, one route; `over` replaces top-level keys. */
  config(over?: Record<string, unknown>): string;
}

async function site(t: TestContext, o: { upstream?: string } = {}): Promise<Site> {
  const pki = await makePki(t);
  const dir = tempDir(t);
  const upstream = o.upstream ?? (await startUpstream(t)).url;
  return {
    dir,
    pki,
    config(over = {}) {
      const file = join(dir, 'broker.json');
      const raw = { listen: { host: '127.0.0.1', port: 0 }, admin: { port: 0 }, pki: { dir: pki.dir }, tls: { server: 'localhost' }, routes: [{ name: 'orders', path: '/orders', upstream, roles: ['partner'] }], ...over };
      writeFileSync(file, JSON.stringify(raw, null, 2));
      return file;
    },
  };
}

test('server: a sound setup passes every check, exit 0 (an unreadable firewall and a certificate near its end are only warnings)', async (t) => {
  const s = await site(t);
  const file = s.config();
  // the test store's server certificate lives one day: within the default 14 days, a warning
  const soon = await doctor(['--config', file], s.dir);
  assertHealthy(soon);
  assert.ok(soon.findings.some((f) => f.status === 'warn' && f.check === 'server certificate' && /^expires in 1 days?$/.test(f.message)), show(soon));
  const r = await doctor(['--config', file, '--days', '0'], s.dir);
  assertHealthy(r);
  const byCheck = new Map(r.findings.map((f) => [f.check, f]));
  for (const check of ['config', 'listen port', 'admin port', 'admin exposure', 'server key', 'server certificate', 'certificate chain', 'CA certificates', 'CRL', 'key permissions', 'upstream orders']) {
    assert.equal(byCheck.get(check)?.status, 'ok', `${check}:\n${show(r)}`);
  }
  assert.match(byCheck.get('CRL')?.message ?? '', /a CRL for each of the 2 CA levels/);
  assert.ok(['ok', 'warn'].includes(byCheck.get('firewall')?.status ?? ''), show(r));
});

test('server: the listen port held by another process fails "listen port" and names its pid', async (t) => {
  const holder = await child(t, NODE, ['-e', 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => console.log(s.address().port))']);
  const port = Number(holder.line);
  const s = await site(t);
  const r = await doctor(['--config', s.config({ listen: { host: '127.0.0.1', port } })], s.dir);
  const f = assertProblem(r, 'listen port', new RegExp(`127\\.0\\.0\\.1:${port} is already in use by pid ${holder.proc.pid} \\(`));
  assert.match(f.message, /node/);
  assert.match(f.fix ?? '', /stop that process, or choose another port/);
});

test('server: an expired server certificate fails "server certificate" (loading the config does not stop doctor)', async (t) => {
  const s = await site(t);
  const now = Date.now();
  const expired = await s.pki.custom({ name: 'localhost', kind: 'server', notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) });
  const { serverCert, serverKey } = s.pki.store.layout;
  writeFileSync(serverCert('localhost'), expired.cert);
  writeFileSync(serverKey('localhost'), expired.key);
  chmodSync(serverKey('localhost'), 0o600);
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'server certificate', /^expired on /);
  assert.match(f.fix ?? '', /broker pki rotate server/);
  assert.equal(r.findings.find((x) => x.check === 'server key')?.status, 'ok', 'the new key matches the new certificate');
});

test('server: a server certificate file that is not a certificate fails "server certificate" instead of crashing', async (t) => {
  const s = await site(t);
  const cert = s.pki.store.layout.serverCert('localhost');
  writeFileSync(cert, 'not a certificate\n');
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'server certificate', /is not a readable PEM certificate/);
  assert.ok(f.message.startsWith(cert), f.message);
  // the store still lists a valid certificate for the name, so "pki server" would refuse it: rotate rewrites the files
  assert.equal(f.fix, `broker pki rotate server localhost --dir ${s.pki.dir}`);
  const fixed = await brokerAsync((f.fix ?? '').split(' ').slice(1), { cwd: s.dir });
  assert.equal(fixed.code, 0, fixed.stderr);
  assertHealthy(await doctor(['--config', s.config()], s.dir));
});

test('server: a missing server certificate file fails "server certificate"; the fix issues one, or rotates the one the store still lists', async (t) => {
  const s = await site(t);
  rmSync(s.pki.store.layout.serverCert('localhost'));
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'server certificate', /^missing .*localhost\.crt$/);
  assert.equal(f.fix, `broker pki rotate server localhost --dir ${s.pki.dir}`);
  assert.equal((await brokerAsync((f.fix ?? '').split(' ').slice(1), { cwd: s.dir })).code, 0);
  assertHealthy(await doctor(['--config', s.config()], s.dir));
  // a name the store has no certificate for: issue one
  const other = assertProblem(await doctor(['--config', s.config({ tls: { server: 'edge' } })], s.dir), 'server certificate', /^missing .*edge\.crt$/);
  assert.equal(other.fix, 'broker pki server edge --dns HOST');
});

test('server: a CRL bundle without the root\'s CRL fails "CRL" naming the missing level', async (t) => {
  const s = await site(t);
  const { crlBundle, intermediateCrl } = s.pki.store.layout;
  writeFileSync(crlBundle, readFileSync(intermediateCrl, 'utf8'));
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'CRL', /^no CRL for CN=Test CA Root: OpenSSL would refuse every client/);
  assert.doesNotMatch(f.message, /Issuing CA/);
});

test('server: a server key readable by others fails "key permissions"', async (t) => {
  const s = await site(t);
  const key = s.pki.store.layout.serverKey('localhost');
  chmodSync(key, 0o644);
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'key permissions', /is readable by group or others \(mode 644\)/);
  assert.ok(f.message.startsWith(key), f.message);
  assert.equal(f.fix, `chmod 600 ${key}`);
});

test('server: an upstream that is down fails "upstream NAME"', async (t) => {
  const port = await closedPort();
  const s = await site(t, { upstream: `http://127.0.0.1:${port}` });
  const r = await doctor(['--config', s.config()], s.dir);
  const f = assertProblem(r, 'upstream orders', new RegExp(`^127\\.0\\.0\\.1:${port} does not accept connections`));
  assert.match(f.fix ?? '', /start the upstream/);
});

test('server: --hostname a name the certificate does not cover fails "server certificate"; one it covers passes', async (t) => {
  const s = await site(t);
  const file = s.config();
  const r = await doctor(['--config', file, '--hostname', 'localhost', '--hostname', 'other.example', '--hostname', '10.9.8.7'], s.dir);
  const f = assertProblem(r, 'server certificate', /^does not cover other\.example \(SANs: DNS:localhost, IP Address:127\.0\.0\.1\)/);
  assert.equal(f.fix, `broker pki rotate server localhost --dir ${s.pki.dir} --dns localhost --ip 127.0.0.1 --dns other.example`);
  const ip = r.findings.find((x) => x.status === 'fail' && x.message.startsWith('does not cover 10.9.8.7'));
  assert.equal(ip?.fix, `broker pki rotate server localhost --dir ${s.pki.dir} --dns localhost --ip 127.0.0.1 --ip 10.9.8.7`, show(r));
  assert.ok(r.findings.some((f) => f.status === 'ok' && f.check === 'server certificate' && f.message === 'covers localhost'), show(r));
  assertHealthy(await doctor(['--config', file, '--hostname', 'localhost', '--hostname', '127.0.0.1'], s.dir));
  // the fix is a command that works as printed: afterwards the certificate covers the new name and keeps the old ones
  const fixed = await brokerAsync((f.fix ?? '').split(' ').slice(1), { cwd: s.dir });
  assert.equal(fixed.code, 0, fixed.stderr);
  assertHealthy(await doctor(['--config', file, '--hostname', 'localhost', '--hostname', '127.0.0.1', '--hostname', 'other.example'], s.dir));
});

test('server: --firewall prints an nftables snippet for the listen and admin ports', async (t) => {
  const s = await site(t);
  const r = await brokerAsync(['doctor', '--config', s.config({ listen: { host: '0.0.0.0', port: 8443 }, admin: { port: 9901 } }), '--firewall'], { cwd: s.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^table inet broker \{$/m);
  assert.match(r.stdout, /policy drop;/);
  assert.match(r.stdout, /^\s+tcp dport 8443 accept$/m);
  assert.match(r.stdout, /^\s+tcp dport 9901 drop$/m);
});

// ---------------------------------------------------------------- client side

interface Partner {
  dir: string;
  /** --cert, --key and --ca for an identity, written to files. */
  files(id: Identity, ca?: string): string[];
}

function partner(t: TestContext): Partner {
  const dir = tempDir(t);
  let n = 0;
  return {
    dir,
    files(id, ca) {
      const base = join(dir, `id-${n++}`);
      writeFileSync(`${base}.crt`, id.cert);
      writeFileSync(`${base}.key`, id.key, { mode: 0o600 });
      const out = ['--cert', `${base}.crt`, '--key', `${base}.key`];
      if (ca) {
        writeFileSync(`${base}-ca.crt`, ca);
        out.push('--ca', `${base}-ca.crt`);
      }
      return out;
    },
  };
}


const checks = (r: Report) => r.findings.map((f) => `${f.status} ${f.check}`);

test('client: a running broker and an allowed route: every step ok through "http", exit 0', async (t) => {
  const b = await runningBroker(t);
  const p = partner(t);
  const r = await doctor(['--client', '--url', b.url, ...p.files(await b.pki.issue('acme', ['partner']), b.pki.ca), '--path', '/orders/7'], p.dir);
  assertHealthy(r);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'ok http']);
  assert.match(r.findings.at(-1)?.message ?? '', /^GET \/orders\/7: 200$/);
  assert.match(r.findings.find((f) => f.check === 'tls')?.message ?? '', /the server certificate names localhost and comes from the broker's CA/);
  assert.equal(b.upstream.seen.at(-1)?.url, '/orders/7');
});

test('client: an identity without the route\'s role fails "http" with 403', async (t) => {
  const b = await runningBroker(t);
  const p = partner(t);
  const r = await doctor(['--client', '--url', b.url, ...p.files(await b.pki.issue('intruder', ['billing']), b.pki.ca), '--path', '/orders/7'], p.dir);
  assertProblem(r, 'http', /^GET \/orders\/7: 403 \(BRK_ERR_ACL_DENIED\): your identity holds no role this route allows/);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'fail http']);
  assert.equal(b.upstream.seen.length, 0);
});

test('client: a listener that accepts TCP and never answers TLS fails "tls"', async (t) => {
  const pki = await makePki(t);
  const held = await netServer(t, () => {});
  const p = partner(t);
  const r = await doctor(['--client', '--url', `https://localhost:${held.port}`, ...p.files(await pki.issue('acme', ['partner']), pki.ca), '--timeout', '1s'], p.dir);
  assertProblem(r, 'tls', new RegExp(`^the server at localhost:${held.port} accepted TCP but never answered the TLS handshake`));
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'fail tls']);
});

/** The kernel's count of SYNs dropped because a listener's accept queue was full. */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = (lines[0] ?? '').split(/\s+/);
  const values = (lines[1] ?? '').split(/\s+/);
  const i = names.indexOf('ListenOverflows');
  assert.ok(i > 0, 'no ListenOverflows counter in /proc/net/netstat');
  return Number(values[i]);
}

const noSynDrop = process.platform !== 'linux' ? 'needs Linux accept-queue semantics and /proc' : spawnSync('python3', ['--version']).status !== 0 ? 'needs python3' : false;

test('client: a port where SYNs are dropped (a listener with a full accept queue) fails "tcp": dropped, firewall', { skip: noSynDrop }, async (t) => {
  // A socket with backlog 0 that never accepts: once one connection waits in its queue, Linux
  // drops every further SYN without an answer, exactly what a DROP firewall rule looks like.
  const stuck = await child(t, 'python3', ['-c', 'import socket, sys\ns = socket.socket()\ns.bind(("127.0.0.1", 0))\ns.listen(0)\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()']);
  const port = Number(stuck.line);
  const fillers = new Set<Socket>();
  t.after(() => {
    for (const s of fillers) s.destroy();
  });
  let full = false;
  for (let i = 0; i < 3 && !full; i++) {
    const before = listenOverflows();
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.add(s);
    let connected = false;
    s.once('connect', () => (connected = true));
    await eventually(() => connected || listenOverflows() > before, `filler ${i} queued or dropped`);
    full = !connected;
  }
  assert.ok(full, 'the accept queue never filled');

  const pki = await makePki(t);
  const p = partner(t);
  const before = listenOverflows();
  const r = await doctor(['--client', '--url', `https://127.0.0.1:${port}`, ...p.files(await pki.issue('acme', ['partner']), pki.ca), '--timeout', '1s'], p.dir);
  const f = assertProblem(r, 'tcp', new RegExp(`^no answer from 127\\.0\\.0\\.1:${port} within 1000 ms: the traffic is dropped, most likely by a firewall`));
  assert.match(f.fix ?? '', /allow outbound TCP/);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'fail tcp']);
  assert.ok(listenOverflows() > before, 'the kernel dropped doctor\'s SYN');
});

test('client: a port nothing listens on fails "tcp": refused', async (t) => {
  const pki = await makePki(t);
  const port = await closedPort();
  const p = partner(t);
  const r = await doctor(['--client', '--url', `https://localhost:${port}`, ...p.files(await pki.issue('acme', ['partner']), pki.ca), '--timeout', '5s'], p.dir);
  assertProblem(r, 'tcp', new RegExp(`^localhost:${port} refused the connection: the port is closed or nothing listens there`));
});

test('client: a TLS-intercepting server with a foreign certificate fails "tls": a TLS-inspecting middlebox', async (t) => {
  const pki = await makePki(t);
  const foreign = await makePki(t);
  const { serverCert, serverKey } = foreign.store.layout;
  const cert = readFileSync(serverCert('localhost'), 'utf8');
  const key = readFileSync(serverKey('localhost'), 'utf8');
  const middlebox = await netServer(t, () => {}, (l) => createTlsServer({ cert, key }, l));
  const p = partner(t);
  const r = await doctor(['--client', '--url', `https://localhost:${middlebox.port}`, ...p.files(await pki.issue('acme', ['partner']), pki.ca), '--path', '/orders'], p.dir);
  const f = assertProblem(r, 'tls', /^the server certificate was issued by "CN=Test CA Issuing CA", not by the broker's CA \(.+\): a TLS-inspecting middlebox \(proxy, firewall\) is in the path/);
  assert.match(f.fix ?? '', /exempt the broker's host from TLS inspection/);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'fail tls']);
});

/** An HTTP proxy: `answer` decides on each CONNECT (the request line); 'tunnel' pipes to the target. */
async function proxy(t: TestContext, answer: (requestLine: string) => string | 'tunnel') {
  const seen: string[] = [];
  const targets = new Set<Socket>();
  t.after(() => {
    for (const s of targets) s.destroy();
  });
  const server = await netServer(t, (client) => {
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      seen.push(line);
      const a = answer(line);
      if (a !== 'tunnel') return void client.end(a);
      const [host, port] = (line.split(' ')[1] ?? '').split(':');
      const upstream = netConnect(Number(port), host as string, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      targets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
    };
    client.on('data', onData);
  });
  return { url: `http://127.0.0.1:${server.port}`, seen };
}

test('client: an HTTP proxy that refuses CONNECT fails "proxy" with its status line', async (t) => {
  const b = await runningBroker(t);
  const px = await proxy(t, () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  const p = partner(t);
  const r = await doctor(['--client', '--url', b.url, ...p.files(await b.pki.issue('acme', ['partner']), b.pki.ca), '--via', px.url, '--path', '/orders/7'], p.dir);
  const f = assertProblem(r, 'proxy', new RegExp(`^the proxy refused CONNECT to localhost:${b.port} \\(HTTP/1\\.1 403 Forbidden\\)`));
  assert.match(f.fix ?? '', /allow CONNECT/);
  assert.deepEqual(px.seen, [`CONNECT localhost:${b.port} HTTP/1.1`]);
  assert.equal(b.upstream.seen.length, 0);
});

test('client: an HTTP proxy that tunnels CONNECT to the broker: "proxy" ok and every step after it, exit 0', async (t) => {
  const b = await runningBroker(t);
  const px = await proxy(t, () => 'tunnel');
  const p = partner(t);
  const r = await doctor(['--client', '--url', b.url, ...p.files(await b.pki.issue('acme', ['partner']), b.pki.ca), '--via', px.url, '--path', '/orders/7'], p.dir);
  assertHealthy(r);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok proxy', 'ok tls', 'ok http']);
  assert.match(r.findings.find((f) => f.check === 'proxy')?.message ?? '', new RegExp(`^CONNECT to localhost:${b.port} through 127\\.0\\.0\\.1:\\d+ accepted`));
  assert.deepEqual(px.seen, [`CONNECT localhost:${b.port} HTTP/1.1`]);
  assert.equal(b.upstream.seen.at(-1)?.url, '/orders/7');
});

test('client: a certificate from another CA is refused by the broker: "certificate accepted" fails', async (t) => {
  const b = await runningBroker(t);
  const other = await makePki(t);
  const p = partner(t);
  const r = await doctor(['--client', '--url', b.url, ...p.files(await other.issue('acme', ['partner']), b.pki.ca), '--path', '/orders/7'], p.dir);
  // The broker answers the refused certificate's first request with 495 and the reason (tls.refusal: http);
  // doctor says that reason and its fix; the broker's auth log has it too
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate: unknown CA \(495 BRK_ERR_TLS_CLIENT_CERT_REFUSED\)/);
  assert.ok((f.fix ?? '').length > 10, JSON.stringify(f));
  const refused = await b.logs.waitFor((l) => l.log === 'auth' && l.outcome === 'refused');
  assert.equal(refused.reason, 'unknown CA');
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'fail certificate accepted']);
  assert.equal(b.upstream.seen.length, 0);
});

test('client: an expired client certificate fails "certificate" before any network step', async (t) => {
  const pki = await makePki(t);
  const now = Date.now();
  const expired = await pki.custom({ name: 'acme', roles: ['partner'], notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) });
  const p = partner(t);
  // a name that cannot resolve: reaching DNS would show as a "dns" failure instead
  const r = await doctor(['--client', '--url', 'https://doctor-never-dialed.invalid:8443', ...p.files(expired, pki.ca)], p.dir);
  const f = assertProblem(r, 'certificate', /^your certificate expired on /);
  assert.match(f.fix ?? '', /renewed one/);
  assert.deepEqual(checks(r), ['fail certificate']);
});

test('client: a --cert file that is not a certificate fails "certificate" instead of crashing', async (t) => {
  const pki = await makePki(t);
  const id = await pki.issue('acme', ['partner']);
  const p = partner(t);
  const r = await doctor(['--client', '--url', 'https://doctor-never-dialed.invalid:8443', ...p.files({ ...id, cert: 'not a certificate\n' }, pki.ca)], p.dir);
  assertProblem(r, 'certificate', /id-\d+\.crt is not a readable PEM certificate/);
  assert.deepEqual(checks(r), ['fail certificate']);
});
