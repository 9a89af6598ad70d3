import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';

interface Opts extends StoreOptions, HandoutOptions {
  ttl?: string;
  csr?: string;
  expiring?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('renew'), { json: true })
    .summary('new key and certificate for an existing identity (old one stays valid)')
    .description('Issue a new certificate for NAME with the same type, roles and SANs, and a new key (or the key of --csr). The previous certificate stays valid until it expires or is revoked, so the new one can be rolled out first. Server certificates are replaced in the store. With --expiring instead of NAME, renews every identity whose newest valid certificate expires within the window, writing each bundle to OUT/NAME/.')
    .argument('[name]', 'identity or server certificate name (or --expiring)')
    .option('--ttl <duration>', 'lifetime, e.g. 90d', '90d')
    .option('--csr <file>', 'certify the key of this request instead of making a new key')
    .option('--expiring <duration>', 'renew everything expiring within this window, e.g. 30d');
  handoutOptions(cmd, { p12: true })
    .addHelpText('after', examples('broker pki renew acme-billing --out ./handout --p12', 'broker pki renew globex --csr globex-2027.csr', 'broker pki renew --expiring 30d --out ./handout'))
    .action(async (name: string | undefined, opts: Opts, command: Command) => {
      const { BrokerError } = await import('../../errors.ts');
      if ((name === undefined) === (opts.expiring === undefined)) throw new BrokerError('BRK_ERR_USAGE', 'give either NAME or --expiring WINDOW');
      if (opts.expiring !== undefined) return renewExpiring(opts, command);
      const store = await openStore(opts);
      const [{ renew }, { readBytes }] = await Promise.all([import('../../pki/issue.ts'), import('../../pki/files.ts')]);
      const passphrase = await caPassphrase(store, opts);
      // Only an explicit --out is passed on: a client renewal still defaults to ".", but a server
      // renewal must not drop a copy of the server's private key into the current folder.
      const { outDir, ...rest } = await handout(opts);
      const r = await renew(store, {
        name: name as string,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(opts.csr ? { csr: readBytes(opts.csr, 'certificate request'), csrFile: opts.csr } : {}),
        ...rest,
        ...(command.getOptionValueSource('out') === 'default' ? {} : { outDir }),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      await printIssued(r, opts);
    });
}

/**
 * Renews every identity whose newest valid certificate expires within the window, one store
 * transaction each (a failure stops the run and says which ones were done), with progress on
 * stderr. Client bundles go to OUT/NAME/; server certificates are replaced in the store.
 */
async function renewExpiring(opts: Opts, command: Command): Promise<void> {
  const store = await openStore(opts);
  const [{ renew }, { parseDuration }, { statusOf }, out, { join }] = await Promise.all([
    import('../../pki/issue.ts'),
    import('../../config/duration.ts'),
    import('../../pki/inventory.ts'),
    import('../output.ts'),
    import('node:path'),
  ]);
  const windowMs = parseDuration(opts.expiring as string, '--expiring');
  const now = Date.now();
  const newest = new Map<string, { type: string; notAfter: number }>();
  for (const c of store.readInventory().certs) {
    if (statusOf(c, now) !== 'valid') continue;
    const end = Date.parse(c.notAfter);
    const prev = newest.get(c.name);
    if (!prev || end > prev.notAfter) newest.set(c.name, { type: c.type, notAfter: end });
  }
  const due = [...newest].filter(([, v]) => v.notAfter - now <= windowMs).map(([n, v]) => ({ name: n, type: v.type }));
  if (!due.length) return out.printLines(`nothing expires within ${opts.expiring}`);
  const passphrase = await caPassphrase(store, opts);
  const { outDir, ...rest } = await handout(opts);
  const base = command.getOptionValueSource('out') === 'default' ? 'renewed' : outDir;
  const ttlMs = await ttl(opts.ttl, 90 * 86_400_000);
  const done: Array<{ name: string; serial: string; notAfter: string }> = [];
  for (const [i, item] of due.entries()) {
    process.stderr.write(`[${i + 1}/${due.length}] renewing ${item.type} ${item.name}\n`);
    const r = await renew(store, {
      name: item.name,
      ttlMs,
      ...rest,
      ...(item.type === 'client' ? { outDir: join(base, item.name) } : {}),
      ...(passphrase === undefined ? {} : { passphrase }),
    });
    done.push({ name: item.name, serial: r.record.serial, notAfter: r.record.notAfter });
  }
  if (opts.json) return out.printJson(done);
  out.printLines(`renewed ${done.length} certificate${done.length === 1 ? '' : 's'} (client bundles in ${base}/NAME/):`, ...done.map((d) => `  ${d.name}  serial ${d.serial}  until ${d.notAfter}`));
}
