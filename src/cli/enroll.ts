import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  url: string;
  token?: string;
  tokenFile?: string;
  out: string;
  keyType: string;
  p12?: boolean;
  passwordFile?: string;
  force?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('enroll')
    .summary('partner side: enrol with a one-time token; the key is made here and never leaves')
    .description(
      'Make a key pair on this machine, check that the broker at --url holds the CA the token pins (SHA-256 of its root; ' +
        'nothing is sent otherwise), then send a certificate request and the token over TLS verified against that root. ' +
        'The broker certifies the key for the identity and roles of the invitation. Writes OUT/NAME.crt (certificate + ' +
        'issuing CA), OUT/NAME.key (0600) and OUT/ca.crt, as "broker pki issue" does; --p12 also writes OUT/NAME.p12. ' +
        '--url is the broker\'s certificate-optional listener (listenCertOptional). The token can also come from ' +
        '--token-file or BROKER_ENROLL_TOKEN, so that it stays out of shell history.',
    )
    .requiredOption('--url <url>', 'the broker\'s certificate-optional listener: https://HOST:PORT')
    .option('--token <token>', 'the one-time token from "broker pki invite" (or --token-file, or BROKER_ENROLL_TOKEN)')
    .option('--token-file <file>', 'file whose first line is the token')
    .option('--out <dir>', 'folder for NAME.crt, NAME.key and ca.crt', '.')
    .option('--key-type <type>', 'ec-p256 | ec-p384 | rsa-3072', 'ec-p256')
    .option('--p12', 'also write NAME.p12 (PKCS#12 with the key and the chain)')
    .option('--password-file <file>', 'PKCS#12 password (first line); or set BROKER_P12_PASSWORD; generated (and saved to NAME.p12.pass) when neither is given')
    .option('--force', 'replace existing files of the same names')
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', examples('broker enroll --url https://broker.example.com:8444 --token brk1.eyJ2Ijox… --out ./acme', 'BROKER_ENROLL_TOKEN=brk1.… broker enroll --url https://broker.example.com:8444 --key-type ec-p384 --p12'))
    .action(async (opts: Opts) => {
      const [{ enroll }, { assertKeyType }, { BrokerError }, secrets, out, { p12Password }] = await Promise.all([
        import('../connect/lifecycle-client.ts'),
        import('../pki/keys.ts'),
        import('../errors.ts'),
        import('./secrets.ts'),
        import('./output.ts'),
        import('./pki/handout.ts'),
      ]);
      const token = opts.token ?? (opts.tokenFile ? secrets.readSecretFile(opts.tokenFile, 'token') : process.env.BROKER_ENROLL_TOKEN);
      if (!token) throw new BrokerError('BRK_ERR_USAGE', 'give --token, --token-file or BROKER_ENROLL_TOKEN');
      const keyType = assertKeyType(opts.keyType);
      const pw = await p12Password({ ...(opts.p12 ? { p12: true } : {}), ...(opts.passwordFile ? { passwordFile: opts.passwordFile } : {}) });
      const r = await enroll({ url: opts.url, token, outDir: opts.out, keyType, force: opts.force ?? false, ...(pw.password === undefined ? {} : { p12Password: pw.password, savePassword: pw.generated }) });
      if (opts.json) return out.printJson({ name: r.issued.name, roles: r.issued.roles, serial: r.issued.serial, notAfter: r.issued.notAfter, files: r.files });
      out.printLines(
        `enrolled as ${r.issued.name} (roles: ${r.issued.roles.join(', ')})`,
        `  serial       ${r.issued.serial}`,
        `  valid until  ${r.issued.notAfter} (${out.days(Date.parse(r.issued.notAfter) - Date.now())}; renew with "broker renew")`,
        `  certificate  ${r.files.cert} (leaf + issuing CA)`,
        `  private key  ${r.files.key} (0600; made here, never sent)`,
        `  trust        ${r.files.ca} (root CA)`,
        ...(r.files.p12 ? [`  PKCS#12      ${r.files.p12}${r.files.p12Password ? `, generated password in ${r.files.p12Password}` : ''}`] : []),
      );
    });
}
