/**
 * The listener's TLS policy, seen from real clients: the system `openssl s_client` (OpenSSL 3.0,
 * no ML-KEM) and Node 24's own TLS (OpenSSL 3.5). TLS 1.3, and TLS 1.2 with ECDHE + AEAD only;
 * server preference; no compression, no resumption, no renegotiation; the post-quantum hybrid
 * group for clients that offer it; a handshake deadline.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { once } from 'node:events';
import { tempDir } from '../helpers/cli.ts';
import { makePki, startBroker, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';

interface Setup {
  pki: TestPki;
  b: RunningBroker;
  id: Identity;
  files: { cert: string; key: string; ca: string };
}

async function setup(t: TestContext, tls: Record<string, unknown> = {}): Promise<Setup> {
  const pki = await makePki(t);
  const b = await startBroker(t, pki, { tls: { server: 'localhost', ...tls } });
  const id = await pki.issue('alice', ['user']);
  const dir = tempDir(t, 'broker-sclient-');
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), ca: join(dir, 'ca.pem') };
  writeFileSync(files.cert, id.cert);
  writeFileSync(files.key, id.key, { mode: 0o600 });
  writeFileSync(files.ca, pki.ca);
  return { pki, b, id, files };
}

/** `openssl s_client` with empty stdin (it handshakes, then closes); stdout and stderr together. */
function sClient(s: Setup, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${s.b.port}`, '-servername', 'localhost', '-cert', s.files.cert, '-key', s.files.key, '-CAfile', s.files.ca, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    child.stderr.on('data', (c: Buffer) => (out += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

const negotiated = (out: string) => /^New, (TLSv1\.[23]), Cipher is (\S+)$/m.exec(out)?.slice(1, 3);

/** The next auth-log handshake line (of this outcome, if given) written after the first `from` lines. */
function nextHandshake(b: RunningBroker, from: number, outcome?: 'ok' | 'refused') {
  return b.logs.waitFor((l) => l.log === 'auth' && l.event === 'handshake' && (outcome === undefined || l.outcome === outcome) && b.logs.lines.indexOf(l) >= from);
}

/**
 * Closes a client connection and waits for it: t.after hooks run first-registered-first, so the
 * broker's close (registered by startBroker) would otherwise wait on connections still open.
 */
async function closed(socket: TLSSocket): Promise<void> {
  if (socket.closed) return;
  const done = once(socket, 'close');
  socket.destroy();
  await done;
}

function nodeConnect(s: Setup, o: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: s.b.port, servername: 'localhost', ca: s.pki.ca, cert: s.id.cert, key: s.id.key, ...o }, () => resolve(socket));
    socket.once('error', reject);
  });
}

test('TLS 1.3 and TLS 1.2 with ECDHE + AEAD suites are accepted', async (t) => {
  const s = await setup(t);
  const cases: Array<{ args: string[]; version: string; cipher: string }> = [
    { args: ['-tls1_3'], version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
    { args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
    { args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'], version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-CHACHA20-POLY1305' },
  ];
  for (const c of cases) {
    const from = s.b.logs.lines.length;
    const r = await sClient(s, c.args);
    assert.deepEqual(negotiated(r.out), [c.version, c.cipher], `${c.args.join(' ')}\n${r.out}`);
    assert.match(r.out, /Verify return code: 0 \(ok\)/);
    const line = await nextHandshake(s.b, from);
    assert.deepEqual({ outcome: line.outcome, principal: line.principal, tlsVersion: line.tlsVersion, cipher: line.cipher }, { outcome: 'ok', principal: 'alice', tlsVersion: c.version, cipher: c.cipher });
  }
});

test('old protocols, CBC suites and suites without ECDHE are refused by the server', async (t) => {
  const s = await setup(t);
  // The client-side library is told to allow what it can (SECLEVEL=0 lets OpenSSL 3.0 send TLS 1.0/1.1),
  // so that the refusal is the server's: an alert received from it, and a line in its auth log.
  const cases: Array<{ args: string[]; alert: RegExp; reason: string }> = [
    { args: ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], alert: /alert protocol version/, reason: 'protocol' },
    { args: ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'], alert: /alert protocol version/, reason: 'protocol' },
    { args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256'], alert: /alert handshake failure/, reason: 'cipher' },
    { args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA'], alert: /alert handshake failure/, reason: 'cipher' },
    { args: ['-tls1_2', '-cipher', 'AES128-GCM-SHA256'], alert: /alert handshake failure/, reason: 'cipher' },
    { args: ['-tls1_2', '-cipher', 'DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CHACHA20-POLY1305'], alert: /alert handshake failure/, reason: 'cipher' },
  ];
  for (const c of cases) {
    const from = s.b.logs.lines.length;
    const r = await sClient(s, c.args);
    const what = `${c.args.join(' ')}\n${r.out}`;
    assert.equal(negotiated(r.out), undefined, what);
    assert.match(r.out, /Cipher is \(NONE\)/, what);
    assert.match(r.out, c.alert, what);
    assert.notEqual(r.code, 0, what);
    const line = await nextHandshake(s.b, from);
    assert.equal(line.outcome, 'refused', what);
    assert.equal(line.reason, c.reason, what);
  }
  // Node's client too, with everything it can offer for TLS 1.0/1.1.
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    await assert.rejects(nodeConnect(s, { minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' }), /alert protocol version|ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION/i, version);
  }
});

test('the server picks its own preferred suite, whatever order the client offers', async (t) => {
  const s = await setup(t);
  const tls12 = await sClient(s, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384']);
  assert.deepEqual(negotiated(tls12.out), ['TLSv1.2', 'ECDHE-ECDSA-AES256-GCM-SHA384'], tls12.out);
  const tls13 = await sClient(s, ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384']);
  assert.deepEqual(negotiated(tls13.out), ['TLSv1.3', 'TLS_AES_256_GCM_SHA384'], tls13.out);
  const node = await nodeConnect(s, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384' });
  const cipher = node.getCipher().name;
  await closed(node);
  assert.equal(cipher, 'ECDHE-ECDSA-AES256-GCM-SHA384');
});

/**
 * A hand-built TLS 1.2 ClientHello that offers DEFLATE (1) before null (0) compression. Neither
 * s_client here (built without zlib) nor Node can offer compression, so this is the only way to
 * ask for it. Returns the compression method of the ServerHello.
 */
function compressionChosen(port: number): Promise<number> {
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
  const ext = (type: number, body: Buffer) => Buffer.concat([u16(type), vec16(body)]);
  const host = Buffer.from('localhost');
  const extensions = Buffer.concat([
    ext(0x0000, vec16(Buffer.concat([Buffer.from([0]), vec16(host)]))), // server_name
    ext(0x000a, vec16(Buffer.from([0x00, 0x1d, 0x00, 0x17]))), // supported_groups: x25519, secp256r1
    ext(0x000b, Buffer.from([1, 0])), // ec_point_formats: uncompressed
    ext(0x000d, vec16(Buffer.from([0x04, 0x03, 0x05, 0x03, 0x08, 0x04]))), // signature_algorithms
    ext(0xff01, Buffer.from([0])), // renegotiation_info (empty)
  ]);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // no session id
    vec16(Buffer.from([0xc0, 0x2b, 0xc0, 0x2c, 0xcc, 0xa9])), // ECDHE-ECDSA AES128-GCM, AES256-GCM, CHACHA20
    Buffer.from([2, 1, 0]), // compression methods: DEFLATE, null
    vec16(extensions),
  ]);
  const handshake = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  const record = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), vec16(handshake)]);
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(record));
    let got = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length < 5 + 4 + 2 + 32 + 1) return;
      if (got[0] !== 0x16 || got[5] !== 2) return void (socket.destroy(), reject(new Error(`not a ServerHello: ${got.subarray(0, 16).toString('hex')}`)));
      const sidLen = got[5 + 4 + 2 + 32]!;
      const at = 5 + 4 + 2 + 32 + 1 + sidLen + 2;
      if (got.length <= at) return;
      socket.destroy();
      resolve(got[at]!);
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('closed before a ServerHello')));
  });
}

test('no TLS compression, even when the client offers DEFLATE', async (t) => {
  const s = await setup(t);
  for (const v of ['-tls1_2', '-tls1_3']) {
    const r = await sClient(s, [v]);
    assert.ok(negotiated(r.out), r.out);
    assert.match(r.out, /^Compression: NONE$/m);
  }
  assert.equal(await compressionChosen(s.b.port), 0);
});

test('no session ticket in TLS 1.2, and no resumption in either version', async (t) => {
  const s = await setup(t);
  // TLS 1.2 sends its NewSessionTicket inside the handshake, so s_client reports it deterministically.
  const r = await sClient(s, ['-tls1_2']);
  assert.deepEqual(negotiated(r.out)?.[0], 'TLSv1.2', r.out);
  assert.doesNotMatch(r.out, /TLS session ticket:/);
  assert.doesNotMatch(r.out, /TLS session ticket lifetime hint/);

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const first = await nodeConnect(s, { maxVersion: version, minVersion: version });
    // TLS 1.2 has its session at once. TLS 1.3 delivers it after the handshake ('session'): with
    // SSL_OP_NO_TICKET OpenSSL still sends TLS 1.3 tickets, but stateful ones (a session id), and a
    // Node server keeps no session cache unless it listens for 'newSession', so they cannot resume.
    // Node offers no way to send zero TLS 1.3 tickets (SSL_CTX_set_num_tickets).
    const session = version === 'TLSv1.3' ? ((await once(first, 'session')) as [Buffer])[0] : first.getSession();
    await closed(first);
    assert.ok(session, `${version}: a session to offer`);
    const from = s.b.logs.lines.length;
    const second = await nodeConnect(s, { maxVersion: version, minVersion: version, session });
    const reused = second.isSessionReused();
    // The server finishes a TLS 1.3 handshake after the client: wait for its verdict before closing.
    const line = await nextHandshake(s.b, from, 'ok');
    await closed(second);
    assert.equal(reused, false, `${version}: session resumed`);
    assert.equal(line.resumed, false);
  }
});

test('renegotiation is refused on TLS 1.2', async (t) => {
  const s = await setup(t);
  const socket = await nodeConnect(s, { maxVersion: 'TLSv1.2' });
  assert.equal(socket.getProtocol(), 'TLSv1.2');
  const refused = new Promise<Error & { code?: string }>((resolve) => {
    socket.once('error', resolve);
    socket.renegotiate({ rejectUnauthorized: true }, (err) => err && resolve(err));
  });
  const err = await refused;
  await closed(socket);
  assert.match(`${err.code} ${err.message}`, /NO_RENEGOTIATION|no renegotiation/i);
});

test('the post-quantum hybrid group for a client that offers it, X25519 for OpenSSL 3.0', async (t) => {
  const s = await setup(t);
  // The client offers only the hybrid group: connecting at all proves the server accepts it.
  const pq = await nodeConnect(s, { ecdhCurve: 'X25519MLKEM768' });
  const facts = { protocol: pq.getProtocol(), group: (pq.getEphemeralKeyInfo() as { name?: string } | null)?.name };
  await closed(pq);
  assert.deepEqual(facts, { protocol: 'TLSv1.3', group: 'X25519MLKEM768' });

  const r = await sClient(s, ['-tls1_3']);
  assert.ok(negotiated(r.out), r.out);
  assert.match(r.out, /^Server Temp Key: X25519, 253 bits$/m);
});

test('a TCP client that never starts the handshake is dropped at tls.handshakeTimeout', async (t) => {
  const s = await setup(t, { handshakeTimeout: '500ms' });
  const socket = netConnect(s.b.port, '127.0.0.1');
  t.after(() => void socket.destroy());
  await once(socket, 'connect');
  const closed = once(socket, 'close');
  const line = await s.b.logs.waitFor((l) => l.log === 'auth' && l.reason === 'handshake timeout', 10_000);
  assert.equal(line.outcome, 'refused');
  assert.equal(line.detail, 'ERR_TLS_HANDSHAKE_TIMEOUT');
  // A deadline on the wait, not a measurement: the server must close it, not merely log it.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('socket still open 10 s after the handshake timeout')), 10_000)))]).finally(() => clearTimeout(timer));
  assert.equal(socket.bytesRead, 0);
});
