import type { Command } from 'commander';
import { examples, storeOptions, type StoreOptions } from '../pki/common.ts';

export function register(keys: Command): void {
  storeOptions(keys.command('revoke'), { passphrase: false, json: true })
    .summary('revoke an API key or Basic credential by id or name')
    .description('Mark credentials revoked in keys.json. An id revokes that one credential; a name revokes every credential of that name not yet revoked. A running broker refuses them once it has reloaded keys.json.')
    .argument('<id-or-name>', 'credential id as shown by "broker keys list", or identity name')
    .addHelpText('after', examples('broker keys revoke 3f9c0a1b2d4e', 'broker keys revoke acme-billing --json'))
    .action(async (target: string, opts: StoreOptions) => {
      const [{ revokeKey }, { storeLayout, resolveStoreDir }, out] = await Promise.all([import('../../pki/credentials.ts'), import('../../pki/layout.ts'), import('../output.ts')]);
      const layout = storeLayout(resolveStoreDir(opts.dir));
      const revoked = await revokeKey(layout, target);
      if (opts.json) return out.printJson(revoked);
      out.printLines(...revoked.map((k) => `revoked ${k.kind === 'apiKey' ? 'API key' : 'Basic credential'} ${k.id} of ${k.name}`), `updated ${layout.keys}`);
    });
}
