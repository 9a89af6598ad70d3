import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, warnIgnoredCrlLifetime, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  out?: string;
  nextUpdate?: string;
  force?: boolean;
}

export function register(pki: Command): void {
  storeOptions(pki.command('crl'), { json: true })
    .summary('republish the CRLs (every CA level), optionally to a file')
    .description(
      'Re-sign the CRLs of the root and the issuing CA with fresh thisUpdate/nextUpdate. Run it before nextUpdate passes (from cron or a timer): an expired CRL makes every client fail verification. --out writes every level in one PEM, as OpenSSL and Node want it. --next-update sets the lifetime of this publication only; later ones (this command without it, "broker pki revoke", rotations) use the store\'s default, set by "broker pki init --crl-next-update" and shown by "broker pki list".',
    )
    .option('--out <file>', 'also write the CRL bundle (all levels, PEM) here')
    .option('--next-update <duration>', 'validity of this publication only, e.g. 7d (1h or more unless --force)')
    .option('--force', 'allow a --next-update under 1 hour')
    .addHelpText('after', examples('broker pki crl --out /etc/broker/crl.pem', 'broker pki crl --next-update 7d'))
    .action(async (opts: Opts) => {
      const [{ publishCrl }, { parseDuration }, { checkCrlValidity }, out] = await Promise.all([import('../../pki/revoke.ts'), import('../../config/duration.ts'), import('../../pki/crl-lifetime.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const nextUpdateMs = opts.nextUpdate === undefined ? undefined : checkCrlValidity(parseDuration(opts.nextUpdate, '--next-update'), '--next-update', opts.force === true);
      if (nextUpdateMs === undefined) await warnIgnoredCrlLifetime(store);
      const passphrase = await caPassphrase(store, opts);
      const r = await publishCrl(store, {
        ...(nextUpdateMs === undefined ? {} : { nextUpdateMs }),
        force: opts.force === true,
        ...(opts.out ? { out: opts.out } : {}),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      if (opts.json) return out.printJson(r);
      out.printLines(`published CRLs (${r.revoked} revoked certificates), next update due ${r.nextUpdate.toISOString()}`, ...r.files.map((f) => `  ${f}`));
    });
}
