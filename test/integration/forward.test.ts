/**
 * The forward (egress) listener: CONNECT tunnels carry a TLS session end to end to a destination
 * the caller's roles allow, absolute-form http requests are forwarded without any identity or
 * broker header, and everything else is refused with a coded answer: a destination outside the
 * rules, a port outside them, a request that is not a proxy request, a loopback destination that
 * no rule's allowPrivate covers (refused before any connection is made). curl's --proxy-cert works
 * against it for http and https destinations.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { captureLoggers, LENIENT, makePki, rawExchange, request, startBroker, startUpstream, type Identity } from '../helpers/broker.ts';
import { validateConfig } from '../../src/config/index.ts';
import { buildBroker } from '../../src/server.ts';
import { tempDir } from '../helpers/cli.ts';
import { eventually, within } from '../helpers/within.ts';
import { BIG, connectRaw, connectThrough, getInside, parseRaw, startCounter, startForward, startTlsDestination } from '../helpers/forward.ts';

test('an allowed CONNECT carries a TLS session end to end, logged with identity, destination and bytes', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const { status, socket } = await within(connectThrough(b.forwardPort, pki.ca, partner, `127.0.0.1:${dest.port}`), 15_000, 'CONNECT');
  assert.equal(status, 200);
  const answer = await within(getInside(socket, dest.ca, '/vault'), 15_000, 'GET inside the tunnel');
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.match(answer, /\r\nsecret from \/vault\r\n/);
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT', 10_000);
  assert.equal(line.principal, 'partner-a');
  assert.deepEqual(line.roles, ['partner']);
  assert.equal(line.host, '127.0.0.1');
  assert.equal(line.address, '127.0.0.1');
  assert.equal(line.port, dest.port);
  assert.equal(line.outcome, 'ok');
  assert.equal(line.status, 200);
  assert.ok((line.bytesUp as number) > 0 && (line.bytesDown as number) > 0, JSON.stringify(line));
  assert.equal(typeof line.connId, 'string');
  assert.equal(typeof line.reqId, 'string');
});

test('an absolute-form GET is forwarded without identity headers and without anything of the broker', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const up = await startUpstream(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [up.port], allowPrivate: ['127.0.0.1/32'] }]);
  const res = await request(b.forwardPort, {
    id: partner,
    ca: pki.ca,
    path: `http://127.0.0.1:${up.port}/orders?id=7`,
    headers: {
      'x-partner-ref': 'r-1',
      'x-client-name': 'admin',
      'x-client-roles': 'admin',
      x_client_dn: 'CN=admin',
      'x-forwarded-for': '10.0.0.1',
      'x-forwarded-proto': 'https',
      'x-forwarded-client-cert': 'Hash=00',
      'client-cert': ':AAAA:',
      forwarded: 'for=10.0.0.1',
      'x-real-ip': '10.0.0.1',
      'proxy-authorization': 'Basic dTpw',
      'proxy-connection': 'keep-alive',
      'x-client-jwt': 'e30.e30.',
      connection: 'x-drop-me',
      'x-drop-me': '1',
    },
  });
  assert.equal(res.status, 200, res.text);
  const seen = up.seen[0];
  assert.ok(seen);
  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, '/orders?id=7');
  assert.equal(seen.headers.host, `127.0.0.1:${up.port}`);
  assert.equal(seen.headers['x-partner-ref'], 'r-1');
  const names = new Set(Object.keys(seen.headers));
  // what arrived: the client's own header, Host, and the connection handling of Node's client
  assert.deepEqual([...names].sort(), ['connection', 'host', 'x-partner-ref']);
  assert.equal(seen.headers.connection, 'keep-alive');
  // the answer goes back, and says nothing of the broker either
  assert.equal(res.headers['x-request-id'], undefined);
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.method === 'GET', 10_000);
  assert.equal(line.outcome, 'ok');
  assert.equal(line.status, 200);
  assert.equal(line.principal, 'partner-a');
});

test('absolute-form requests reuse kept-alive connections to the checked address, whoever sends them', async (t) => {
  const pki = await makePki(t);
  const a = await pki.issue('pool-a', ['partner']);
  const other = await pki.issue('pool-b', ['partner']);
  const up = await startUpstream(t);
  let connections = 0;
  up.server.on('connection', () => connections++);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [up.port], allowPrivate: ['127.0.0.1/32'] }]);
  for (const id of [a, other, a]) {
    const res = await request(b.forwardPort, { id, ca: pki.ca, path: `http://127.0.0.1:${up.port}/n` });
    assert.equal(res.status, 200, res.text);
  }
  assert.equal(up.seen.length, 3);
  assert.equal(connections, 1, 'one destination connection carried the three requests');
});

test('refusals are coded: a destination outside the role\'s rules, a port outside them, a request that is not a proxy request', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const stranger = await pki.issue('stranger', ['other']);
  const counter = await startCounter(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1', '*.payments.example'], ports: [counter.port], allowPrivate: ['127.0.0.0/8'] }]);
  const cases: Array<[string, Identity, string, number, string]> = [
    ['another host', partner, 'api.elsewhere.example:443', 403, 'BRK_ERR_FORWARD_DENIED'],
    ['the glob\'s apex is not matched', partner, `payments.example:${counter.port}`, 403, 'BRK_ERR_FORWARD_DENIED'],
    ['a role without rules', stranger, `127.0.0.1:${counter.port}`, 403, 'BRK_ERR_FORWARD_DENIED'],
    ['a port outside the rule', partner, '127.0.0.1:22', 403, 'BRK_ERR_FORWARD_PORT'],
    ['a glob host on another port', partner, 'a.b.payments.example:443', 403, 'BRK_ERR_FORWARD_PORT'],
  ];
  for (const [what, id, authority, status, code] of cases) {
    const r = await within(connectRaw(b.forwardPort, pki.ca, id, authority), 15_000, what);
    assert.equal(r.status, status, what);
    assert.equal(r.body.code, code, what);
    assert.equal(typeof r.body.reqId, 'string', what);
  }
  // absolute-form to a denied host, an origin-form request, another scheme
  const denied = await request(b.forwardPort, { id: partner, ca: pki.ca, path: 'http://api.elsewhere.example/x' });
  assert.equal(denied.status, 403);
  assert.equal(denied.json().code, 'BRK_ERR_FORWARD_DENIED');
  const origin = await request(b.forwardPort, { id: partner, ca: pki.ca, path: '/orders' });
  assert.equal(origin.status, 400);
  assert.equal(origin.json().code, 'BRK_ERR_FORWARD_NOT_PROXY');
  const https = await request(b.forwardPort, { id: partner, ca: pki.ca, path: `https://127.0.0.1:${counter.port}/` });
  assert.equal(https.status, 400);
  assert.equal(https.json().code, 'BRK_ERR_FORWARD_NOT_PROXY');
  const upgrade = parseRaw(await rawExchange(b.forwardPort, { id: partner, ca: pki.ca, data: `GET http://127.0.0.1:${counter.port}/ws HTTP/1.1\r\nHost: 127.0.0.1:${counter.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, ms: 10_000 }));
  assert.equal(upgrade.status, 400);
  assert.equal(upgrade.body.code, 'BRK_ERR_FORWARD_NOT_PROXY');
  assert.equal(counter.connections(), 0, 'no refused request reached the destination');
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.code === 'BRK_ERR_FORWARD_PORT', 10_000);
  assert.equal(line.outcome, 'refused');
  assert.equal(line.host, '127.0.0.1');
  assert.equal(line.port, 22);
  assert.match(String(line.reason), /port 22/);
});

test('without allowPrivate, loopback destinations are refused before any connection is made', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const counter = await startCounter(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1', 'localhost'], ports: [counter.port] }]);
  for (const authority of [`127.0.0.1:${counter.port}`, `localhost:${counter.port}`]) {
    const r = await within(connectRaw(b.forwardPort, pki.ca, partner, authority), 15_000, authority);
    assert.equal(r.status, 403, authority);
    assert.equal(r.body.code, 'BRK_ERR_FORWARD_PRIVATE', authority);
  }
  const abs = await request(b.forwardPort, { id: partner, ca: pki.ca, path: `http://127.0.0.1:${counter.port}/` });
  assert.equal(abs.status, 403);
  assert.equal(abs.json().code, 'BRK_ERR_FORWARD_PRIVATE');
  assert.equal(counter.connections(), 0, 'the destination saw no connection');
});

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '20', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('curl --proxy https://… --proxy-cert reaches an http destination (absolute-form) and an https one (CONNECT)', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('plain hello');
  });
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [up.port, dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  const dir = tempDir(t, 'broker-forward-curl-');
  const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
  const proxy = ['--proxy', `https://127.0.0.1:${b.forwardPort}`, '--proxy-cacert', file('broker-ca.pem', pki.ca), '--proxy-cert', file('client.pem', partner.cert), '--proxy-key', file('client.key', partner.key)];
  const plain = await curl([...proxy, `http://127.0.0.1:${up.port}/hello`]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, 'plain hello');
  const tls = await curl([...proxy, '--cacert', file('dest-ca.pem', dest.ca), `https://127.0.0.1:${dest.port}/deep`]);
  assert.equal(tls.code, 0, tls.stderr);
  assert.equal(tls.stdout, 'secret from /deep');
  // without a client certificate the proxy refuses the connection
  const anonymous = await curl(['--proxy', `https://127.0.0.1:${b.forwardPort}`, '--proxy-cacert', join(dir, 'broker-ca.pem'), `http://127.0.0.1:${up.port}/hello`]);
  assert.notEqual(anonymous.code, 0);
  assert.equal(up.seen.length, 1);
});

test('a tunnel with no bytes for forward.idleTimeout is closed; an unreachable destination is a 502', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  // a destination that accepts and then says nothing
  const held: Socket[] = [];
  const quiet = createNetServer((s) => void held.push(s));
  await new Promise<void>((resolve) => quiet.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (held.forEach((s) => s.destroy()), quiet.close(() => resolve()))));
  const quietPort = (quiet.address() as AddressInfo).port;
  const b = await startBroker(t, pki, { forward: { listen: { host: '127.0.0.1', port: 0 }, idleTimeout: '300ms', rules: [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [quietPort, 1], allowPrivate: ['127.0.0.0/8'] }] } });
  const port = (b.broker.forwardServer?.address() as AddressInfo).port;
  const { status, socket } = await within(connectThrough(port, pki.ca, partner, `127.0.0.1:${quietPort}`), 15_000, 'CONNECT');
  assert.equal(status, 200);
  await within(new Promise((resolve) => socket.once('close', resolve)), 15_000, 'the idle tunnel closes');
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT' && l.status === 200, 10_000);
  assert.equal(line.end, 'idle');
  // port 1 on loopback: nothing listens there (connection refused)
  const r = await within(connectRaw(port, pki.ca, partner, '127.0.0.1:1'), 15_000, 'CONNECT to a closed port');
  assert.equal(r.status, 502);
  assert.equal(r.body.code, 'BRK_ERR_FORWARD_UPSTREAM');
});

test('refusals on the forward listener count toward the address\'s ban', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const b = await startBroker(t, pki, { bans: { enabled: true, deniedRequests: 3, window: '1m', duration: '10m' }, forward: { listen: { host: '127.0.0.1', port: 0 }, rules: [] } });
  const port = (b.broker.forwardServer?.address() as AddressInfo).port;
  for (let i = 0; i < 3; i++) {
    const r = await within(connectRaw(port, pki.ca, partner, 'api.partner.example:443'), 15_000, `refusal ${i}`);
    assert.equal(r.body.code, 'BRK_ERR_FORWARD_DENIED');
  }
  await b.logs.waitFor((l) => l.event === 'ban' && l.reason === 'denied requests', 10_000);
  assert.equal(b.broker.guard.isBanned('127.0.0.1'), true);
});

test('revoking a certificate closes its open tunnel at the reload, and its next CONNECT is answered 495 with the reason', async (t) => {
  const pki = await makePki(t);
  const mallory = await pki.issue('mallory', ['partner']);
  const held: Socket[] = [];
  const quiet = createNetServer((s) => void held.push(s));
  await new Promise<void>((resolve) => quiet.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (held.forEach((s) => s.destroy()), quiet.close(() => resolve()))));
  const quietPort = (quiet.address() as AddressInfo).port;
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [quietPort], allowPrivate: ['127.0.0.0/8'] }]);
  const { status, socket } = await within(connectThrough(b.forwardPort, pki.ca, mallory, `127.0.0.1:${quietPort}`), 15_000, 'CONNECT');
  assert.equal(status, 200);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await pki.revoke('mallory');
  const r = await b.broker.reload();
  assert.equal(r.ok, true);
  await within(closed, 15_000, 'the revoked identity\'s tunnel closes');
  const again = await within(connectRaw(b.forwardPort, pki.ca, mallory, `127.0.0.1:${quietPort}`), 15_000, 'CONNECT after revocation');
  assert.equal(again.status, 495);
  assert.equal(again.body.code, 'BRK_ERR_TLS_CLIENT_CERT_REFUSED');
  assert.equal(held.length, 1, 'only the first tunnel reached the destination');
});

test('loopback, private and metadata addresses in any spelling, and a name a resolver stub points at 127.0.0.1, are refused before any connection; allowed, the stub\'s name is reached at the address checked', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const counter = await startCounter(t);
  const lookups: string[] = [];
  // the name exists only in this stub: a second lookup through the system resolver would fail
  const lookup = async (name: string) => (lookups.push(name), [{ address: '127.0.0.1', family: 4 as const }]);
  const rules = (allowPrivate: string[]) => [
    { roles: ['partner'], hosts: ['127.0.0.1', '::1', '::ffff:127.0.0.1', '169.254.169.254', '10.0.0.1', 'rebind.partner.example'], ports: [counter.port], allowPrivate },
  ];
  const start = async (allowPrivate: string[]) => {
    const { config, problems } = validateConfig({ listen: { host: '127.0.0.1', port: 0 }, admin: { enabled: false }, pki: { dir: pki.dir }, tls: { server: 'localhost' }, ...LENIENT, forward: { listen: { host: '127.0.0.1', port: 0 }, rules: rules(allowPrivate) } }, pki.dir);
    assert.ok(config, problems.join('\n'));
    const { loggers } = captureLoggers();
    const broker = await buildBroker(config, { loggers, forwardLookup: lookup });
    t.after(() => broker.close());
    return (await broker.listen()).forwardPort as number;
  };
  const closed = await start([]);
  const spellings = ['127.0.0.1', '0x7f.1', '2130706433', '0177.0.0.1', '127.1', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '169.254.169.254', '0xa9fea9fe', '10.0.0.1', '012.1', 'rebind.partner.example', 'REBIND.partner.example.'];
  for (const host of spellings) {
    const r = await within(connectRaw(closed, pki.ca, partner, `${host}:${counter.port}`), 15_000, host);
    assert.equal(r.status, 403, host);
    assert.equal(r.body.code, 'BRK_ERR_FORWARD_PRIVATE', host);
  }
  assert.equal(counter.connections(), 0, 'the destination saw no connection');
  assert.deepEqual(lookups, ['rebind.partner.example', 'rebind.partner.example'], 'names are resolved through the stub, literals never');
  const open = await start(['127.0.0.0/8']);
  const { status, socket } = await within(connectThrough(open, pki.ca, partner, `rebind.partner.example:${counter.port}`), 15_000, 'CONNECT allowed');
  assert.equal(status, 200);
  socket.destroy();
  await eventually(() => counter.connections() === 1, 'the destination is reached at the checked address');
});

test('a tunnel carries megabytes both ways intact (backpressure), and counts them', async (t) => {
  const pki = await makePki(t);
  const partner = await pki.issue('partner-a', ['partner']);
  const dest = await startTlsDestination(t);
  const b = await startForward(t, pki, [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }]);
  /** One request over TLS inside a fresh tunnel; resolves with the answer's body. */
  const through = async (method: string, path: string, body?: Buffer): Promise<Buffer> => {
    const { status, socket } = await connectThrough(b.forwardPort, pki.ca, partner, `127.0.0.1:${dest.port}`);
    assert.equal(status, 200);
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ createConnection: () => tlsConnect({ socket, servername: 'localhost', ca: dest.ca }), method, path, headers: body ? { 'content-length': String(body.length) } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (socket.destroy(), resolve(Buffer.concat(chunks))));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  };
  const down = await within(through('GET', '/big'), 60_000, '6 MiB down');
  assert.equal(down.length, BIG.length);
  assert.ok(down.equals(BIG), 'the 6 MiB answer arrived intact');
  const echo = await within(through('POST', '/echo', BIG), 60_000, '6 MiB up');
  assert.equal(echo.toString(), `${BIG.length} ${createHash('sha256').update(BIG).digest('hex')}`, 'the 6 MiB body arrived intact');
  await eventually(() => b.logs.of('access').filter((l) => l.event === 'forward' && l.method === 'CONNECT').length === 2, 'both tunnels logged');
  const [first, second] = b.logs.of('access').filter((l) => l.event === 'forward' && l.method === 'CONNECT');
  assert.ok((first?.bytesDown as number) > BIG.length, JSON.stringify(first));
  assert.ok((second?.bytesUp as number) > BIG.length, JSON.stringify(second));
});
