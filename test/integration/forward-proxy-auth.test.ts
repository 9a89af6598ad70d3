/**
 * Proxy-Authorization on the forward listener, for tools that cannot present a certificate to a
 * proxy: an API key (as the Basic password, or Bearer) or a Basic credential from `broker keys`
 * uses the rules whose auth lists its method, and only those; a certificate uses the mtls rules.
 * Missing, wrong, mismatched and revoked credentials get 407 with Proxy-Authenticate; on a
 * connection with a certificate the certificate decides alone; the destination never sees
 * Proxy-Authorization; a listener with only mtls rules still refuses a
 * connection without a certificate at the handshake.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { makePki, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { eventually, within } from '../helpers/within.ts';
import { createKey, revokeKey } from '../../src/pki/credentials.ts';
import { validateConfig } from '../../src/config/index.ts';

/** An https destination with its own CA: answers "secret from <path>". */
async function startTlsDestination(t: TestContext): Promise<{ port: number; ca: string }> {
  const own = await makePki(t);
  const server = createHttpsServer({ cert: readFileSync(own.store.layout.serverCert('localhost')), key: readFileSync(own.store.layout.serverKey('localhost')) }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`secret from ${req.url}`);
  });
  // raw connections too: a tunnel's connection that never starts its TLS handshake is not one closeAllConnections knows
  const sockets = new Set<Socket>();
  server.on('connection', (c: Socket) => (sockets.add(c), c.once('close', () => sockets.delete(c))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (sockets.forEach((c) => c.destroy()), server.close(() => resolve()))));
  return { port: (server.address() as AddressInfo).port, ca: own.ca };
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '20', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Sends `data` over TLS to the forward listener (without a client certificate unless `id`); resolves with what came back before the close. */
function exchange(port: number, ca: string, data: string, id?: Identity): Promise<{ text: string; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port, ca, ...(id ? { cert: id.cert, key: id.key } : {}) }, () => socket.write(data));
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // a 200 to CONNECT leaves the tunnel open: the status line is all we need
      if (Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 200')) socket.destroy();
    });
    socket.on('error', (e) => (error = e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), ...(error !== undefined ? { error } : {}) });
    });
  });
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Answer {
  status: number;
  challenge: string | undefined;
  code: string | undefined;
}

function parse(text: string): Answer {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const head = text.slice(0, Math.max(0, text.indexOf('\r\n\r\n')));
  const challenge = /\r\nProxy-Authenticate: ([^\r\n]*)/i.exec(head)?.[1];
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  let code: string | undefined;
  if (body.startsWith('{')) code = (JSON.parse(body) as { code?: string }).code;
  return { status, challenge, code };
}

