/**
 * Hot reload without downtime: three identities keep sending requests over keep-alive connections
 * while the server certificate is renewed, the issuing CA is rotated with an overlap, a changed
 * config is loaded and broken configs are pushed (and refused); not one of their requests fails. A refused reload (a key that does not
 * match, an expired certificate) keeps the old certificate, says why and is counted; a request
 * already running when the generation changes finishes on the one it started with.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { validateConfig, type BrokerConfig } from '../../src/config/index.ts';
import { renew } from '../../src/pki/issue.ts';
import { rotateIntermediate } from '../../src/pki/rotate.ts';
import { LENIENT, makePki, request, startBroker, startUpstream, type Identity, type RunningBroker, type TestPki } from '../helpers/broker.ts';
import { tempDir } from '../helpers/cli.ts';
import { within } from '../helpers/within.ts';

/** The config startBroker would make of `raw`: what a reload is handed. */
function configFor(pki: TestPki, raw: Record<string, unknown>): BrokerConfig {
  const { config, problems } = validateConfig({ listen: { host: '127.0.0.1', port: 0 }, admin: { port: 0 }, pki: { dir: pki.dir }, tls: { server: 'localhost' }, ...LENIENT, ...raw }, pki.dir);
  if (!config) throw new Error(`test config invalid:\n${problems.join('\n')}`);
  return config;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One GET through a keep-alive agent (the agent carries the client certificate). */
function get(agent: Agent, port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, path, agent, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

const keepAlive = (ca: string, id: Identity) => new Agent({ keepAlive: true, maxSockets: 2, ca, cert: id.cert, key: id.key });

/** The serial of the server certificate a new connection is shown (lower-case hex). */
function serverSerial(port: number, ca: string, id: Identity): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca, cert: id.cert, key: id.key }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

interface LoadClient {
  name: string;
  agent: Agent;
  done: number;
  failures: string[];
}

/**
 * Each identity sends GETs back to back on its own keep-alive agent (2 sockets, so 2 loops), until
 * stopped or `cap` requests per loop. `progress(n)` resolves once every identity has completed `n`
 * more: the test's actions happen while the load is running, whatever the machine's speed.
 */
function startLoad(t: TestContext, port: number, ca: string, ids: Record<string, Identity>, path: string, cap = 5_000) {
  let stopped = false;
  const listeners = new Set<() => void>();
  const clients: LoadClient[] = Object.entries(ids).map(([name, id]) => ({ name, agent: keepAlive(ca, id), done: 0, failures: [] }));
  const loop = async (c: LoadClient) => {
    for (let i = 0; i < cap && !stopped; i++) {
      try {
        const r = await get(c.agent, port, `${path}/${c.name}/${i}`);
        if (r.status !== 200) c.failures.push(`${r.status} ${r.text}`);
      } catch (err) {
        c.failures.push(String(err));
      }
      c.done++;
      for (const l of [...listeners]) l();
    }
  };
  const running = Promise.all(clients.flatMap((c) => [loop(c), loop(c)]));
  t.after(() => {
    stopped = true;
    for (const c of clients) c.agent.destroy();
  });
  return {
    clients,
    progress(more: number, what: string): Promise<void> {
      const target = clients.map((c) => c.done + more);
      return within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (!clients.every((c, i) => c.done >= (target[i] as number))) return;
            listeners.delete(check);
            resolve();
          };
          listeners.add(check);
          check();
        }),
        30_000,
        `${more} more requests per identity ${what}`,
      ).finally(() => listeners.clear());
    },
    async stop(): Promise<void> {
      stopped = true;
      await running;
    },
  };
}

const failedReloadLines = (b: RunningBroker) => b.logs.of('error').filter((l) => l.event === 'reload' && l.outcome === 'failed');

