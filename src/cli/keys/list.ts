import type { Command } from 'commander';
import { examples, storeOptions, type StoreOptions } from '../pki/common.ts';

export function register(keys: Command): void {
  storeOptions(keys.command('list'), { passphrase: false, json: true })
    .summary('every API key and Basic credential with its roles, dates and status')
    .description('List the credentials in keys.json of the store: id, kind (apiKey/basic), name, roles, status (valid/revoked/expired), created and expires. Secrets and hashes are never shown. --json prints an array of those objects.')
    .addHelpText('after', examples('broker keys list', 'broker keys list --dir /etc/broker/pki --json'))
    .action(async (opts: StoreOptions) => {
      const [{ listKeys }, { storeLayout, resolveStoreDir }, out] = await Promise.all([import('../../pki/credentials.ts'), import('../../pki/layout.ts'), import('../output.ts')]);
      const layout = storeLayout(resolveStoreDir(opts.dir));
      const rows = listKeys(layout);
      if (opts.json) return out.printJson(rows);
      if (!rows.length) return out.printLines(`no credentials in ${layout.keys} (create one with "broker keys create NAME --role ROLE")`);
      out.printLines(
        out.table(
          ['ID', 'KIND', 'NAME', 'ROLES', 'STATUS', 'CREATED', 'EXPIRES'],
          rows.map((r) => [r.id, r.kind, r.name, r.roles.join(','), r.status, r.created, r.expires ?? 'never']),
        ),
      );
    });
}
