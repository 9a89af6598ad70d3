import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';

interface Opts extends StoreOptions, HandoutOptions {
  ttl?: string;
  csr?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('renew'), { json: true })
    .summary('new key and certificate for an existing identity (old one stays valid)')
    .description('Issue a new certificate for NAME with the same type, roles and SANs, and a new key (or the key of --csr). The previous certificate stays valid until it expires or is revoked, so the new one can be rolled out first. Server certificates are replaced in the store.')
    .argument('<name>', 'identity or server certificate name')
    .option('--ttl <duration>', 'lifetime, e.g. 90d', '90d')
    .option('--csr <file>', 'certify the key of this request instead of making a new key');
  handoutOptions(cmd, { p12: true })
    .addHelpText('after', examples('broker pki renew acme-billing --out ./handout --p12', 'broker pki renew globex --csr globex-2027.csr'))
    .action(async (name: string, opts: Opts, command: Command) => {
      const store = await openStore(opts);
      const [{ renew }, { readBytes }] = await Promise.all([import('../../pki/issue.ts'), import('../../pki/files.ts')]);
      const passphrase = await caPassphrase(store, opts);
      // Only an explicit --out is passed on: a client renewal still defaults to ".", but a server
      // renewal must not drop a copy of the server's private key into the current folder.
      const { outDir, ...rest } = await handout(opts);
      const r = await renew(store, {
        name,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(opts.csr ? { csr: readBytes(opts.csr, 'certificate request'), csrFile: opts.csr } : {}),
        ...rest,
        ...(command.getOptionValueSource('out') === 'default' ? {} : { outDir }),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      await printIssued(r, opts);
    });
}
