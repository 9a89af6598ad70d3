import type { Command } from 'commander';
import { caPassphrase, examples, openStore, storeOptions, warnIgnoredCrlLifetime, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  reason: string;
}

export function register(pki: Command): void {
  storeOptions(pki.command('revoke'), { json: true })
    .summary('revoke a certificate by name or serial and republish the CRLs')
    .description('Mark certificates revoked in the inventory and republish the CRLs (valid for the store\'s CRL lifetime, see "broker pki list"). A serial revokes that one certificate; a name revokes every certificate of that name not yet revoked (renewed overlaps included).')
    .argument('<name-or-serial>', 'identity name, or a hex serial as shown by "broker pki list"')
    .option('--reason <reason>', 'keyCompromise | superseded | cessationOfOperation | affiliationChanged | privilegeWithdrawn | unspecified', 'unspecified')
    .addHelpText('after', examples('broker pki revoke acme-billing --reason keyCompromise', 'broker pki revoke 6bb4fc8f040a4dabb762e8b4f1da3b61 --reason superseded'))
    .action(async (target: string, opts: Opts) => {
      const [{ revoke }, { isRevocationReason }, { BrokerError }, out] = await Promise.all([
        import('../../pki/revoke.ts'),
        import('../../pki/crl.ts'),
        import('../../errors.ts'),
        import('../output.ts'),
      ]);
      if (!isRevocationReason(opts.reason)) throw new BrokerError('BRK_ERR_USAGE', `unknown revocation reason "${opts.reason}"`);
      const store = await openStore(opts);
      await warnIgnoredCrlLifetime(store);
      const passphrase = await caPassphrase(store, opts);
      const revoked = await revoke(store, { target, reason: opts.reason, ...(passphrase === undefined ? {} : { passphrase }) });
      if (opts.json) return out.printJson(revoked);
      out.printLines(...revoked.map((c) => `revoked ${c.type} certificate ${c.name} serial ${c.serial} (${c.reason})`), `CRLs republished in ${store.layout.dir}`);
    });
}
