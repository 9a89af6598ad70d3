import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  url: string;
  cert: string;
  key: string;
  ca?: string;
  listen?: string;
  forward?: boolean;
  renewUrl?: string;
  allowRemote?: boolean;
  via?: string;
  viaAuthFile?: string;
  apiKeyFile?: string;
  apiKeyHeader: string;
  renew: boolean;
  renewAt: string;
}

export function register(program: Command): void {
  program
    .command('connect')
    .summary('partner side: a local plain-HTTP port that forwards to the broker over mutual TLS')
    .description(
      'Listen for plain HTTP on a local port and forward every request to the broker at --url over mutual TLS with ' +
        'the client certificate --cert/--key, keeping connections to the broker alive, so that software that cannot ' +
        'do client certificates can still use the broker. With --via, connections go through an outbound HTTP proxy ' +
        '(CONNECT); its credentials come from the URL (http://USER:PASS@HOST:PORT), --via-auth-file or BROKER_PROXY_AUTH ' +
        '(USER:PASS). The certificate files are watched and reloaded when they change (a failed reload keeps the old ' +
        'certificate). Once --renew-at (0.7) of the certificate\'s lifetime has passed, it renews the certificate over ' +
        'mTLS (as "broker renew" does: new key, files replaced in place) and swaps to it without dropping a request; ' +
        'failures are logged and retried while the current certificate serves (--no-renew: never; not with --via). ' +
        'One JSON log line per request on stderr. SIGTERM or SIGINT stops it.\n\n' +
        'The listener stays on loopback: anything that can reach it acts with your certificate, as your identity, at the ' +
        'broker, so a listener on the network would hand your identity to everyone on it. --allow-remote lifts the ' +
        'check for setups that control access themselves (a container network, a host firewall).\n\n' +
        'With --forward, the local port (default 127.0.0.1:3128) is an HTTP proxy for tools that only know ' +
        'HTTP_PROXY/HTTPS_PROXY, and --url is the broker\'s forward listener (https://HOST:3129): CONNECT host:port ' +
        'becomes a tunnel through the broker and absolute-form http:// requests are sent on in absolute form, both over ' +
        'mutual TLS; the broker\'s rules decide which destinations may be reached, and its refusals (403 with a code) ' +
        'reach the tool. Origin-form requests are refused (400 BRK_ERR_CONNECT_NOT_PROXY). The forward listener does ' +
        'not renew certificates: give --renew-url (the broker\'s main listener) to keep renewing. --via works as without ' +
        '--forward (the TLS connections to the broker go through the proxy); --api-key-file does not apply.',
    )
    .requiredOption('--url <url>', 'the broker: https://HOST[:PORT][/base]')
    .requiredOption('--cert <file>', 'client certificate (PEM, leaf first, chain after it)')
    .requiredOption('--key <file>', 'its private key (PEM, unencrypted)')
    .option('--ca <file>', 'CA certificate(s) that sign the broker\'s server certificate (default: the system roots)')
    .option('--listen <addr>', 'local address: HOST:PORT, [IPv6]:PORT or PORT; port 0 picks a free one (default: 127.0.0.1:8080, with --forward 127.0.0.1:3128)')
    .option('--forward', 'be a local HTTP proxy (CONNECT, absolute-form http://) to the broker\'s forward listener at --url')
    .option('--renew-url <url>', 'with --forward: the broker\'s main listener, https://HOST:PORT, where the certificate is renewed')
    .option('--allow-remote', 'allow a --listen address beyond loopback (exposes your identity to whoever reaches it)')
    .option('--via <url>', 'outbound HTTP proxy: http://[USER:PASS@]HOST:PORT')
    .option('--via-auth-file <file>', 'file whose first line is the proxy USER:PASS (or set BROKER_PROXY_AUTH)')
    .option('--api-key-file <file>', 'file whose first line is an API key ("broker keys create"), sent with every request (or set BROKER_API_KEY); for routes with auth [mtls, apiKey]')
    .option('--api-key-header <name>', 'the header the broker reads API keys from (its auth.apiKeyHeader)', 'x-api-key')
    .option('--no-renew', 'do not renew the certificate by itself (renewal: POST /.well-known/broker/renew, needs enrollment.enabled on the broker)')
    .option('--renew-at <fraction>', 'renew once this fraction of the certificate\'s lifetime has passed (at least the broker\'s enrollment.renewAfter)', '0.7')
    .addHelpText(
      'after',
      examples(
        'broker connect --url https://broker.acme.example:8443 --cert acme-billing.crt --key acme-billing.key --ca ca.crt',
        'broker connect --url https://broker.acme.example --cert p.crt --key p.key --listen 127.0.0.1:9000 --via http://proxy.corp:3128 --via-auth-file proxy.pass',
        'curl http://127.0.0.1:8080/orders/1',
        'broker connect --forward --url https://broker.acme.example:3129 --renew-url https://broker.acme.example:8443 --cert p.crt --key p.key --ca ca.crt',
        'HTTPS_PROXY=http://127.0.0.1:3128 curl https://api.partner.example/v1/orders',
      ),
    )
    .action(async (opts: Opts) => {
      const [{ parseTarget, parseListen, parseVia, startConnect }, { createLoggers }, { readSecretFile }, { BrokerError }] = await Promise.all([
        import('../connect/index.ts'),
        import('../observability/loggers.ts'),
        import('./secrets.ts'),
        import('../errors.ts'),
      ]);
      const target = parseTarget(opts.url);
      const forward = Boolean(opts.forward);
      const listen = parseListen(opts.listen ?? (forward ? '127.0.0.1:3128' : '127.0.0.1:8080'), Boolean(opts.allowRemote));
      if (forward) {
        if (target.basePath !== '') throw new BrokerError('BRK_ERR_CONNECT_URL', `with --forward, --url is the broker's forward listener (https://HOST:PORT): a path (${target.basePath}) has no meaning there`);
        if (opts.apiKeyFile) throw new BrokerError('BRK_ERR_USAGE', '--api-key-file does not apply with --forward: the forward listener takes the certificate only');
      } else if (opts.renewUrl) {
        throw new BrokerError('BRK_ERR_USAGE', '--renew-url is for --forward (without it, --url is where the certificate is renewed)');
      }
      let renewOrigin: string | undefined;
      try {
        renewOrigin = opts.renewUrl ? parseTarget(opts.renewUrl).origin : undefined;
      } catch (err) {
        // the same rules as --url, said of --renew-url
        throw new BrokerError('BRK_ERR_CONNECT_URL', (err as Error).message.replace(/^--url/, '--renew-url'), { cause: err });
      }
      if (opts.viaAuthFile && !opts.via) throw new BrokerError('BRK_ERR_USAGE', '--via-auth-file needs --via');
      let via;
      if (opts.via) {
        const fromEnv = process.env.BROKER_PROXY_AUTH;
        const credentials = opts.viaAuthFile
          ? { value: readSecretFile(opts.viaAuthFile, 'proxy credentials'), from: '--via-auth-file' }
          : fromEnv
            ? { value: fromEnv, from: 'BROKER_PROXY_AUTH' }
            : undefined;
        via = parseVia(opts.via, credentials);
      }
      const apiKeyValue = forward ? undefined : opts.apiKeyFile ? readSecretFile(opts.apiKeyFile, 'API key') : process.env.BROKER_API_KEY;
      if (apiKeyValue !== undefined && !/^brk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/.test(apiKeyValue)) {
        throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `the API key from ${opts.apiKeyFile ?? 'BROKER_API_KEY'} is not of the form brk_<id>_<secret> printed by "broker keys create"`);
      }
      if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(opts.apiKeyHeader)) throw new BrokerError('BRK_ERR_USAGE', `--api-key-header "${opts.apiKeyHeader}" is not a lower-case header name`);
      const apiKey = apiKeyValue === undefined ? undefined : { header: opts.apiKeyHeader, value: apiKeyValue };
      const renewAt = Number(opts.renewAt);
      if (!(renewAt >= 0 && renewAt < 1)) throw new BrokerError('BRK_ERR_USAGE', `--renew-at ${opts.renewAt} is not a fraction between 0 and 1`);
      const loggers = createLoggers({ level: 'info', auth: 'off', access: 'stderr', error: 'stderr', audit: 'stderr' });
      // The forward listener has no renewal endpoint: with --forward, renewal needs --renew-url.
      const renews = opts.renew && !via && (!forward || renewOrigin !== undefined);
      const connector = await startConnect({ target, listen, via, apiKey, forward, renewOrigin, files: { cert: opts.cert, key: opts.key, ca: opts.ca }, renewAt: renews ? renewAt : undefined }, loggers);
      if (forward && opts.renew && !via && renewOrigin === undefined) {
        loggers.error.warn({ event: 'renew', outcome: 'off' }, 'the certificate is not renewed by itself with --forward unless --renew-url names the broker\'s main listener');
      }
      await new Promise<void>((done) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) {
            loggers.error.warn({ event: 'shutdown', signal, pid: process.pid }, 'second signal: exiting at once');
            loggers.flush();
            process.exit(1);
          }
          stopping = true;
          loggers.error.info({ event: 'shutdown', signal, pid: process.pid }, 'shutting down: running requests may finish');
          void connector.close().finally(() => {
            process.off('SIGTERM', stop);
            process.off('SIGINT', stop);
            loggers.flush();
            done();
          });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        connector.announce();
      });
    });
}
