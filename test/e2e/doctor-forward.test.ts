/**
 * `broker doctor --client --forward` (issue 18): the partner's path to the forward (egress)
 * listener. The built CLI runs against a real broker with a `forward:` listener on 127.0.0.1:
 * the healthy path (certificate admitted, --destination allowed, tunnel closed at once), a
 * destination the rules refuse (by host, by port) named with its code, a certificate from another
 * CA refused by the listener, nothing listening on the port, and the main listener mistaken for
 * the forward one.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';
import { deadPort, makePki, startBroker, type Identity } from '../helpers/broker.ts';
import { assertProblem, checks, runDoctor, show, type Report } from '../helpers/doctor.ts';
import { eventually } from '../helpers/within.ts';
import type { Finding } from '../../src/doctor/finding.ts';

const doctor = (args: string[], cwd: string): Promise<Report> => runDoctor(['--client', '--forward', ...args, '--timeout', '5s'], cwd, { NODE_EXTRA_CA_CERTS: undefined as unknown as string });

/** --cert/--key/--ca written to files in `dir`. */
function files(dir: string, tag: string, id: Identity, ca: string): string[] {
  writeFileSync(join(dir, `${tag}.crt`), id.cert);
  writeFileSync(join(dir, `${tag}.key`), id.key, { mode: 0o600 });
  writeFileSync(join(dir, `${tag}-ca.crt`), ca);
  return ['--cert', join(dir, `${tag}.crt`), '--key', join(dir, `${tag}.key`), '--ca', join(dir, `${tag}-ca.crt`)];
}

/** A TCP destination on 127.0.0.1 that counts the connections it accepts (and holds them open). */
async function destination(t: TestContext): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = createNetServer((s) => {
    connections++;
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (server.close(() => resolve()), undefined)));
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

/** A broker whose forward listener lets role partner reach 127.0.0.1 on the destination's port. */
async function forwardBroker(t: TestContext, raw: Record<string, unknown> = {}) {
  const pki = await makePki(t);
  const dest = await destination(t);
  const b = await startBroker(t, pki, { ...raw, forward: { listen: { host: '127.0.0.1', port: 0 }, rules: [{ roles: ['partner'], hosts: ['127.0.0.1'], ports: [dest.port], allowPrivate: ['127.0.0.0/8'] }] } });
  const a = b.broker.forwardServer?.address();
  assert.ok(a && typeof a !== 'string', 'the forward listener listens');
  return { pki, dest, ...b, forwardUrl: `https://localhost:${a.port}` };
}

test('doctor --client --forward: the healthy path is all ok: certificate admitted (400 NOT_PROXY), --destination allowed (200), the tunnel closed at once', async (t) => {
  const b = await forwardBroker(t);
  const dir = tempDir(t);
  const id = files(dir, 'acme', await b.pki.issue('acme', ['partner']), b.pki.ca);
  const r = await doctor(['--url', b.forwardUrl, ...id, '--destination', `127.0.0.1:${b.dest.port}`], dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.ok, true);
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'ok certificate accepted', 'ok destination']);
  assert.match(r.findings[4]?.message ?? '', /^the forward listener at localhost:\d+ admitted your certificate/);
  assert.match(r.findings[5]?.message ?? '', new RegExp(`^CONNECT 127\\.0\\.0\\.1:${b.dest.port}: 200, the broker opens this tunnel`));
  assert.equal(b.dest.connections(), 1, 'the broker connected to the destination once');
  // the tunnel was closed by doctor: its access line is written when it is over
  const line = await b.logs.waitFor((l) => l.event === 'forward' && l.method === 'CONNECT', 10_000);
  assert.equal(line.principal, 'acme');
  assert.equal(line.outcome, 'ok');
  assert.equal(line.status, 200);

  // without --destination: the listener and the certificate only
  const bare = await doctor(['--url', b.forwardUrl, ...id], dir);
  assert.equal(bare.code, 0, show(bare));
  assert.deepEqual(checks(bare), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'ok certificate accepted']);
});

