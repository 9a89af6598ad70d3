import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  out?: string;
  nextUpdate?: string;
}

export function register(pki: Command): void {
  storeOptions(pki.command('crl'), { json: true })
    .summary('republish the CRLs (every CA level), optionally to a file')
    .description('Re-sign the CRLs of the root and the issuing CA with fresh thisUpdate/nextUpdate. Run it before nextUpdate passes (from cron or a timer): an expired CRL makes every client fail verification. --out writes every level in one PEM, as OpenSSL and Node want it.')
    .option('--out <file>', 'also write the CRL bundle (all levels, PEM) here')
    .option('--next-update <duration>', 'validity of this and later CRLs, e.g. 7d (kept in the store)')
    .addHelpText('after', examples('broker pki crl --out /etc/broker/crl.pem', 'broker pki crl --next-update 7d'))
    .action(async (opts: Opts) => {
      const [{ publishCrl }, { parseDuration }, out] = await Promise.all([import('../../pki/revoke.ts'), import('../../config/duration.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const nextUpdateMs = opts.nextUpdate === undefined ? undefined : parseDuration(opts.nextUpdate, '--next-update');
      const passphrase = await caPassphrase(store, opts);
      const r = await publishCrl(store, {
        ...(nextUpdateMs === undefined ? {} : { nextUpdateMs }),
        ...(opts.out ? { out: opts.out } : {}),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      if (opts.json) return out.printJson(r);
      out.printLines(`published CRLs (${r.revoked} revoked certificates), next update due ${r.nextUpdate.toISOString()}`, ...r.files.map((f) => `  ${f}`));
    });
}
