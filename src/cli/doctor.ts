import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  config: string;
  json?: boolean;
  firewall?: boolean;
  days: string;
  hostname: string[];
  client?: boolean;
  url?: string;
  cert?: string;
  key?: string;
  ca?: string;
  via?: string;
  path?: string;
  servername?: string;
  resolve?: string;
  p12?: string;
  p12PasswordFile?: string;
  forward?: boolean;
  destination?: string;
  timeout: string;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .summary('find what blocks a connection, on the broker\'s host or the partner\'s')
    .description('On the broker\'s host: config, listen and admin ports (and who holds them), admin exposure, local firewall rules, server certificate and key, chain, CA and CRL validity (a CRL for every CA level), key file permissions, and every upstream. With --client, on the partner\'s side: walks DNS, TCP (or the proxy\'s CONNECT), TLS (is it really the broker?) and one HTTP request, and names the first failure. With --client --forward, the same walk to the forward (egress) listener (port 3129 unless --url names one): is the certificate admitted, and with --destination may it open a tunnel there. Exit 0 when all is well, 3 when a problem was found.')
    .option('-c, --config <file>', 'config file (server side)', 'broker.yaml')
    .option('--json', 'print the findings as JSON')
    .option('--firewall', 'print an nftables snippet for this config and exit')
    .option('--days <n>', 'warn about certificates expiring within this many days', '14')
    .option('--hostname <host>', 'a name partners use to reach the broker: the server certificate must cover it (repeat)', (v: string, p: string[] = []) => [...p, v], [])
    .option('--client', 'check from the partner\'s side (needs --url, and --cert with --key or --p12)')
    .option('--url <url>', 'the broker, e.g. https://broker.acme.example:8443')
    .option('--cert <file>', 'the partner\'s certificate')
    .option('--key <file>', 'the partner\'s key')
    .option('--p12 <file>', 'the partner\'s identity as PKCS#12 (password: --p12-password-file or BROKER_P12_PASSWORD)')
    .option('--p12-password-file <file>', 'PKCS#12 password (first line)')
    .option('--ca <file>', 'the broker\'s CA (ca.crt): without it the server is verified against the system roots, which do not know a private CA')
    .option('--servername <name>', 'the name to send as SNI and check the server certificate against (default: the --url host)')
    .option('--resolve <host:port:addr>', 'curl-style: connect to ADDR for HOST:PORT instead of asking DNS (test before DNS exists)')
    .option('--via <url>', 'an outbound HTTP proxy, e.g. http://user:pass@proxy:3128')
    .option('--path <path>', 'the path to request once connected', '/')
    .option('--forward', 'with --client: check the forward (egress) listener at --url (port 3129 unless the URL names one)')
    .option('--destination <host:port>', 'with --client --forward: ask for a tunnel (CONNECT) to this destination and report whether the broker allows it')
    .option('--timeout <duration>', 'per step', '5s')
    .addHelpText('after', examples('broker doctor --config broker.yaml', 'broker doctor --firewall', 'broker doctor --client --url https://broker.acme.example:8443 --cert acme.crt --key acme.key --ca ca.crt --via http://proxy:3128', 'broker doctor --client --url https://broker.acme.example:8443 --p12 acme.p12 --ca ca.crt --resolve broker.acme.example:8443:203.0.113.7', 'broker doctor --client --forward --url https://broker.acme.example --cert acme.crt --key acme.key --ca ca.crt --destination api.partner.example:443'))
    .action(async (opts: Opts) => {
      const [{ BrokerError }, out, { formatFindings }, { parseDuration }] = await Promise.all([import('../errors.ts'), import('./output.ts'), import('../doctor/finding.ts'), import('../config/duration.ts')]);
      let findings;
      if ((opts.forward || opts.destination !== undefined) && !opts.client) throw new BrokerError('BRK_ERR_USAGE', '--forward and --destination are for the partner\'s side: add --client');
      if (opts.destination !== undefined && !opts.forward) throw new BrokerError('BRK_ERR_USAGE', '--destination needs --forward (it asks the forward listener for a tunnel)');
      if (opts.client) {
        if (!opts.url || !(opts.p12 || (opts.cert && opts.key))) throw new BrokerError('BRK_ERR_USAGE', '--client needs --url, and --cert with --key or --p12');
        if (opts.p12 && (opts.cert || opts.key)) throw new BrokerError('BRK_ERR_USAGE', 'give either --cert/--key or --p12, not both');
        const { doctorClient, parseResolve } = await import('../doctor/client.ts');
        if (opts.resolve && !parseResolve(opts.resolve)) throw new BrokerError('BRK_ERR_USAGE', `--resolve "${opts.resolve}" is not HOST:PORT:ADDRESS (an IP address)`);
        let p12Password: string | undefined;
        if (opts.p12) {
          const { readFileSync } = await import('node:fs');
          p12Password = opts.p12PasswordFile ? (readFileSync(opts.p12PasswordFile, 'utf8').split(/\r?\n/)[0] ?? '') : process.env.BROKER_P12_PASSWORD;
        }
        const o = { url: opts.url, cert: opts.cert, key: opts.key, p12: opts.p12, p12Password, ca: opts.ca, via: opts.via, servername: opts.servername, resolve: opts.resolve, path: opts.path ?? '/', timeoutMs: parseDuration(opts.timeout, '--timeout') };
        if (opts.forward) {
          const [{ doctorForward }, { connectTarget }] = await Promise.all([import('../doctor/forward.ts'), import('../forward/target.ts')]);
          // the forward listener's own reading of a CONNECT target, so a malformed one is a usage error here
          if (opts.destination !== undefined && !connectTarget(opts.destination).ok) throw new BrokerError('BRK_ERR_USAGE', `--destination "${opts.destination}" is not HOST:PORT (a DNS name, an IPv4 address or a bracketed IPv6 address, and a port)`);
          findings = await doctorForward({ ...o, destination: opts.destination });
        } else findings = await doctorClient(o);
      } else {
        const [{ loadConfig }, doctor] = await Promise.all([import('../config/index.ts'), import('../doctor/server.ts')]);
        const { config } = loadConfig(opts.config);
        if (opts.firewall) return out.printLines(doctor.nftablesSnippet(config));
        findings = await doctor.doctorServer(config, { warnDays: Number(opts.days), hostnames: opts.hostname });
      }
      const failed = findings.filter((f) => f.status === 'fail');
      if (opts.json) out.printJson({ ok: failed.length === 0, findings });
      else out.printLines(formatFindings(findings));
      if (failed.length) throw new BrokerError('BRK_ERR_DOCTOR_PROBLEMS', `${failed.length} problem${failed.length === 1 ? '' : 's'} found: ${failed.map((f) => f.check).join(', ')}`);
    });
}