test('doctor --client --forward: a destination the rules refuse is named with its code and fix: another host (DENIED), another port (PORT); nothing reaches the destination', async (t) => {
  const b = await forwardBroker(t);
  const dir = tempDir(t);
  const id = files(dir, 'acme', await b.pki.issue('acme', ['partner']), b.pki.ca);
  const denied = await doctor(['--url', b.forwardUrl, ...id, '--destination', 'api.elsewhere.example:443'], dir);
  const f = assertProblem(denied, 'destination', /^CONNECT api\.elsewhere\.example:443: no forward rule of your roles names the host .* \(403 BRK_ERR_FORWARD_DENIED, reqId [0-9a-f]+\)$/);
  assert.match(f.fix ?? '', /add the host to forward\.rules/);
  assert.deepEqual(checks(denied), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'ok certificate accepted', 'fail destination']);

  const port = await doctor(['--url', b.forwardUrl, ...id, '--destination', `127.0.0.1:${b.dest.port + 1}`], dir);
  const p = assertProblem(port, 'destination', /\(403 BRK_ERR_FORWARD_PORT, reqId [0-9a-f]+\)$/);
  assert.match(p.fix ?? '', /ports/);
  assert.equal(b.dest.connections(), 0);
  const refused = () => b.logs.lines.filter((l) => l.event === 'forward' && l.method === 'CONNECT').map((l) => `${l.outcome} ${l.code}`);
  await eventually(() => refused().length === 2, 'both CONNECT refusals logged');
  assert.deepEqual(refused(), ['refused BRK_ERR_FORWARD_DENIED', 'refused BRK_ERR_FORWARD_PORT']);
});

test('doctor --client --forward: a certificate from another CA is reported as refused by the forward listener, with the broker\'s reason', async (t) => {
  const b = await forwardBroker(t);
  const other = await makePki(t);
  const dir = tempDir(t);
  // the broker's CA to verify the server; a client certificate the broker's CA never issued
  const id = files(dir, 'stranger', await other.issue('stranger', ['partner']), b.pki.ca);
  const r = await doctor(['--url', b.forwardUrl, ...id, '--destination', `127.0.0.1:${b.dest.port}`], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate: unknown CA \(495 BRK_ERR_TLS_CLIENT_CERT_REFUSED\)$/);
  assert.ok(f.fix, show(r));
  assert.deepEqual(checks(r), ['ok certificate', 'ok dns', 'ok tcp', 'ok tls', 'fail certificate accepted']);
  assert.equal(b.dest.connections(), 0);
});

test('doctor --client --forward: with tls.refusal: close the forward listener ends the connection: refused, reason unknown on this side', async (t) => {
  const b = await forwardBroker(t, { tls: { server: 'localhost', refusal: 'close' } });
  const other = await makePki(t);
  const dir = tempDir(t);
  const id = files(dir, 'stranger', await other.issue('stranger', ['partner']), b.pki.ca);
  const r = await doctor(['--url', b.forwardUrl, ...id], dir);
  const f = assertProblem(r, 'certificate accepted', /^the broker refused your certificate after the handshake: it (reset|closed) the connection without an answer/);
  assert.match(f.fix ?? '', /auth log/);
});

test('doctor --client --forward: nothing listening on the port is "tcp" refused; the main listener in place of the forward one is named as such', async (t) => {
  const b = await forwardBroker(t);
  const dir = tempDir(t);
  const id = files(dir, 'acme', await b.pki.issue('acme', ['partner']), b.pki.ca);
  const dead = await deadPort();
  const r = await doctor(['--url', `https://127.0.0.1:${dead}`, ...id], dir);
  const f = assertProblem(r, 'tcp', new RegExp(`^127\\.0\\.0\\.1:${dead} refused the connection: the port is closed or nothing listens there$`));
  assert.match(f.fix ?? '', /check the URL and port/);

  const main = await doctor(['--url', `https://localhost:${b.port}`, ...id], dir);
  const m = assertProblem(main, 'forward listener', /took your certificate but answered GET \/ with \d{3}.*not as the forward listener does/);
  assert.match(m.fix ?? '', /forward\.listen/);
});

test('doctor --client --forward: usage errors: --destination without --forward, a malformed --destination, --forward without --client', async (t) => {
  const dir = tempDir(t);
  for (const args of [['--client', '--url', 'https://localhost:3129', '--cert', 'a', '--key', 'b', '--destination', 'x:443'], ['--client', '--forward', '--url', 'https://localhost:3129', '--cert', 'a', '--key', 'b', '--destination', 'no-port'], ['--forward']]) {
    const r = await brokerAsync(['doctor', ...args], { cwd: dir, timeoutMs: 30_000 });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_USAGE', r.stderr);
  }
});