/** `broker_reloads_total{outcome}` from the broker's registry (0 before the first). */
async function reloads(b: RunningBroker, outcome: 'ok' | 'failed'): Promise<number> {
  const text = await b.broker.metrics.registry.metrics();
  const m = new RegExp(`^broker_reloads_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('steady keep-alive load from three identities: a renewed server certificate, a rotated issuing CA, a changed config and refused bad configs fail none of their requests', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const routes = [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }];
  const b = await startBroker(t, pki, { routes, rateLimit: { rate: 1_000_000, per: '1s', burst: 900_000 } });
  const ids = { alice: await pki.issue('alice', ['user']), bob: await pki.issue('bob', ['user']), carol: await pki.issue('carol', ['user']) };
  const probe = await pki.issue('probe', ['user']);
  const firstSerial = await serverSerial(b.port, pki.ca, probe);
  const okBefore = await reloads(b, 'ok');
  const failedBefore = await reloads(b, 'failed');

  // A listener left behind per request on a kept-alive connection shows up as this warning.
  const warnings: Error[] = [];
  const onWarning = (w: Error) => void (w.name === 'MaxListenersExceededWarning' && warnings.push(w));
  process.on('warning', onWarning);
  t.after(() => void process.off('warning', onWarning));

  const load = startLoad(t, b.port, pki.ca, ids, '/api/load');
  await load.progress(20, 'before the first reload');

  // (a) the server certificate is renewed in the store; a reload of the same config picks it up.
  const renewed = await renew(pki.store, { name: 'localhost', ttlMs: 86_400_000 });
  const a = await b.broker.reload();
  assert.deepEqual(a.problems, []);
  assert.equal(a.ok, true);
  const secondSerial = await serverSerial(b.port, pki.ca, probe);
  assert.notEqual(secondSerial, firstSerial);
  assert.equal(secondSerial, renewed.record.serial.toLowerCase(), 'a new connection is shown the renewed certificate');
  await load.progress(20, 'after the certificate reload');

  // (a2) the issuing CA is rotated with an overlap: the load's certificates (from the old one) keep
  // working, and a certificate from the new one is admitted once the broker reloads.
  const rotation = await rotateIntermediate(pki.store, { overlapMs: 86_400_000 });
  const fresh = await pki.issue('fresh', ['user']);
  assert.equal((await request(b.port, { id: fresh, ca: pki.ca, path: '/api/fresh' })).status, 495, 'the new issuing CA is unknown until the reload');
  const rotated = await b.broker.reload();
  assert.deepEqual(rotated.problems, []);
  assert.equal(rotated.ok, true);
  assert.equal((await request(b.port, { id: fresh, ca: pki.ca, path: '/api/fresh' })).status, 200, `a certificate from the new issuing CA ${rotation.serial}`);
  assert.equal((await request(b.port, { id: probe, ca: pki.ca, path: '/api/probe' })).status, 200, `a certificate from the old issuing CA ${rotation.previous}`);
  await load.progress(20, 'after the issuing CA rotation');

  // (b) a config with one more route and a different rate limit.
  const routesB = [...routes, { name: 'added', path: '/added', upstream: up.url, roles: ['user'] }];
  const changed = await b.broker.reload(configFor(pki, { routes: routesB, rateLimit: { rate: 1_000_000, per: '1s', burst: 800_000 } }));
  assert.deepEqual(changed.problems, []);
  assert.equal(changed.ok, true);
  assert.deepEqual(changed.restartNeeded, []);
  const added = await request(b.port, { id: probe, ca: pki.ca, path: '/added/1' });
  assert.equal(added.status, 200, added.text);
  assert.equal(added.headers['ratelimit-limit'], '800000', 'the new rate limit is in force');
  await load.progress(20, 'after the config reload');

  // (c) bad configs: refused, said, and the previous config (b) keeps serving.
  const caFile = join(tempDir(t), 'upstream-ca.pem');
  writeFileSync(caFile, pki.ca);
  const withCa = configFor(pki, { routes: [...routesB, { name: 'secure', path: '/secure', upstream: 'https://127.0.0.1:1', roles: ['user'], upstreamTls: { ca: caFile } }] });
  rmSync(caFile); // gone between the check and the reload
  const bad: Array<[string, BrokerConfig, RegExp]> = [
    ['an upstream CA file that does not exist', withCa, /upstream-ca\.pem/],
    ['a server name missing from the store', configFor(pki, { routes: routesB, tls: { server: 'nosuch' } }), /server certificate: cannot read .*nosuch\.crt/],
  ];
  for (const [what, config, reason] of bad) {
    const lines = failedReloadLines(b).length;
    const r = await b.broker.reload(config);
    assert.equal(r.ok, false, what);
    assert.match(r.problems.join('\n'), reason, what);
    const line = failedReloadLines(b)[lines];
    assert.ok(line, `an error line for ${what}`);
    assert.match((line.problems as string[]).join('\n'), reason);
    const still = await request(b.port, { id: probe, ca: pki.ca, path: '/added/2' });
    assert.equal(still.status, 200, `${what}: ${still.text}`);
    assert.equal(still.headers['ratelimit-limit'], '800000', `${what}: config (b) still in force`);
    assert.equal(await serverSerial(b.port, pki.ca, probe), secondSerial, `${what}: same certificate`);
    await load.progress(20, `after refusing ${what}`);
  }

  await load.stop();
  for (const c of load.clients) {
    assert.deepEqual(c.failures, [], `${c.name}: no failed request`);
    assert.ok(c.done >= 100, `${c.name} sent ${c.done} requests`);
  }
  assert.deepEqual(warnings.map((w) => w.message), [], 'no listener piles up on a kept-alive connection');
  assert.equal(await reloads(b, 'ok'), okBefore + 3);
  assert.equal(await reloads(b, 'failed'), failedBefore + 2);
  const reasons = b.logs.of('audit').filter((l) => l.event === 'reload').map((l) => l.outcome);
  assert.deepEqual(reasons, ['ok', 'ok', 'ok', 'failed', 'failed']);
});

test('a reload with a key that does not match its certificate, or with an expired certificate, is refused with the reason; the old certificate keeps serving', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const routes = [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }];
  const b = await startBroker(t, pki, { routes });
  const alice = await pki.issue('alice', ['user']);
  const agent = keepAlive(pki.ca, alice);
  t.after(() => agent.destroy());
  assert.equal((await get(agent, b.port, '/api/0')).status, 200);
  const serial = await serverSerial(b.port, pki.ca, alice);
  const okBefore = await reloads(b, 'ok');
  const failedBefore = await reloads(b, 'failed');

  const dir = tempDir(t);
  const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
  const other = await pki.issue('other', ['user']);
  const day = 86_400_000;
  const expired = await pki.custom({ name: 'localhost', kind: 'server', notBefore: new Date(Date.now() - 2 * day), notAfter: new Date(Date.now() - day) });
  const cases: Array<[string, { cert: string; key: string }, RegExp]> = [
    ['a key that does not match', { cert: file('server.crt', readFileSync(pki.store.layout.serverCert('localhost'), 'utf8')), key: file('other.key', other.key) }, /server key: .*other\.key does not match the certificate/],
    ['an expired certificate', { cert: file('expired.crt', expired.cert), key: file('expired.key', expired.key) }, /server certificate: .*expired\.crt expired on/],
  ];
  for (const [what, tls, reason] of cases) {
    const r = await b.broker.reload(configFor(pki, { routes, tls }));
    assert.equal(r.ok, false, what);
    assert.match(r.problems.join('\n'), reason, what);
    const line = await b.logs.waitFor((l) => l.log === 'error' && l.event === 'reload' && l.outcome === 'failed' && reason.test((l.problems as string[]).join('\n')));
    assert.equal(line.trigger, 'api');
    assert.equal((await get(agent, b.port, '/api/1')).status, 200, `${what}: the open connection still serves`);
    assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/api/2' })).status, 200, `${what}: a new connection still serves`);
    assert.equal(await serverSerial(b.port, pki.ca, alice), serial, `${what}: the old certificate is still shown`);
  }
  assert.equal(await reloads(b, 'failed'), failedBefore + 2);
  assert.equal(await reloads(b, 'ok'), okBefore);

  const good = await b.broker.reload();
  assert.equal(good.ok, true, good.problems.join('\n'));
  assert.equal(await reloads(b, 'ok'), okBefore + 1);
});

test('a request running when the config is reloaded finishes on the generation it started with', async (t) => {
  const pki = await makePki(t);
  const held: Array<() => void> = [];
  const arrivals = new EventEmitter();
  const up = await startUpstream(t, (s, res) => {
    if (!s.url.startsWith('/api/hold')) return void res.end('quick');
    held.push(() => res.end('held done'));
    arrivals.emit('held');
  });
  t.after(() => held.forEach((release) => release()));
  const routes = [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }];
  const b = await startBroker(t, pki, { routes });
  const alice = await pki.issue('alice', ['user']);

  const arrived = once(arrivals, 'held');
  const pending = request(b.port, { id: alice, ca: pki.ca, path: '/api/hold' });
  await within(arrived, 10_000, 'the held request reaching the upstream');
  const generation = b.broker.generation;
  const r = await b.broker.reload(configFor(pki, { routes: [...routes, { name: 'added', path: '/added', upstream: up.url, roles: ['user'] }] }));
  assert.equal(r.ok, true, r.problems.join('\n'));
  assert.notEqual(b.broker.generation, generation, 'a new generation answers new requests');
  assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: '/added/x' })).status, 200);

  for (const release of held.splice(0)) release();
  const answer = await within(pending, 10_000, 'the held request');
  assert.equal(answer.status, 200);
  assert.equal(answer.text, 'held done');
});