/** A CONNECT with optional Proxy-Authorization, with or without a client certificate. */
async function connect(port: number, ca: string, authority: string, o: { auth?: string; id?: Identity } = {}): Promise<Answer> {
  const data = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${o.auth !== undefined ? `Proxy-Authorization: ${o.auth}\r\n` : ''}\r\n`;
  return parse((await exchange(port, ca, data, o.id)).text);
}

interface Setup {
  pki: TestPki;
  b: RunningBroker;
  port: number;
  dest: { port: number; ca: string };
  up: Awaited<ReturnType<typeof startUpstream>>;
  dir: string;
  caFile: string;
}

/**
 * Role "keyed": one rule for API keys and Basic credentials; role "partner": the default [mtls]
 * rule. Both reach the local TLS destination and the plain upstream.
 */
async function setup(t: TestContext, extra: Record<string, unknown> = {}): Promise<Setup> {
  const pki = await makePki(t);
  const dest = await startTlsDestination(t);
  const up = await startUpstream(t);
  const ports = [dest.port, up.port];
  const b = await startBroker(t, pki, {
    forward: {
      listen: { host: '127.0.0.1', port: 0 },
      rules: [
        { roles: ['keyed'], hosts: ['127.0.0.1'], ports, allowPrivate: ['127.0.0.0/8'], auth: ['apiKey', 'basic'] },
        { roles: ['partner'], hosts: ['127.0.0.1'], ports, allowPrivate: ['127.0.0.0/8'] },
      ],
    },
    ...extra,
  });
  const port = (b.broker.forwardServer?.address() as AddressInfo).port;
  const dir = tempDir(t, 'broker-forward-auth-');
  const caFile = join(dir, 'broker-ca.pem');
  writeFileSync(caFile, pki.ca);
  return { pki, b, port, dest, up, dir, caFile };
}

test('curl --proxy-user NAME:API-KEY and a Basic credential, without a client certificate, tunnel to a rule that lists them; a certificate still uses the mtls rule', async (t) => {
  const s = await setup(t);
  const tool = await createKey(s.pki.store, { name: 'tool', roles: ['keyed'], kind: 'apiKey' });
  const legacy = await createKey(s.pki.store, { name: 'legacy', roles: ['keyed'], kind: 'basic' });
  assert.equal((await s.b.broker.reload()).ok, true);
  const destCa = join(s.dir, 'dest-ca.pem');
  writeFileSync(destCa, s.dest.ca);
  const proxy = ['--proxy', `https://127.0.0.1:${s.port}`, '--proxy-cacert', s.caFile, '--cacert', destCa];

  const viaKey = await curl([...proxy, '--proxy-user', `tool:${tool.secret}`, `https://127.0.0.1:${s.dest.port}/deep`]);
  assert.equal(viaKey.code, 0, viaKey.stderr);
  assert.equal(viaKey.stdout, 'secret from /deep');
  const line = await s.b.logs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT' && l.principal === 'tool', 10_000);
  assert.equal(line.outcome, 'ok');
  assert.equal(line.auth, 'apiKey');
  assert.equal(line.keyId, tool.record.id);
  assert.deepEqual(line.roles, ['keyed']);
  assert.equal(line.serial, null);

  // the credentials in the proxy URL, as HTTPS_PROXY=https://NAME:KEY@host:port gives them
  const viaUrl = await curl(['--proxy', `https://tool:${tool.secret}@127.0.0.1:${s.port}`, '--proxy-cacert', s.caFile, '--cacert', destCa, `https://127.0.0.1:${s.dest.port}/url`]);
  assert.equal(viaUrl.code, 0, viaUrl.stderr);
  assert.equal(viaUrl.stdout, 'secret from /url');

  const viaBasic = await curl([...proxy, '--proxy-user', `legacy:${legacy.secret}`, `https://127.0.0.1:${s.dest.port}/old`]);
  assert.equal(viaBasic.code, 0, viaBasic.stderr);
  assert.equal(viaBasic.stdout, 'secret from /old');

  // an API key as a bearer credential
  assert.equal((await connect(s.port, s.pki.ca, `127.0.0.1:${s.dest.port}`, { auth: `Bearer ${tool.secret}` })).status, 200);

  // a certificate of role partner: the mtls rule, on the same (now certificate-optional) listener
  const partner = await s.pki.issue('partner-a', ['partner']);
  assert.equal((await connect(s.port, s.pki.ca, `127.0.0.1:${s.dest.port}`, { id: partner })).status, 200);
  writeFileSync(join(s.dir, 'p.pem'), partner.cert);
  writeFileSync(join(s.dir, 'p.key'), partner.key);
  const withCert = await curl([...proxy, '--proxy-cert', join(s.dir, 'p.pem'), '--proxy-key', join(s.dir, 'p.key'), `https://127.0.0.1:${s.dest.port}/cert`]);
  assert.equal(withCert.code, 0, withCert.stderr);
  assert.equal(withCert.stdout, 'secret from /cert');

  for (const l of (['auth', 'access', 'error', 'audit'] as const).flatMap((k) => s.b.logs.of(k))) {
    const text = JSON.stringify(l);
    assert.ok(!text.includes(tool.secret) && !text.includes(legacy.secret), 'no secret is logged');
  }
});

