import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  dir: string;
  port: string;
}

/**
 * The README's first command. On a fresh clone: a demo CA (keys unencrypted: demo only), a server
 * certificate for localhost, a client identity "demo-client" with role "demo", a demo upstream
 * that echoes what it receives, and the broker in front of it, with the curl commands to try.
 * Safe to run again: everything already made is reused.
 */
/** Long enough that the demo identities do not set off the expiry alerts (30d, 14d) on a first run. */
const DEMO_TTL_MS = 90 * 86_400_000;

const PORT_HINT = 'pick another --port (0 picks a free one) or stop the process that holds it';

/** Throws BRK_ERR_LISTEN when HOST:PORT cannot be bound (taken, or not allowed). */
async function portFree(host: string, port: number): Promise<void> {
  const [{ createServer }, { BrokerError }] = await Promise.all([import('node:net'), import('../errors.ts')]);
  const probe = createServer();
  await new Promise<void>((ok, fail) => {
    probe.once('error', fail);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => ok()));
  }).catch((cause: NodeJS.ErrnoException) => {
    throw new BrokerError('BRK_ERR_LISTEN', `cannot listen on ${host}:${port}: ${cause.code ?? cause.message}`, { cause, hint: PORT_HINT });
  });
}

export function register(program: Command): void {
  program
    .command('demo')
    .summary('try it: demo CA, client certificate, upstream and a running broker')
    .description('Create (or reuse) a demo CA in DIR/pki with keys NOT encrypted, a server certificate for localhost and a client identity "demo-client" (role "demo"), start a demo upstream and the broker in front of it (config in DIR/broker.yaml), and print the curl commands to try. Ctrl-C stops it. For trying the broker only.')
    .option('--dir <dir>', 'folder for the demo store, hand-out files and config', 'demo')
    .option('--port <port>', 'port for the broker (0 picks a free one)', '8443')
    .addHelpText('after', examples('broker demo', 'broker demo --dir /tmp/broker-demo --port 9443'))
    .action(async (opts: Opts) => {
      const { BrokerError } = await import('../errors.ts');
      const port = Number(opts.port);
      if (!/^\d{1,5}$/.test(opts.port) || port > 65535) throw new BrokerError('BRK_ERR_USAGE', `--port ${opts.port} is not a port number from 0 to 65535`);
      // A taken port is said at once, before a CA is made or anything started.
      if (port !== 0) await portFree('127.0.0.1', port);
      const [{ initCa }, { CaStore, caExists }, { storeLayout }, { issueClient, issueServer }, { statusOf }, out, { join, resolve }, { writeFileSync }, { createServer }, cfg, { buildBroker }, { stringify }, { listenOrExplain }] = await Promise.all([
        import('../pki/init.ts'),
        import('../pki/store.ts'),
        import('../pki/layout.ts'),
        import('../pki/issue.ts'),
        import('../pki/inventory.ts'),
        import('./output.ts'),
        import('node:path'),
        import('node:fs'),
        import('node:http'),
        import('../config/index.ts'),
        import('../server.ts'),
        import('yaml'),
        import('./listen.ts'),
      ]);
      const dir = resolve(opts.dir);
      const storeDir = join(dir, 'pki');
      const handout = join(dir, 'client');
      if (!caExists(storeLayout(storeDir))) {
        await initCa({ dir: storeDir, name: 'Broker Demo CA', keyType: 'ec-p256', trustDomain: 'demo.broker.local', passphrase: undefined });
        out.printLines(`created a demo CA in ${storeDir} (keys unencrypted: demo only)`);
      }
      const store = CaStore.open(storeDir);
      const has = (name: string) => store.readInventory().certs.some((c) => c.name === name && statusOf(c) === 'valid');
      if (!has('localhost')) await issueServer(store, { name: 'localhost', dns: ['localhost'], ip: ['127.0.0.1', '::1'], ttlMs: DEMO_TTL_MS });
      if (!has('demo-client')) {
        await issueClient(store, { name: 'demo-client', roles: ['demo'], ttlMs: DEMO_TTL_MS, outDir: handout, force: true, p12Password: 'demo', savePassword: false });
      }

      // The demo upstream: answers with what it was sent, identity headers included.
      const upstream = createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        const who = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-client-') || k === 'x-forwarded-client-cert'));
        res.end(`${JSON.stringify({ hello: req.headers['x-client-name'], path: req.url, headersFromBroker: who }, null, 2)}\n`);
      });
      await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
      const upstreamPort = (upstream.address() as { port: number }).port;
      // From here on a failure must close the upstream too, or its socket keeps the process alive.
      const stopUpstream = () => new Promise<void>((done) => upstream.close(() => done()));
      try {
        const raw = {
          listen: { host: '127.0.0.1', port },
          admin: { port: 0 },
          pki: { dir: './pki' },
          tls: { server: 'localhost' },
          routes: [
            { name: 'hello', path: '/hello', upstream: `http://127.0.0.1:${upstreamPort}`, roles: ['demo'] },
            { name: 'admin', path: '/admin', upstream: `http://127.0.0.1:${upstreamPort}`, roles: ['admin'] },
          ],
        };
        writeFileSync(join(dir, 'broker.yaml'), `# written by "broker demo"; the upstream port changes on every run\n${stringify(raw)}`);
        const { config, problems } = cfg.validateConfig(raw, dir);
        if (!config) throw new Error(`demo config invalid: ${problems.join('; ')}`);
        const broker = await buildBroker(config);
        const { port: bound } = await listenOrExplain(broker, config, PORT_HINT);
        const rel = (p: string) => {
          const r = p.startsWith(`${process.cwd()}/`) ? p.slice(process.cwd().length + 1) : p;
          return r.includes(' ') ? `"${r}"` : r;
        };
        const curl = `curl --cacert ${rel(store.layout.caCert)} --cert ${rel(join(handout, 'demo-client.crt'))} --key ${rel(join(handout, 'demo-client.key'))}`;
        out.printLines(
          '',
          `broker listening on https://localhost:${bound} (demo upstream on 127.0.0.1:${upstreamPort}); Ctrl-C stops both`,
          '',
          'allowed (demo-client holds role "demo"):',
          `  ${curl} https://localhost:${bound}/hello`,
          'refused with 403 (route /admin needs role "admin"):',
          `  ${curl} https://localhost:${bound}/admin`,
          'refused in the TLS handshake (no client certificate):',
          `  curl --cacert ${rel(store.layout.caCert)} https://localhost:${bound}/hello`,
          '',
          `logs: one JSON line per handshake and request below. Config: ${rel(join(dir, 'broker.yaml'))}; identity: ${rel(handout)}/`,
          '',
        );
        await new Promise<void>((done) => {
          const stop = () => {
            broker.close().finally(() => upstream.close(() => done()));
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      } catch (err) {
        await stopUpstream();
        throw err;
      }
    });
}
