/** `broker pki root …`: keeping the root key offline (see pki/root.ts and README "Keeping the root offline"). */
import type { Command } from 'commander';
import { caPassphrase, examples, openStore, rootPassphrase, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  out?: string;
  from?: string;
  yes?: boolean;
  rootCrlValidity?: string;
}

const VALIDITY_HELP = 'how long root CRLs signed from now on stay valid (kept in the store; default 180d)';

async function validity(opts: Opts): Promise<number | undefined> {
  if (opts.rootCrlValidity === undefined) return undefined;
  const { parseDuration } = await import('../../config/duration.ts');
  return parseDuration(opts.rootCrlValidity, '--root-crl-validity');
}

/** The passphrase options a pki/root.ts call takes, leaving out the ones not given. */
function given(passphrase: string | undefined, rootPass: string | undefined): { passphrase?: string; rootPassphrase?: string } {
  return { ...(passphrase === undefined ? {} : { passphrase }), ...(rootPass === undefined ? {} : { rootPassphrase: rootPass }) };
}

export function register(pki: Command): void {
  const root = pki.command('root').summary('keep the root CA key offline').description('The root key with its own passphrase, exported to and kept on another machine. Day-to-day commands (issue, sign, revoke, renew, crl) then need only the issuing CA\'s passphrase; root operations (rotate intermediate/root, root crl) need the root\'s, and the root key on this host.');

  storeOptions(root.command('migrate'), { json: true, root: true })
    .summary('give the root key its own passphrase (one command for an existing store)')
    .description('Re-encrypt the root key (and those of previous roots) under the root passphrase (--root-passphrase-file or BROKER_ROOT_CA_PASSPHRASE), which must differ from the issuing CA\'s. From then on day-to-day commands leave the root key alone and republish the root CRL as pre-signed; root operations re-sign it for --root-crl-validity.')
    .option('--root-crl-validity <duration>', VALIDITY_HELP)
    .addHelpText('after', examples('broker pki root migrate --passphrase-file ca.pass --root-passphrase-file root.pass --root-crl-validity 180d'))
    .action(async (opts: Opts) => {
      const [{ migrateRoot }, { BrokerError }, out] = await Promise.all([import('../../pki/root.ts'), import('../../errors.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const passphrase = await caPassphrase(store, opts);
      const rootPass = await rootPassphrase(store, opts, true);
      if (!rootPass) throw new BrokerError('BRK_ERR_USAGE_ROOT_PASSPHRASE_REQUIRED', 'no root passphrase given for the root key to be re-encrypted under');
      if (rootPass === passphrase) throw new BrokerError('BRK_ERR_USAGE', 'the root passphrase must differ from the issuing CA\'s: give the root its own');
      const crlValidityMs = await validity(opts);
      const r = await migrateRoot(store, { ...given(passphrase, undefined), rootPassphrase: rootPass, ...(crlValidityMs === undefined ? {} : { crlValidityMs }) });
      if (opts.json) return out.printJson(r);
      out.printLines(`the root key has its own passphrase now (${r.keys} key${r.keys === 1 ? '' : 's'} re-encrypted); root CRL pre-signed until ${r.rootCrlNextUpdate}`, 'next: broker pki root export --out DIR, move DIR to the offline machine, then broker pki root remove --from DIR --yes');
    });

  storeOptions(root.command('export'), { json: true, root: true })
    .summary('copy the root keys to a folder, for another machine')
    .description('Re-sign the root CRLs (valid for --root-crl-validity: the longest the root may stay away before it must come back to re-sign them), then write the root keys (encrypted with the root passphrase, as stored), their certificates and root-export.json into --out. Move the folder to the offline machine (or media), then "broker pki root remove".')
    .requiredOption('--out <dir>', 'folder to write the export to (must not hold one already)')
    .option('--root-crl-validity <duration>', VALIDITY_HELP)
    .addHelpText('after', examples('broker pki root export --out /media/root-ca --root-crl-validity 365d --passphrase-file ca.pass --root-passphrase-file root.pass'))
    .action(async (opts: Opts) => {
      const [{ exportRoot }, out] = await Promise.all([import('../../pki/root.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const passphrase = await caPassphrase(store, opts);
      const rootPass = await rootPassphrase(store, opts);
      const crlValidityMs = await validity(opts);
      const r = await exportRoot(store, { out: opts.out as string, ...given(passphrase, rootPass), ...(crlValidityMs === undefined ? {} : { crlValidityMs }) });
      if (opts.json) return out.printJson(r);
      out.printLines(`root keys exported to ${r.out}; root CRL pre-signed until ${r.rootCrlNextUpdate}`, ...r.files.map((f) => `  ${f}`), `next: broker pki root remove --from ${r.out} --yes`);
    });

  storeOptions(root.command('remove'), { json: true, root: true, passphrase: false })
    .summary('delete the root keys from this host (after checking the export)')
    .description('Check that --from holds every root key of the store, decrypting with the root passphrase to the key of each root certificate, then delete the root keys from the store. The root certificates and the pre-signed root CRLs stay: the broker needs them. Without --yes nothing is done.')
    .requiredOption('--from <dir>', 'the folder "broker pki root export" wrote')
    .option('--yes', 'really delete the root keys from this host')
    .addHelpText('after', examples('broker pki root remove --from /media/root-ca --yes --root-passphrase-file root.pass'))
    .action(async (opts: Opts) => {
      const [{ removeRoot }, out] = await Promise.all([import('../../pki/root.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const rootPass = await rootPassphrase(store, opts, true);
      const r = await removeRoot(store, { from: opts.from as string, yes: opts.yes === true, ...given(undefined, rootPass) });
      if (opts.json) return out.printJson(r);
      out.printLines(`removed ${r.removed.length} root key${r.removed.length === 1 ? '' : 's'} from this host`, ...r.removed.map((f) => `  ${f}`), `the pre-signed root CRL is valid until ${r.rootCrlNextUpdate}: bring the root back ("broker pki root import --from DIR") and run "broker pki root crl" before then`);
    });

  storeOptions(root.command('import'), { json: true, root: true, passphrase: false })
    .summary('bring exported root keys back to this host')
    .description('Put the root keys from an export folder back into the store, each checked against its certificate and the root passphrase. Needed before root operations (rotate intermediate/root, root crl, root export) on a host the root was removed from.')
    .requiredOption('--from <dir>', 'the folder "broker pki root export" wrote')
    .addHelpText('after', examples('broker pki root import --from /media/root-ca --root-passphrase-file root.pass'))
    .action(async (opts: Opts) => {
      const [{ importRoot }, out] = await Promise.all([import('../../pki/root.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const rootPass = await rootPassphrase(store, opts, true);
      const r = await importRoot(store, { from: opts.from as string, ...given(undefined, rootPass) });
      if (opts.json) return out.printJson(r);
      out.printLines(`imported ${r.imported.length} root key${r.imported.length === 1 ? '' : 's'}`, ...r.imported.map((f) => `  ${f}`));
    });

  storeOptions(root.command('crl'), { json: true, root: true })
    .summary('re-sign the root CRLs (pre-signed for --root-crl-validity)')
    .description('Re-sign the root CRLs (and the issuing CA\'s, republished with them) with the root key, valid for the root CRL validity. Run it, with the root brought back, before the pre-signed root CRL\'s nextUpdate ("broker pki root status"): an expired CRL makes every client fail verification.')
    .option('--root-crl-validity <duration>', VALIDITY_HELP)
    .addHelpText('after', examples('broker pki root crl --root-crl-validity 180d --passphrase-file ca.pass --root-passphrase-file root.pass'))
    .action(async (opts: Opts) => {
      const [{ signRootCrl }, out] = await Promise.all([import('../../pki/root.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const passphrase = await caPassphrase(store, opts);
      const rootPass = await rootPassphrase(store, opts);
      const crlValidityMs = await validity(opts);
      const r = await signRootCrl(store, { ...given(passphrase, rootPass), ...(crlValidityMs === undefined ? {} : { crlValidityMs }) });
      if (opts.json) return out.printJson(r);
      out.printLines(`root CRL re-signed, valid until ${r.rootCrlNextUpdate}`);
    });

  storeOptions(root.command('status'), { json: true, passphrase: false })
    .summary('whether the root has its own passphrase, is on this host, and until when its CRL is valid')
    .action(async (opts: Opts) => {
      const [{ rootStatus }, out] = await Promise.all([import('../../pki/root.ts'), import('../output.ts')]);
      const s = rootStatus(await openStore(opts));
      if (opts.json) return out.printJson(s);
      out.printLines(
        `root key passphrase: ${s.ownPassphrase ? 'its own' : 'shared with the issuing CA (broker pki root migrate gives it its own)'}`,
        `root key on this host: ${s.onHost ? 'yes' : `no${s.offline ? ` (exported to ${s.offline.exportedTo}, removed ${s.offline.since})` : ''}`}`,
        `root CRL valid until: ${s.rootCrlNextUpdate ?? 'unknown'}`,
      );
    });
}
