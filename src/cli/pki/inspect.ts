import type { Command } from 'commander';
import { examples, openStore, storeOptions, type StoreOptions } from './common.ts';

export function register(pki: Command): void {
  storeOptions(pki.command('inspect'), { passphrase: false, json: true })
    .summary('decode a certificate and say whether this CA would accept it, and why not')
    .description('Decode a certificate (PEM or DER; for a bundle, the first certificate) and check it as the broker would check a client: issued by this CA, within its validity, not revoked, EKU clientAuth. Exit 0 when accepted, 1 with BRK_ERR_PKI_CERT_REJECTED when not.')
    .argument('<file>', 'certificate file')
    .addHelpText('after', examples('broker pki inspect handout/acme-billing.crt', 'broker pki inspect partner.der --json'))
    .action(async (file: string, opts: StoreOptions) => {
      const [{ inspectFile }, { BrokerError }, out] = await Promise.all([import('../../pki/inspect.ts'), import('../../errors.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const r = await inspectFile(store, file);
      if (opts.json) out.printJson(r);
      else {
        out.printLines(
          `subject      ${r.subject}`,
          `issuer       ${r.issuer}`,
          `serial       ${r.serial}${r.knownAs ? ` (inventory: ${r.knownAs})` : ''}`,
          `valid        ${r.notBefore} .. ${r.notAfter}`,
          `roles        ${r.roles.join(', ') || '-'}`,
          `SANs         ${r.sans.join(', ') || '-'}`,
          `EKU          ${r.extendedKeyUsage.join(', ') || '-'}`,
          `sha256       ${r.fingerprint}`,
          `verdict      ${r.accepted ? 'ACCEPTED by this CA' : 'REFUSED by this CA'}`,
          ...r.reasons.map((x) => `  - ${x}`),
        );
      }
      if (!r.accepted) throw new BrokerError('BRK_ERR_PKI_CERT_REJECTED', `${file} would be refused: ${r.reasons.join('; ')}`);
    });
}