test('credentials are judged by the rules that list their method only; a certificate only by mtls rules', async (t) => {
  const s = await setup(t);
  // identities of role partner, whose only rule is [mtls]
  const pkey = await createKey(s.pki.store, { name: 'pkey', roles: ['partner'], kind: 'apiKey' });
  const pbasic = await createKey(s.pki.store, { name: 'pbasic', roles: ['partner'], kind: 'basic' });
  assert.equal((await s.b.broker.reload()).ok, true);
  const to = `127.0.0.1:${s.dest.port}`;
  const viaKey = await connect(s.port, s.pki.ca, to, { auth: basic('pkey', pkey.secret) });
  assert.deepEqual([viaKey.status, viaKey.code], [403, 'BRK_ERR_FORWARD_DENIED']);
  const viaBasic = await connect(s.port, s.pki.ca, to, { auth: basic('pbasic', pbasic.secret) });
  assert.deepEqual([viaBasic.status, viaBasic.code], [403, 'BRK_ERR_FORWARD_DENIED']);
  // a certificate of role keyed: the keyed rule does not list mtls
  const keyedCert = await s.pki.issue('keyed-cert', ['keyed']);
  const viaCert = await connect(s.port, s.pki.ca, to, { id: keyedCert });
  assert.deepEqual([viaCert.status, viaCert.code], [403, 'BRK_ERR_FORWARD_DENIED']);
  const refusal = await s.b.logs.waitFor((l) => l.event === 'forward' && l.principal === 'pkey', 10_000);
  assert.equal(refusal.outcome, 'refused');
  assert.match(String(refusal.reason), /with auth apiKey/);
});

test('missing, wrong, mismatched and revoked credentials get 407 with Proxy-Authenticate and are logged', async (t) => {
  const s = await setup(t, { auth: { basicRealm: 'egress' } });
  const tool = await createKey(s.pki.store, { name: 'tool', roles: ['keyed'], kind: 'apiKey' });
  const legacy = await createKey(s.pki.store, { name: 'legacy', roles: ['keyed'], kind: 'basic' });
  assert.equal((await s.b.broker.reload()).ok, true);
  const to = `127.0.0.1:${s.dest.port}`;
  assert.equal((await connect(s.port, s.pki.ca, to, { auth: basic('tool', tool.secret) })).status, 200, 'the key works (and is cached)');

  const wrongPassword = legacy.secret.at(-1) === 'A' ? `${legacy.secret.slice(0, -1)}B` : `${legacy.secret.slice(0, -1)}A`;
  const cases: Array<[string, string | undefined, string]> = [
    ['missing', undefined, 'BRK_ERR_FORWARD_AUTH_REQUIRED'],
    ['wrong password', basic('legacy', wrongPassword), 'BRK_ERR_FORWARD_AUTH_INVALID'],
    ['unknown user', basic('nobody', legacy.secret), 'BRK_ERR_FORWARD_AUTH_INVALID'],
    ['another name with the API key', basic('legacy', tool.secret), 'BRK_ERR_FORWARD_AUTH_INVALID'],
    ['a Bearer that is no API key', 'Bearer abc.def.ghi', 'BRK_ERR_FORWARD_AUTH_INVALID'],
    ['another scheme', 'Digest username="tool"', 'BRK_ERR_FORWARD_AUTH_INVALID'],
  ];
  for (const [what, auth, code] of cases) {
    const a = await connect(s.port, s.pki.ca, to, auth === undefined ? {} : { auth });
    assert.deepEqual([a.status, a.code], [407, code], what);
    assert.equal(a.challenge, 'Basic realm="egress", charset="UTF-8"', what);
  }
  // a certificate and the Proxy-Authorization of another identity (or a bogus one): the certificate decides alone
  const partner = await s.pki.issue('partner-a', ['partner']);
  assert.equal((await connect(s.port, s.pki.ca, to, { id: partner, auth: basic('tool', tool.secret) })).status, 200);
  assert.equal((await connect(s.port, s.pki.ca, to, { id: partner, auth: basic('legacy', wrongPassword) })).status, 200);
  const certLine = await s.b.logs.waitFor((l) => l.event === 'forward' && l.principal === 'partner-a', 10_000);
  assert.equal(certLine.auth, undefined);
  assert.equal(certLine.serial, partner.serial);

  await revokeKey(s.pki.store, tool.record.id);
  assert.equal((await s.b.broker.reload()).ok, true);
  const revoked = await connect(s.port, s.pki.ca, to, { auth: basic('tool', tool.secret) });
  assert.deepEqual([revoked.status, revoked.code], [407, 'BRK_ERR_FORWARD_AUTH_INVALID'], 'revoked, although the success was cached');

  await eventually(() => s.b.logs.of('access').filter((l) => l.event === 'forward' && l.status === 407).length === cases.length + 1, 'an access line per 407');
  const refused = s.b.logs.of('access').filter((l) => l.event === 'forward' && l.status === 407);
  for (const l of refused) assert.equal(l.outcome, 'refused');
  assert.ok(refused.every((l) => typeof l.reason === 'string' && (l.reason as string).length > 0));
  const reasons = s.b.logs.of('auth').filter((l) => l.event === 'credential' && l.listener === 'forward').map((l) => l.reason);
  for (const r of ['missing', 'wrong', 'unknown', 'mismatch', 'malformed', 'revoked']) assert.ok(reasons.includes(r), `auth log says ${r}: ${reasons.join(',')}`);
  const metric = await s.b.broker.metrics.registry.getSingleMetricAsString('broker_credentials_total');
  assert.match(metric, /broker_credentials_total\{method="basic",outcome="refused",reason="wrong"\} 1/);
  assert.match(metric, /broker_credentials_total\{method="apiKey",outcome="ok",reason=""\} 1/);
});

