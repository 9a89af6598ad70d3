import type { Command } from 'commander';
import { collect, examples, openStore, storeOptions, type StoreOptions } from './common.ts';
import { bundleOptions, prepareBundle, warnBundle, type BundleCliOptions } from './bundle.ts';

interface Opts extends StoreOptions, BundleCliOptions {
  enrollUrl?: string;
  role?: string[];
  expires: string;
  certTtl: string;
  contact?: string;
  list?: boolean;
  revoke?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('invite'), { passphrase: false, json: true })
    .summary('a one-time enrolment token: the partner makes its own key and enrols with "broker enroll"')
    .description(
      'Create an invitation for identity NAME with its roles and print its one-time token (shown once; the store keeps only a SHA-256 of its secret). ' +
        'The partner runs "broker enroll --url https://HOST:PORT --token TOKEN" against the certificate-optional listener of a broker with enrollment.enabled: ' +
        'its key is made on its machine, and the broker certifies it for NAME and these roles, whatever the request asks. The token works once, until --expires, ' +
        'and pins this CA\'s root by its SHA-256 fingerprint. No CA passphrase is needed here. --list shows invitations, --revoke ID withdraws an open one. ' +
        'With --bundle DIR, also writes an onboarding kit to DIR/NAME/: the token (NAME.token, 0600), ca.crt, a README.md for the partner that starts with the enroll command ' +
        '(--enroll-url, else the host of --url with the port of --config\'s listenCertOptional) and snippets/ that use the files enroll writes. The kit holds no key.',
    )
    .argument('[name]', 'identity name (letters, digits, ".", "_", "-")')
    .option('--role <role>', 'a role the identity holds (repeat for more; at least one)', collect)
    .option('--expires <duration>', 'how long the token can be used, e.g. 72h, 7d', '72h')
    .option('--cert-ttl <duration>', 'lifetime of the certificate the enrolment issues (renew over mTLS before it ends)', '30d')
    .option('--contact <email>', 'who to tell about this identity (kept with the invitation)')
    .option('--list', 'list invitations (open, used, expired, revoked) instead of creating one')
    .option('--revoke <id>', 'withdraw the open invitation with this id');
  bundleOptions(cmd, 'token, ca.crt, README.md, snippets/')
    .option('--enroll-url <url>', 'with --bundle: https://HOST:PORT of the certificate-optional listener, where the partner enrols (default: the host of --url, the port of --config\'s listenCertOptional)')
    .option('--force', 'with --bundle: replace an existing kit\'s README.md, snippets/ and token')
    .addHelpText(
      'after',
      examples(
        'broker pki invite acme-billing --role billing --contact ops@acme.example',
        'broker pki invite globex --role orders --role reports --expires 24h --cert-ttl 7d --json',
        'broker pki invite acme-billing --role billing --bundle ./kits --url https://broker.example.com:8443 --config broker.yaml',
        'broker pki invite --list',
        'broker pki invite --revoke 3f9c0a1b2c4d',
      ),
    )
    .action(async (name: string | undefined, opts: Opts, command: Command) => {
      const [inv, { parseDuration }, { BrokerError }, out] = await Promise.all([import('../../pki/invitations.ts'), import('../../config/duration.ts'), import('../../errors.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      if (opts.list) {
        const rows = inv.listInvitations(store);
        if (opts.json) return out.printJson(rows);
        if (!rows.length) return out.printLines('no invitations yet');
        return out.printLines(out.table(['ID', 'NAME', 'ROLES', 'EXPIRES', 'STATUS', 'CERTIFICATE'], rows.map((r) => [r.id, r.name, r.roles.join(','), r.expires, r.status, r.serial ?? '-'])));
      }
      if (opts.revoke !== undefined) {
        const r = await inv.revokeInvitation(store, opts.revoke);
        if (opts.json) return out.printJson(r);
        return out.printLines(`revoked invitation ${r.id} for ${r.name}: its token is refused from now on`);
      }
      if (name === undefined) throw new BrokerError('BRK_ERR_USAGE', 'give NAME (or --list, or --revoke ID)');
      if (!opts.role?.length) throw new BrokerError('BRK_ERR_USAGE_ROLE', 'give at least one --role; an identity without roles can reach nothing');
      const expiresMs = parseDuration(opts.expires, '--expires');
      const certTtlMs = parseDuration(opts.certTtl, '--cert-ttl');
      if (certTtlMs < 60_000) throw new BrokerError('BRK_ERR_USAGE_TTL', `--cert-ttl ${opts.certTtl} is shorter than the 1 minute a certificate needs to be usable`);
      // the kit's checks come first: a refused kit creates no invitation
      if (opts.bundle === undefined && (opts.url !== undefined || opts.config !== undefined || opts.enrollUrl !== undefined)) {
        throw new BrokerError('BRK_ERR_USAGE', '--url, --enroll-url and --config describe the onboarding kit: give --bundle DIR too');
      }
      const kit = opts.bundle === undefined ? undefined : await prepareBundle(name, opts.role, opts, command, { token: true });
      const enrollUrl = kit?.enrollUrlOf({ enrollUrl: opts.enrollUrl, url: opts.url, optionalPort: kit.enrollment?.optionalPort });
      const { record, token } = await inv.createInvitation(store, { name, roles: opts.role, expiresMs, certTtlMs, ...(opts.contact ? { contact: opts.contact } : {}) });
      let written: ReturnType<NonNullable<typeof kit>['writeBundle']> | undefined;
      if (kit) {
        const { readFileSync } = await import('node:fs');
        written = kit.writeBundle({
          dir: opts.bundle as string,
          identity: record.name,
          roles: record.roles,
          contact: opts.contact ?? null,
          url: opts.url,
          routes: kit.routes,
          force: opts.force ?? false,
          credentials: { kind: 'token', token, expires: record.expires, certTtl: opts.certTtl, caPem: readFileSync(store.layout.caCert, 'utf8'), enrollUrl },
        });
        await warnBundle(written, kit.routes, kit.enrollment);
      }
      const bundle = written ? { dir: written.dir, readme: written.readme, token: written.token, snippets: written.snippets } : undefined;
      if (opts.json) return out.printJson({ token, expires: record.expires, id: record.id, name: record.name, roles: record.roles, ...(bundle ? { bundle } : {}) });
      if (written) {
        return out.printLines(
          `invitation ${record.id} for ${record.name} (roles: ${record.roles.join(', ')}; certificate lifetime ${opts.certTtl}); the token works once, until ${record.expires}`,
          `  onboarding kit ${written.readme} (token in ${written.token}, 0600; ${Object.keys(written.snippets).length} snippets in ${written.dir}/snippets)`,
          `  the partner runs, in the kit folder: broker enroll --url ${enrollUrl ?? 'https://BROKER_HOST:8444'} --token "$(cat ${record.name}.token)" --out . --p12`,
        );
      }
      out.printLines(
        `invitation ${record.id} for ${record.name} (roles: ${record.roles.join(', ')}; certificate lifetime ${opts.certTtl}); the token works once, until ${record.expires}:`,
        token,
        'it is shown only once (the store keeps only a hash); the partner runs:',
        `  broker enroll --url https://BROKER:CERT_OPTIONAL_PORT --token ${token.slice(0, 12)}… --out ./${record.name}`,
      );
    });
}
