import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';
import { bundleOptions, prepareBundle, warnBundle, type BundleCliOptions } from './bundle.ts';

interface Opts extends StoreOptions, HandoutOptions, BundleCliOptions {
  role: string[];
  ttl?: string;
  contact?: string;
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
    .option('--contact <email>', 'who to tell about this identity (expiry notices, onboarding kit); kept in the inventory');
  bundleOptions(cmd, 'credentials, README.md, snippets/; implies --p12; not with --out');
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
      const kit = opts.bundle === undefined ? undefined : await prepareBundle(name, opts.role, opts, command);
      if (kit) opts.p12 = true;
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
      const [{ basename }, out] = await Promise.all([import('node:path'), import('../output.ts')]);
      const written = kit.writeBundle({
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
      await warnBundle(written, kit.routes);
      if (opts.json) return out.printJson({ ...r.record, files: r.files, bundle: { dir: written.dir, readme: written.readme, snippets: written.snippets } });
      await printIssued(r, { ...opts, json: false });
      out.printLines(`  onboarding kit ${written.readme} (and ${Object.keys(written.snippets).length} snippets in ${written.dir}/snippets)`);
    });
}
