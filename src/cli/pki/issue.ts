import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';

interface Opts extends StoreOptions, HandoutOptions {
  role: string[];
  ttl?: string;
  contact?: string;
  bundle?: string;
  url?: string;
  config?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('issue'), { json: true })
    .summary('issue a client certificate (and key) for an identity with roles')
    .description(
      'Issue a client certificate for identity NAME carrying its roles (one OU per role). Writes NAME.crt (leaf then issuing CA), NAME.key (0600), ca.crt (root) and, with --p12, NAME.p12. The private key is not kept by the CA. Refuses if NAME already has a valid certificate (use renew). With --bundle DIR, writes an onboarding kit to DIR/NAME/ instead: the credentials (always with a PKCS#12), a README.md for the partner (identity, roles, expiry, contact, the routes and methods its roles reach when --config is given, the broker URL) and snippets/ that run as they are (curl, Python, Java, Node, Go).',
    )
    .argument('<name>', 'identity name (letters, digits, ".", "_", "-")')
    .requiredOption('--role <role>', 'a role the identity holds (repeat for more)', collect)
    .option('--ttl <duration>', 'lifetime, e.g. 90d, 12h, 15m', '90d')
    .option('--contact <email>', 'who to tell about this identity (expiry notices, onboarding kit); kept in the inventory')
    .option('--bundle <dir>', 'write an onboarding kit for the partner to DIR/NAME/ (implies --p12; not with --out)')
    .option('--url <url>', 'with --bundle: https://HOST:PORT the partner reaches the broker at (a placeholder otherwise)')
    .option('--config <file>', 'with --bundle: the broker config, to list the routes and methods the roles reach');
  handoutOptions(cmd, { p12: true })
    .addHelpText(
      'after',
      examples(
        'broker pki issue acme-billing --role billing --out ./handout',
        'broker pki issue acme-ops --role ops --role billing --ttl 30d --p12 --password-file p12.pass',
        'broker pki issue acme-billing --role billing --contact ops@acme.example --bundle ./kits --url https://broker.example.com:8443 --config broker.yaml',
      ),
    )
    .action(async (name: string, opts: Opts, command: Command) => {
      const kit = opts.bundle === undefined ? undefined : await prepareBundle(name, opts, command);
      const store = await openStore(opts);
      const { issueClient } = await import('../../pki/issue.ts');
      const passphrase = await caPassphrase(store, opts);
      const r = await issueClient(store, {
        name,
        roles: opts.role,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(opts.contact === undefined ? {} : { contact: opts.contact }),
        ...(await handout(kit ? { ...opts, out: kit.dir } : opts)),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      if (!kit) return printIssued(r, opts);
      const [{ writeBundle }, { basename }, out] = await Promise.all([import('../../pki/bundle.ts'), import('node:path'), import('../output.ts')]);
      const written = writeBundle({
        dir: opts.bundle as string,
        identity: r.record.name,
        roles: r.record.roles,
        contact: r.record.contact ?? null,
        url: opts.url,
        routes: kit.routes,
        credentials: {
          kind: 'certificate',
          serial: r.record.serial,
          notAfter: r.record.notAfter,
          cert: basename(r.files.cert),
          key: basename(r.files.key as string),
          ca: basename(r.files.ca),
          p12: r.files.p12 ? basename(r.files.p12) : undefined,
          p12Password: r.files.p12Password ? basename(r.files.p12Password) : undefined,
        },
        force: opts.force ?? false,
      });
      if (written.placeholderUrl) out.warn(`no --url: the kit's README and snippets use the placeholder https://BROKER_HOST:8443; replace it before sending the kit`);
      if (!kit.routes) out.warn('no --config: the kit does not list the routes the roles reach');
      if (opts.json) return out.printJson({ ...r.record, files: r.files, bundle: { dir: written.dir, readme: written.readme, snippets: written.snippets } });
      await printIssued(r, { ...opts, json: false });
      out.printLines(`  onboarding kit ${written.readme} (and ${Object.keys(written.snippets).length} snippets in ${written.dir}/snippets)`);
    });
}

/** Checks everything the kit needs before anything is issued: a refusal changes nothing. */
async function prepareBundle(name: string, opts: Opts, command: Command) {
  const [{ BrokerError }, { join }, bundle] = await Promise.all([import('../../errors.ts'), import('node:path'), import('../../pki/bundle.ts')]);
  if (command.getOptionValueSource('out') === 'cli') throw new BrokerError('BRK_ERR_USAGE', '--bundle DIR writes the credentials to DIR/NAME/: leave out --out');
  if (opts.url !== undefined) bundle.checkBundleUrl(opts.url);
  opts.p12 = true;
  let routes: ReturnType<typeof bundle.reachableRoutes> | undefined;
  if (opts.config !== undefined) {
    const { loadConfig } = await import('../../config/load.ts');
    routes = bundle.reachableRoutes(loadConfig(opts.config).config, opts.role);
  }
  const clash = opts.force ? [] : bundle.bundleConflicts(opts.bundle as string, name);
  if (clash.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${clash.join(', ')}`);
  return { dir: join(opts.bundle as string, name), routes };
}
