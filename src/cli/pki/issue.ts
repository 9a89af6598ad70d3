import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';

interface Opts extends StoreOptions, HandoutOptions {
  role: string[];
  ttl?: string;
  contact?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('issue'), { json: true })
    .summary('issue a client certificate (and key) for an identity with roles')
    .description('Issue a client certificate for identity NAME carrying its roles (one OU per role). Writes NAME.crt (leaf then issuing CA), NAME.key (0600), ca.crt (root) and, with --p12, NAME.p12. The private key is not kept by the CA. Refuses if NAME already has a valid certificate (use renew).')
    .argument('<name>', 'identity name (letters, digits, ".", "_", "-")')
    .requiredOption('--role <role>', 'a role the identity holds (repeat for more)', collect)
    .option('--ttl <duration>', 'lifetime, e.g. 90d, 12h, 15m', '90d')
    .option('--contact <email>', 'who to tell about this identity (expiry notices, onboarding kit); kept in the inventory');
  handoutOptions(cmd, { p12: true })
    .addHelpText('after', examples('broker pki issue acme-billing --role billing --out ./handout', 'broker pki issue acme-ops --role ops --role billing --ttl 30d --p12 --password-file p12.pass', 'broker pki issue acme-billing --role billing --contact ops@acme.example'))
    .action(async (name: string, opts: Opts) => {
      const store = await openStore(opts);
      const { issueClient } = await import('../../pki/issue.ts');
      const passphrase = await caPassphrase(store, opts);
      const r = await issueClient(store, {
        name,
        roles: opts.role,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(opts.contact === undefined ? {} : { contact: opts.contact }),
        ...(await handout(opts)),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      await printIssued(r, opts);
    });
}
