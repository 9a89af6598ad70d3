import type { Command } from 'commander';
import { examples, openStore, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  expiring?: string;
}

export function register(pki: Command): void {
  storeOptions(pki.command('list'), { passphrase: false, json: true })
    .summary('the inventory: every certificate with its roles, dates and status')
    .description('List every certificate the CA issued: name, type (client/server), roles, serial, notBefore, notAfter, status (valid/revoked/expired), issuer (current/previous/retired issuing CA), contact and SHA-256 fingerprint. --json prints an array of those objects. The text form ends with the store\'s CRL lifetime.')
    .option('--expiring <duration>', 'only valid certificates expiring within this window, e.g. 30d')
    .addHelpText('after', examples('broker pki list', 'broker pki list --expiring 30d --json'))
    .action(async (opts: Opts) => {
      const [{ listCerts }, { parseDuration, formatDuration }, { storeCrlValidity }, out] = await Promise.all([
        import('../../pki/inspect.ts'),
        import('../../config/duration.ts'),
        import('../../pki/crl-lifetime.ts'),
        import('../output.ts'),
      ]);
      const store = await openStore(opts);
      const inventory = store.readInventory();
      const rows = listCerts(inventory, opts.expiring ? { expiringMs: parseDuration(opts.expiring, '--expiring') } : {});
      if (opts.json) return out.printJson(rows);
      const crl = storeCrlValidity(inventory.ca);
      const crlLine = `CRL lifetime: ${formatDuration(crl.ms)} (each "broker pki crl" and "broker pki revoke"; set by "broker pki init --crl-next-update")${crl.ignoredMs === undefined ? '' : `; the stored ${formatDuration(crl.ignoredMs)} is under 1 hour and ignored`}`;
      if (!rows.length) return out.printLines(opts.expiring ? 'no valid certificate expires in that window' : 'no certificates issued yet', crlLine);
      out.printLines(
        out.table(
          ['NAME', 'TYPE', 'ROLES', 'SERIAL', 'NOT BEFORE', 'NOT AFTER', 'STATUS', 'ISSUER', 'CONTACT', 'SHA-256'],
          rows.map((r) => [r.name, r.type, r.roles.join(',') || '-', r.serial, r.notBefore, r.notAfter, r.status, r.issuer, r.contact ?? '-', r.fingerprint]),
        ),
        crlLine,
      );
    });
}
