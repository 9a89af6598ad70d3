import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  config: string;
  json?: boolean;
}

export function register(program: Command): void {
  const config = program.command('config').summary('check a configuration').description('Work with broker configuration files.');
  config
    .command('check')
    .summary('validate a config (and its certificates) without starting')
    .description('Validate the config against the schema, then load the TLS material it names (server certificate and key, client CA, CRLs) and the credential settings (keys.json, JWKS) as "serve" would. Prints every problem as "path: problem" and exits 2 when there is any.')
    .requiredOption('-c, --config <file>', 'config file', 'broker.yaml')
    .option('--json', 'print {ok, problems} as JSON')
    .addHelpText('after', examples('broker config check --config broker.yaml'))
    .action(async (opts: Opts) => {
      const [{ readFileSync }, { dirname, resolve }, cfg, { loadTlsMaterial }, { BrokerError, isBrokerError }, out] = await Promise.all([
        import('node:fs'),
        import('node:path'),
        import('../config/index.ts'),
        import('../tls/material.ts'),
        import('../errors.ts'),
        import('./output.ts'),
      ]);
      let text: string;
      try {
        text = readFileSync(opts.config, 'utf8');
      } catch (cause) {
        throw new BrokerError('BRK_ERR_CONFIG_READ', `cannot read config ${opts.config}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
      }
      const { config, problems, candidate, badSections } = cfg.validateConfig(cfg.parseConfigText(text, opts.config), dirname(resolve(opts.config)));
      if (candidate && !badSections.has('tls') && !badSections.has('pki') && !badSections.has('*') && !problems.some((p) => p.startsWith('tls:'))) {
        try {
          loadTlsMaterial(candidate);
        } catch (err) {
          if (!isBrokerError(err)) throw err;
          problems.push(...err.message.split('\n').slice(1).map((l) => `tls: ${l.trim()}`));
        }
      }
      if (candidate && problems.length === 0) {
        // The compile step serve and reload run (durations, sizes), and the credential verifiers
        // as serve builds them: keys.json readable, JWKS settings sound.
        const { buildVerifiers } = await import('../auth/index.ts');
        try {
          cfg.settingsOf(candidate);
          buildVerifiers(candidate);
        } catch (err) {
          if (!isBrokerError(err)) throw err;
          const lines = err.message.split('\n').map((l) => l.trim()).filter(Boolean);
          problems.push(...(lines.length > 1 ? lines.slice(1) : lines).map((l) => (l.startsWith('auth') ? l : `auth: ${l}`)));
        }
        // Routes that send the jwt identity format need an assertion key in the store, as serve does.
        const { loadAssertionKeys, usesAssertions } = await import('../pki/assertion.ts');
        if (usesAssertions(candidate)) {
          try {
            loadAssertionKeys(candidate.pki.dir);
          } catch (err) {
            if (!isBrokerError(err)) throw err;
            problems.push(`assertion: ${err.code}: ${err.message} (${err.hint})`);
          }
        }
      }
      if (opts.json) out.printJson({ ok: problems.length === 0, problems });
      else if (!problems.length) {
        // whether the forward listener requires a client certificate is decided here, once (a TLS option fixed at start)
        const fwd = config?.forward ? `; forward listener: client certificate ${cfg.settingsOf(config).forward?.certOptional ? 'optional (a forward rule accepts Proxy-Authorization)' : 'required'}` : '';
        out.printLines(`${opts.config}: ok (${config?.routes.length ?? 0} routes${fwd})`);
      }
      if (problems.length) {
        if (!opts.json) process.stderr.write(`${problems.map((p) => `${opts.config}: ${p}`).join('\n')}\n`);
        throw new BrokerError('BRK_ERR_CONFIG_INVALID', `${opts.config} has ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
      }
    });
}
