import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { printIssued } from './handout.ts';

interface Opts extends StoreOptions {
  dns: string[];
  ip: string[];
  ttl?: string;
  out?: string;
  force?: boolean;
}

export function register(pki: Command): void {
  storeOptions(pki.command('server'), { json: true })
    .summary('issue the broker\'s own server certificate (kept in the store)')
    .description('Issue a server certificate (EKU serverAuth) for the broker itself. The certificate and key are kept in the store (servers/NAME.crt, servers/NAME.key) where "broker serve" finds them by NAME; --out also writes a copy.')
    .argument('<name>', 'server certificate name, referenced as tls.server in the config')
    .option('--dns <host>', 'DNS name the broker answers on (repeat for more)', collect, [])
    .option('--ip <addr>', 'IP address the broker answers on (repeat for more)', collect, [])
    .option('--ttl <duration>', 'lifetime, e.g. 90d', '90d')
    .option('--out <dir>', 'also write NAME.crt, NAME.key and ca.crt here')
    .option('--force', 'replace existing files in --out')
    .addHelpText('after', examples('broker pki server broker --dns broker.acme.example', 'broker pki server local --dns localhost --ip 127.0.0.1 --ip ::1 --ttl 30d'))
    .action(async (name: string, opts: Opts) => {
      const store = await openStore(opts);
      const { issueServer } = await import('../../pki/issue.ts');
      const passphrase = await caPassphrase(store, opts);
      const r = await issueServer(store, {
        name,
        dns: opts.dns,
        ip: opts.ip,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(opts.out ? { outDir: opts.out } : {}),
        force: opts.force ?? false,
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      await printIssued(r, opts);
    });
}