test('revoking an API key cuts the tunnels it opened', async (t) => {
  const s = await setup(t);
  const tool = await createKey(s.pki.store, { name: 'tool', roles: ['keyed'], kind: 'apiKey' });
  const other = await createKey(s.pki.store, { name: 'other', roles: ['keyed'], kind: 'apiKey' });
  assert.equal((await s.b.broker.reload()).ok, true);
  const open = (key: string) =>
    new Promise<TLSSocket>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', servername: 'localhost', port: s.port, ca: s.pki.ca }, () => socket.write(`CONNECT 127.0.0.1:${s.dest.port} HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: Bearer ${key}\r\n\r\n`));
      t.after(() => socket.destroy());
      socket.once('data', (c: Buffer) => (c.toString('latin1').startsWith('HTTP/1.1 200') ? resolve(socket) : reject(new Error(c.toString('latin1')))));
      socket.once('error', reject);
    });
  const tunnel = await within(open(tool.secret), 10_000, 'tunnel of tool');
  const kept = await within(open(other.secret), 10_000, 'tunnel of other');
  const closed = new Promise((resolve) => tunnel.once('close', resolve));
  await revokeKey(s.pki.store, tool.record.id);
  assert.equal((await s.b.broker.reload()).ok, true);
  await within(closed, 10_000, 'the revoked key\'s tunnel is cut');
  assert.equal(kept.destroyed, false, 'another key\'s tunnel stays open');
  kept.destroy();
  // the tunnel's end reaches the destination too (else its server would wait for a handshake that never comes)
  await s.b.logs.waitFor((l) => l.event === 'forward' && l.principal === 'other' && l.end !== undefined, 10_000);
});

