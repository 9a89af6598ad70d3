import type { Command } from 'commander';
import { collect, examples, openStore, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  role?: string[];
  expires: string;
  certTtl: string;
  contact?: string;
  list?: boolean;
  revoke?: string;
}

export function register(pki: Command): void {
  storeOptions(pki.command('invite'), { passphrase: false, json: true })
    .summary('a one-time enrolment token: the partner makes its own key and enrols with "broker enroll"')
    .description(
      'Create an invitation for identity NAME with its roles and print its one-time token (shown once; the store keeps only a SHA-256 of its secret). ' +
        'The partner runs "broker enroll --url https://HOST:PORT --token TOKEN" against the certificate-optional listener of a broker with enrollment.enabled: ' +
        'its key is made on its machine, and the broker certifies it for NAME and these roles, whatever the request asks. The token works once, until --expires, ' +
        'and pins this CA\'s root by its SHA-256 fingerprint. No CA passphrase is needed here. --list shows invitations, --revoke ID withdraws an open one.',
    )
    .argument('[name]', 'identity name (letters, digits, ".", "_", "-")')
    .option('--role <role>', 'a role the identity holds (repeat for more; at least one)', collect)
    .option('--expires <duration>', 'how long the token can be used, e.g. 72h, 7d', '72h')
    .option('--cert-ttl <duration>', 'lifetime of the certificate the enrolment issues (renew over mTLS before it ends)', '30d')
    .option('--contact <email>', 'who to tell about this identity (kept with the invitation)')
    .option('--list', 'list invitations (open, used, expired, revoked) instead of creating one')
    .option('--revoke <id>', 'withdraw the open invitation with this id')
    .addHelpText('after', examples('broker pki invite acme-billing --role billing --contact ops@acme.example', 'broker pki invite globex --role orders --role reports --expires 24h --cert-ttl 7d --json', 'broker pki invite --list', 'broker pki invite --revoke 3f9c0a1b2c4d'))
    .action(async (name: string | undefined, opts: Opts) => {
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
      const { record, token } = await inv.createInvitation(store, { name, roles: opts.role, expiresMs, certTtlMs, ...(opts.contact ? { contact: opts.contact } : {}) });
      if (opts.json) return out.printJson({ token, expires: record.expires, id: record.id, name: record.name, roles: record.roles });
      out.printLines(
        `invitation ${record.id} for ${record.name} (roles: ${record.roles.join(', ')}; certificate lifetime ${opts.certTtl}); the token works once, until ${record.expires}:`,
        token,
        'it is shown only once (the store keeps only a hash); the partner runs:',
        `  broker enroll --url https://BROKER:CERT_OPTIONAL_PORT --token ${token.slice(0, 12)}… --out ./${record.name}`,
      );
    });
}
