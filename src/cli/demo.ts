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
export function register(program: Command): void {
  program
    .command('demo')
    .summary('try it: demo CA, client certificate, upstream and a running broker')
    .description('Create (or reuse) a demo CA in DIR/pki with keys NOT encrypted, a server certificate for localhost and a client identity "demo-client" (role "demo"), start a demo upstream and the broker in front of it (config in DIR/broker.yaml), and print the curl commands to try. Ctrl-C stops it. For trying the broker only.')
    .option('--dir <dir>', 'folder for the demo store, hand-out files and config', 'demo')
    .option('--port <port>', 'port for the broker (0 picks a free one)', '8443')
    .addHelpText('after', examples('broker demo', 'broker demo --dir /tmp/broker-demo --port 9443'))
    .action(async (opts: Opts) => {
      const [{ initCa }, { CaStore, caExists }, { storeLayout }, { issueClient, issueServer }, { statusOf }, out, { join, resolve }, { writeFileSync }, { createServer }, cfg, { buildBroker }, { stringify }] = await Promise.all([
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
      if (!has('localhost')) await issueServer(store, { name: 'localhost', dns: ['localhost'], ip: ['127.0.0.1', '::1'], ttlMs: 30 * 86_400_000 });
      if (!has('demo-client')) {
        await issueClient(store, { name: 'demo-client', roles: ['demo'], ttlMs: 30 * 86_400_000, outDir: handout, force: true, p12Password: 'demo', savePassword: false });
      }

      // The demo upstream: answers with what it was sent, identity headers included.
      const upstream = createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        const who = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-client-') || k === 'x-forwarded-client-cert'));
        res.end(`${JSON.stringify({ hello: req.headers['x-client-name'], path: req.url, headersFromBroker: who }, null, 2)}\n`);
      });
      await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
      const upstreamPort = (upstream.address() as { port: number }).port;

      const raw = {
        listen: { host: '127.0.0.1', port: Number(opts.port) },
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
      const { port } = await broker.listen();
      const rel = (p: string) => {
        const r = p.startsWith(`${process.cwd()}/`) ? p.slice(process.cwd().length + 1) : p;
        return r.includes(' ') ? `"${r}"` : r;
      };
      const curl = `curl --cacert ${rel(store.layout.caCert)} --cert ${rel(join(handout, 'demo-client.crt'))} --key ${rel(join(handout, 'demo-client.key'))}`;
      out.printLines(
        '',
        `broker listening on https://localhost:${port} (demo upstream on 127.0.0.1:${upstreamPort}); Ctrl-C stops both`,
        '',
        'allowed (demo-client holds role "demo"):',
        `  ${curl} https://localhost:${port}/hello`,
        'refused with 403 (route /admin needs role "admin"):',
        `  ${curl} https://localhost:${port}/admin`,
        'refused in the TLS handshake (no client certificate):',
        `  curl --cacert ${rel(store.layout.caCert)} https://localhost:${port}/hello`,
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
    });
}
