import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { printIssued } from './handout.ts';

interface Opts extends StoreOptions {
  ttl?: string;
  dryRun?: boolean;
}

export function register(pki: Command): void {
  const rotate = pki.command('rotate').summary('planned key rotation').description('Rotate keys with a plan printed before acting; --dry-run prints the plan only.');
  storeOptions(rotate.command('server'), { json: true })
    .summary('new key and certificate for a broker server certificate')
    .description('Issue a new key and certificate for server certificate NAME with the same SANs and replace servers/NAME.{crt,key} in the store. A running broker picks it up by itself (file watching), or on SIGHUP / POST /reload; connections already open keep their old session.')
    .argument('<name>', 'server certificate name (tls.server in the config)')
    .option('--ttl <duration>', 'lifetime of the new certificate', '90d')
    .option('--dry-run', 'print the plan and change nothing')
    .addHelpText('after', examples('broker pki rotate server broker --dry-run', 'broker pki rotate server broker --ttl 60d'))
    .action(async (name: string, opts: Opts) => {
      const [{ renew }, { statusOf }, { BrokerError }, out] = await Promise.all([import('../../pki/issue.ts'), import('../../pki/inventory.ts'), import('../../errors.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const current = store
        .readInventory()
        .certs.filter((c) => c.name === name && c.type === 'server' && statusOf(c) === 'valid')
        .sort((a, b) => Date.parse(b.notAfter) - Date.parse(a.notAfter))[0];
      if (!current) throw new BrokerError('BRK_ERR_PKI_IDENTITY_NOT_FOUND', `no valid server certificate named ${name}`);
      const ttlMs = await ttl(opts.ttl, 90 * 86_400_000);
      out.printLines(
        `plan: rotate server certificate ${name}`,
        `  1. new key and certificate for ${[...(current.dns ?? []).map((d) => `DNS:${d}`), ...(current.ip ?? []).map((a) => `IP:${a}`)].join(', ')}, valid ${out.days(ttlMs)}`,
        `  2. replace ${store.layout.serverCert(name)} and ${store.layout.serverKey(name)} (atomically)`,
        `  3. running brokers reload it (file watching, SIGHUP or POST /reload); the old certificate (serial ${current.serial}) stays valid until ${current.notAfter} and is not revoked`,
      );
      if (opts.dryRun) return out.printLines('dry run: nothing changed');
      const passphrase = await caPassphrase(store, opts);
      const r = await renew(store, { name, ttlMs, ...(passphrase === undefined ? {} : { passphrase }) });
      await printIssued(r, opts);
    });
}
