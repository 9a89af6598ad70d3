import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, storeOptions, ttl, type StoreOptions } from './common.ts';
import { handout, handoutOptions, printIssued, type HandoutOptions } from './handout.ts';

interface Opts extends StoreOptions, HandoutOptions {
  name: string;
  role: string[];
  ttl?: string;
}

export function register(pki: Command): void {
  const cmd = storeOptions(pki.command('sign'), { json: true })
    .summary('sign a third party\'s CSR so their private key never leaves them')
    .description('Sign a PKCS#10 certificate request (PEM or DER). Only the request\'s public key is used: the subject, SANs and extensions are set by the broker (CN=NAME, one OU per role, the SPIFFE URI, EKU clientAuth), whatever the request asked for. Writes NAME.crt and ca.crt.')
    .argument('<csr-file>', 'the request, e.g. made with "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256"')
    .requiredOption('--name <name>', 'identity name to certify')
    .requiredOption('--role <role>', 'a role the identity holds (repeat for more)', collect)
    .option('--ttl <duration>', 'lifetime, e.g. 90d', '90d');
  handoutOptions(cmd, { p12: false })
    .addHelpText('after', examples('broker pki sign partner.csr --name globex --role orders --out ./handout'))
    .action(async (csrFile: string, opts: Opts) => {
      const store = await openStore(opts);
      const [{ signCsr }, { readBytes }] = await Promise.all([import('../../pki/issue.ts'), import('../../pki/files.ts')]);
      const csr = readBytes(csrFile, 'certificate request');
      const passphrase = await caPassphrase(store, opts);
      const r = await signCsr(store, {
        csr,
        csrFile,
        name: opts.name,
        roles: opts.role,
        ttlMs: await ttl(opts.ttl, 90 * 86_400_000),
        ...(await handout(opts)),
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      await printIssued(r, opts);
    });
}
