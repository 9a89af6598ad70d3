import type { Command } from 'commander';
import { collect, examples, storeOptions, type StoreOptions } from '../pki/common.ts';

interface Opts extends StoreOptions {
  role?: string[];
  expires?: string;
  basic?: boolean;
}

export function register(keys: Command): void {
  storeOptions(keys.command('create'), { passphrase: false, json: true })
    .summary('create an API key (or a Basic credential) for an identity with roles')
    .description('Create a credential for identity NAME carrying its roles, kept in keys.json of the store. An API key (brk_<id>_<secret>) is printed once, alone on its own line; with --basic the user name is NAME and a generated password is printed once. The store keeps only a salted scrypt hash. No CA passphrase is needed.')
    .argument('<name>', 'identity name (letters, digits, ".", "_", "-")')
    .option('--role <role>', 'a role the identity holds (repeat for more; at least one)', collect)
    .option('--expires <duration>', 'lifetime, e.g. 30d, 12h, or "never" (default: 90d, like a certificate)', '90d')
    .option('--basic', 'a Basic credential (user NAME, generated password) for legacy clients instead of an API key')
    .addHelpText('after', examples('broker keys create acme-billing --role billing', 'broker keys create acme-billing --role billing --expires 30d', 'broker keys create legacy-erp --role orders --basic --json', 'broker keys create lab-tool --role test --expires never'))
    .action(async (name: string, opts: Opts) => {
      const [{ createKey }, { storeLayout, resolveStoreDir }, { parseDuration }, { BrokerError }, out] = await Promise.all([
        import('../../pki/credentials.ts'),
        import('../../pki/layout.ts'),
        import('../../config/duration.ts'),
        import('../../errors.ts'),
        import('../output.ts'),
      ]);
      if (!opts.role?.length) throw new BrokerError('BRK_ERR_USAGE', 'give at least one --role; a credential without roles can reach nothing');
      let expiresMs: number | undefined;
      if (opts.expires !== undefined && opts.expires !== 'never') {
        expiresMs = parseDuration(opts.expires, '--expires');
        if (expiresMs < 60_000) throw new BrokerError('BRK_ERR_USAGE_TTL', `--expires ${opts.expires} is shorter than 1 minute`);
      }
      const layout = storeLayout(resolveStoreDir(opts.dir));
      const kind = opts.basic ? 'basic' : 'apiKey';
      const { record, secret } = await createKey(layout, { name, roles: opts.role, kind, ...(expiresMs === undefined ? {} : { expiresMs }) });
      if (opts.json) return out.printJson(kind === 'apiKey' ? { ...record, key: secret } : { ...record, username: record.name, password: secret });
      const what = kind === 'apiKey' ? 'API key' : 'Basic credential';
      const head = `created ${what} ${record.id} for ${record.name} (roles: ${record.roles.join(', ')}; ${record.expires ? `expires ${record.expires}` : 'never expires'}) in ${layout.keys}`;
      if (kind === 'apiKey') return out.printLines(head, secret, 'this key is shown only once: store it now (the broker keeps only a hash of it)');
      out.printLines(head, `username: ${record.name}`, `password: ${secret}`, 'the password is shown only once: store it now (the broker keeps only a hash of it)');
    });
}