test('wrong credentials ban the address like failed handshakes', async (t) => {
  const s = await setup(t, { bans: { enabled: true, failedHandshakes: 2, deniedRequests: 100 } });
  const to = `127.0.0.1:${s.dest.port}`;
  const bogus = basic('legacy', 'A'.repeat(32));
  assert.equal((await connect(s.port, s.pki.ca, to, { auth: bogus })).status, 407);
  assert.equal((await connect(s.port, s.pki.ca, to, { auth: bogus })).status, 407);
  await eventually(async () => (await exchange(s.port, s.pki.ca, `CONNECT ${to} HTTP/1.1\r\nHost: ${to}\r\n\r\n`)).text === '', 'the address is banned');
  assert.ok(s.b.logs.of('auth').some((l) => l.event === 'ban'), 'a ban line');
});

test('an absolute-form GET with Proxy-Authorization is forwarded, and the destination never sees Proxy-Authorization', async (t) => {
  const s = await setup(t);
  const legacy = await createKey(s.pki.store, { name: 'legacy', roles: ['keyed'], kind: 'basic' });
  assert.equal((await s.b.broker.reload()).ok, true);
  const r = await curl(['--proxy', `https://127.0.0.1:${s.port}`, '--proxy-cacert', s.caFile, '--proxy-user', `legacy:${legacy.secret}`, `http://127.0.0.1:${s.up.port}/orders?id=7`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(s.up.seen.length, 1);
  const seen = s.up.seen[0]!;
  assert.equal(seen.url, '/orders?id=7');
  assert.equal(seen.headers['proxy-authorization'], undefined);
  assert.ok(!seen.rawHeaders.some((h) => h.toLowerCase() === 'proxy-authorization'));
  const line = await s.b.logs.waitFor((l) => l.event === 'forward' && l.method === 'GET', 10_000);
  assert.equal(line.principal, 'legacy');
  assert.equal(line.auth, 'basic');

  // each request is judged on its own: the next one without a credential gets a 407
  const again = await exchange(s.port, s.pki.ca, `GET http://127.0.0.1:${s.up.port}/x HTTP/1.1\r\nHost: 127.0.0.1:${s.up.port}\r\nConnection: close\r\n\r\n`);
  const a = parse(again.text);
  assert.deepEqual([a.status, a.code], [407, 'BRK_ERR_FORWARD_AUTH_REQUIRED']);
  assert.equal(a.challenge, 'Basic realm="broker", charset="UTF-8"');
  assert.equal(s.up.seen.length, 1, 'nothing refused reached the destination');
});

test('a forward listener whose rules all are [mtls] still refuses a connection without a certificate at the handshake', async (t) => {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, { forward: { listen: { host: '127.0.0.1', port: 0 }, rules: [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [443], allowPrivate: ['127.0.0.0/8'] }] } });
  const port = (b.broker.forwardServer?.address() as AddressInfo).port;
  const tool = await createKey(pki.store, { name: 'tool', roles: ['partner'], kind: 'apiKey' });
  const r = await exchange(port, pki.ca, `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nProxy-Authorization: Bearer ${tool.secret}\r\n\r\n`);
  assert.equal(r.text, '', 'no HTTP answer: the handshake was refused');
  await b.logs.waitFor((l) => l.event === 'handshake' && l.outcome === 'refused', 10_000);
  assert.equal(b.logs.of('access').filter((l) => l.event === 'forward').length, 0);

  // a reload that lets a rule take credentials: the certificate requirement is fixed at start, and the reload says so
  const raw = JSON.parse(JSON.stringify(b.broker.config)) as { forward: { rules: Array<Record<string, unknown>> } };
  raw.forward.rules[0]!.auth = ['mtls', 'apiKey'];
  const { config, problems } = validateConfig(raw, pki.dir);
  assert.deepEqual(problems, []);
  const reloaded = await b.broker.reload(config);
  assert.equal(reloaded.ok, true, reloaded.problems.join('\n'));
  assert.ok(reloaded.restartNeeded.includes('forward.rules[].auth'), reloaded.restartNeeded.join(','));
  const after = await exchange(port, pki.ca, `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nProxy-Authorization: Bearer ${tool.secret}\r\n\r\n`);
  assert.equal(after.text, '', 'still refused at the handshake until a restart');
});
