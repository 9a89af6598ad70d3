import type { Command } from 'commander';
import { examples, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  name: string;
  keyType: string;
  trustDomain: string;
  passphrase: boolean;
  crlNextUpdate?: string;
  rootCrlValidity?: string;
  force?: boolean;
}

export function register(pki: Command): void {
  storeOptions(pki.command('init'), { root: true })
    .summary('create the root and issuing CAs, empty CRLs and the inventory')
    .description('Create a new CA store: a root CA (for signing the issuing CA and CRLs), an intermediate issuing CA, empty CRLs for both, the inventory and the audit log. Never overwrites an existing CA.')
    .option('--name <name>', 'CA name, used in the CA subjects', 'Broker CA')
    .option('--key-type <type>', 'ec-p256 | ec-p384 | rsa-3072', 'ec-p256')
    .option('--trust-domain <domain>', 'SPIFFE trust domain for client URI SANs', 'broker.local')
    .option('--crl-next-update <duration>', 'how long each published CRL stays valid: the store\'s default, shown by "broker pki list" (1h or more unless --force)', '30d')
    .option('--force', 'allow a --crl-next-update under 1 hour (never overwrites a CA)')
    .option('--no-passphrase', 'store the CA keys unencrypted (not for production)')
    .option('--root-crl-validity <duration>', 'with a root passphrase: how long root CRLs stay valid (they are pre-signed: only root operations re-sign them)', '180d')
    .addHelpText('after', examples('broker pki init --name "Acme Broker CA" --trust-domain acme.example --passphrase-file ca.pass', 'BROKER_CA_PASSPHRASE=... broker pki init --dir /etc/broker/pki --key-type ec-p384'))
    .action(async (opts: Opts) => {
      const [{ initCa }, { assertKeyType }, { resolveStoreDir }, { parseDuration }, secrets, out] = await Promise.all([
        import('../../pki/init.ts'),
        import('../../pki/keys.ts'),
        import('../../pki/layout.ts'),
        import('../../config/duration.ts'),
        import('../secrets.ts'),
        import('../output.ts'),
      ]);
      const { BrokerError } = await import('../../errors.ts');
      const keyType = assertKeyType(opts.keyType);
      const { checkCrlValidity } = await import('../../pki/crl-lifetime.ts');
      // checked before the passphrase is asked for
      const crlValidityMs = checkCrlValidity(parseDuration(opts.crlNextUpdate ?? '30d', '--crl-next-update'), '--crl-next-update', opts.force === true);
      let passphrase: string | undefined;
      if (opts.passphrase) {
        passphrase = await secrets.resolveSecret(secrets.caPassphraseSource(opts.passphraseFile), { confirm: true });
        if (passphrase === undefined) throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', 'no CA passphrase given and no terminal to ask on');
      } else {
        out.warn('the CA keys will be stored UNENCRYPTED (--no-passphrase); anyone who can read the store can issue certificates');
      }
      // the root's own passphrase (file or environment only: no prompt) lets the root be kept offline
      const rootPassphrase = await secrets.resolveSecret(secrets.rootPassphraseSource(opts.rootPassphraseFile), { prompt: false });
      if (rootPassphrase !== undefined && rootPassphrase === passphrase) throw new BrokerError('BRK_ERR_USAGE', 'the root passphrase must differ from the issuing CA\'s: give the root its own');
      const rootCrlValidityMs = parseDuration(opts.rootCrlValidity ?? '180d', '--root-crl-validity');
      const dir = resolveStoreDir(opts.dir);
      const r = await initCa({ dir, name: opts.name, keyType, trustDomain: opts.trustDomain, passphrase, crlValidityMs, forceCrlValidity: opts.force === true, ...(rootPassphrase === undefined ? {} : { rootPassphrase, rootCrlValidityMs }) });
      out.printLines(
        `created CA in ${dir} (${keyType}, keys ${r.encrypted ? 'encrypted' : 'NOT encrypted'}${rootPassphrase === undefined ? '' : '; the root key has its own passphrase: see "broker pki root"'})`,
        `  root          ${r.root.subject}  expires ${r.root.notAfter.toISOString()}  sha256:${r.root.fingerprint}`,
        `  issuing CA    ${r.intermediate.subject}  expires ${r.intermediate.notAfter.toISOString()}`,
        `next: broker pki server broker --dns your.host.example   then   broker pki issue NAME --role ROLE`,
      );
    });
}
