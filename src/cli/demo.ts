import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  dir: string;
}

/**
 * The README's first command: a local CA (unencrypted, demo only), a server certificate for
 * localhost and a demo client identity, then what to run next. Safe to run again.
 */
export function register(program: Command): void {
  program
    .command('demo')
    .summary('try it: a demo CA, a server certificate and a client identity in ./demo')
    .description('Create (or reuse) a demo CA store with keys NOT encrypted, a server certificate for localhost and a client identity "demo-client" with role "demo", and show how to check them. For trying the broker only.')
    .option('--dir <dir>', 'folder for the demo store and hand-out files', 'demo')
    .addHelpText('after', examples('broker demo', 'broker demo --dir /tmp/broker-demo'))
    .action(async (opts: Opts) => {
      const [{ initCa }, { CaStore, caExists }, { storeLayout }, { issueClient, issueServer }, { statusOf }, out, { join }] = await Promise.all([
        import('../pki/init.ts'),
        import('../pki/store.ts'),
        import('../pki/layout.ts'),
        import('../pki/issue.ts'),
        import('../pki/inventory.ts'),
        import('./output.ts'),
        import('node:path'),
      ]);
      const storeDir = join(opts.dir, 'pki');
      const handout = join(opts.dir, 'client');
      if (!caExists(storeLayout(storeDir))) {
        await initCa({ dir: storeDir, name: 'Broker Demo CA', keyType: 'ec-p256', trustDomain: 'demo.broker.local', passphrase: undefined });
        out.printLines(`created a demo CA in ${storeDir} (keys unencrypted: demo only)`);
      } else {
        out.printLines(`reusing the demo CA in ${storeDir}`);
      }
      const store = CaStore.open(storeDir);
      const has = (name: string) => store.readInventory().certs.some((c) => c.name === name && statusOf(c) === 'valid');
      if (!has('localhost')) await issueServer(store, { name: 'localhost', dns: ['localhost'], ip: ['127.0.0.1', '::1'], ttlMs: 30 * 86_400_000 });
      if (!has('demo-client')) {
        await issueClient(store, { name: 'demo-client', roles: ['demo'], ttlMs: 30 * 86_400_000, outDir: handout, force: true, p12Password: 'demo', savePassword: false });
      }
      out.printLines(
        `server certificate  ${store.layout.serverCert('localhost')}`,
        `client identity     ${join(handout, 'demo-client.crt')} + .key + .p12 (password "demo"), role "demo"`,
        '',
        'check the client certificate the way a TLS server would (chain + CRLs):',
        `  openssl verify -CAfile ${store.layout.caCert} -untrusted ${store.layout.intermediateCert} -crl_check_all -CRLfile ${store.layout.crlBundle} -purpose sslclient ${join(handout, 'demo-client.crt')}`,
        'see the inventory, revoke, and check again:',
        `  npx broker pki list --dir ${storeDir}`,
        `  npx broker pki revoke demo-client --dir ${storeDir}`,
        `  npx broker pki inspect ${join(handout, 'demo-client.crt')} --dir ${storeDir}`,
      );
    });
}
