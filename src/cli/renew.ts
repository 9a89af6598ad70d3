import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  url: string;
  cert: string;
  key: string;
  ca?: string;
  out?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('renew')
    .summary('partner side: renew the client certificate over mTLS (new key, same identity and roles)')
    .description(
      'Make a new key here, send a certificate request to the broker over mutual TLS with the current certificate, and ' +
        'write the new certificate and key: in place of --cert and --key (and --ca), or as OUT/NAME.crt, OUT/NAME.key and ' +
        'OUT/ca.crt with --out. All files are written to temporary files first and renamed only when every one is ' +
        'complete: on a refusal or a failure the old files stay as they were. The broker decides the identity and roles ' +
        '(those of the current certificate) and the lifetime (enrollment.certTtl), and refuses before ' +
        'enrollment.renewAfter of the lifetime has passed (BRK_ERR_ENROLL_TOO_EARLY: run it daily from cron or a timer). ' +
        '--url is the broker\'s main listener.',
    )
    .requiredOption('--url <url>', 'the broker\'s main listener: https://HOST:PORT')
    .requiredOption('--cert <file>', 'the current client certificate (PEM, leaf first)')
    .requiredOption('--key <file>', 'its private key (PEM, unencrypted)')
    .option('--ca <file>', 'CA certificate(s) that sign the broker\'s server certificate (default: ca.crt beside --cert, else the system roots)')
    .option('--out <dir>', 'write NAME.crt, NAME.key and ca.crt here instead of replacing --cert/--key/--ca')
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', examples('broker renew --url https://broker.example.com:8443 --cert acme.crt --key acme.key', '0 3 * * * broker renew --url https://broker.example.com:8443 --cert /etc/acme/acme.crt --key /etc/acme/acme.key --ca /etc/acme/ca.crt'))
    .action(async (opts: Opts) => {
      const [{ renew }, out] = await Promise.all([import('../connect/lifecycle-client.ts'), import('./output.ts')]);
      const r = await renew({ url: opts.url, cert: opts.cert, key: opts.key, ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.out ? { outDir: opts.out } : {}) });
      if (opts.json) return out.printJson({ name: r.issued.name, roles: r.issued.roles, serial: r.issued.serial, notAfter: r.issued.notAfter, files: r.files });
      out.printLines(`renewed ${r.issued.name} (roles: ${r.issued.roles.join(', ')}): serial ${r.issued.serial}, valid until ${r.issued.notAfter}`, `  certificate  ${r.files.cert}`, `  private key  ${r.files.key} (new key, 0600)`, `  trust        ${r.files.ca ?? 'system roots (no CA file)'}`);
    });
}
