import type { Command } from 'commander';
import { examples } from './pki/common.ts';
import type { BrokerConfig, Locator, Problem, Validation } from '../config/index.ts';

interface Opts {
  config: string;
  json?: boolean;
}

/** Reads and validates FILE, keeping each problem's line and column. */
async function validateFile(file: string): Promise<Validation & { locate?: Locator }> {
  const [{ readFileSync }, { dirname, resolve }, cfg, { BrokerError }] = await Promise.all([import('node:fs'), import('node:path'), import('../config/index.ts'), import('../errors.ts')]);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONFIG_READ', `cannot read config ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  const parsed = cfg.parseConfigSource(text, file);
  if (parsed.syntax.length) return { problems: parsed.syntax.map(cfg.problemText), details: parsed.syntax, badSections: new Set(['*']) };
  return { ...cfg.validateConfig(parsed.value, dirname(resolve(file)), parsed.locate), locate: parsed.locate };
}

/** The checks `serve` runs past the schema: TLS material, the compile step, credential verifiers, assertion keys. */
async function loadChecks(candidate: BrokerConfig, schemaOk: boolean, tlsOk: boolean): Promise<string[]> {
  const [{ loadTlsMaterial }, { isBrokerError }, cfg] = await Promise.all([import('../tls/material.ts'), import('../errors.ts'), import('../config/index.ts')]);
  const problems: string[] = [];
  if (tlsOk) {
    try {
      loadTlsMaterial(candidate);
    } catch (err) {
      if (!isBrokerError(err)) throw err;
      problems.push(...err.message.split('\n').slice(1).map((l) => `tls: ${l.trim()}`));
    }
  }
  if (!schemaOk || problems.length) return problems;
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
  return problems;
}

/** Prints the problems (JSON on stdout, or `file:line:column: path: message` on stderr) and fails. */
async function fail(file: string, details: Problem[], json: boolean | undefined): Promise<never> {
  const [cfg, out, { BrokerError }] = await Promise.all([import('../config/index.ts'), import('./output.ts'), import('../errors.ts')]);
  // in the order of the file, as a compiler lists them; problems without a position last
  details = [...details].sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
  if (json) out.printJson({ ok: false, problems: details });
  else process.stderr.write(`${details.map((p) => cfg.formatProblem(file, p)).join('\n')}\n`);
  throw new BrokerError('BRK_ERR_CONFIG_INVALID', `${file} has ${details.length} problem${details.length === 1 ? '' : 's'}`);
}

export function register(program: Command): void {
  const config = program.command('config').summary('check or print a configuration').description('Work with broker configuration files.');
  config
    .command('check')
    .summary('validate a config (and its certificates) without starting')
    .description('Validate the config against the schema, then load the TLS material it names (server certificate and key, client CA, CRLs) and the credential settings (keys.json, JWKS) as "serve" would. Prints every problem as "FILE:LINE:COLUMN: path: problem" (with "did you mean" for a misspelt key) and exits 2 when there is any.')
    .requiredOption('-c, --config <file>', 'config file', 'broker.yaml')
    .option('--json', 'print {ok, problems: [{path, line, column, message}]} as JSON')
    .addHelpText('after', examples('broker config check --config broker.yaml', 'broker config check -c broker.yaml --json'))
    .action(async (opts: Opts) => {
      const [cfg, out] = await Promise.all([import('../config/index.ts'), import('./output.ts')]);
      const v = await validateFile(opts.config);
      const { candidate, badSections } = v;
      const details = [...v.details];
      if (candidate && !badSections.has('*')) {
        const tlsOk = !badSections.has('tls') && !badSections.has('pki') && !v.details.some((p) => p.path === 'tls');
        details.push(...(await loadChecks(candidate, details.length === 0, tlsOk)).map((l) => cfg.locateProblem(l, v.locate)));
      }
      if (details.length) return fail(opts.config, details, opts.json);
      if (opts.json) out.printJson({ ok: true, problems: [] });
      else {
        // whether the forward listener requires a client certificate is decided here, once (a TLS option fixed at start)
        const c = v.config;
        const fwd = c?.forward ? `; forward listener: client certificate ${cfg.settingsOf(c).forward?.certOptional ? 'optional (a forward rule accepts Proxy-Authorization)' : 'required'}` : '';
        out.printLines(`${opts.config}: ok (${c?.routes.length ?? 0} routes${fwd})`);
      }
    });
  config
    .command('print')
    .summary('print the effective config: defaults filled in, secrets redacted')
    .description('Validate the config against the schema and print it as the broker reads it: every default filled in, relative paths resolved against the config\'s folder. Secrets written in the config itself (collector headers, webhook URL paths and queries, URL credentials, anything named like a password, token or key, PEM blocks) are printed as <redacted>; files holding secrets are named, never read. Exit 2 with the problems, as "config check" prints them, when the config is not valid.')
    .requiredOption('-c, --config <file>', 'config file', 'broker.yaml')
    .option('--json', 'print the effective config as JSON')
    .addHelpText('after', examples('broker config print --config broker.yaml', 'broker config print -c broker.yaml --json | jq .limits'))
    .action(async (opts: Opts) => {
      const [{ redactSecrets }, { stringify }, out] = await Promise.all([import('../config/redact.ts'), import('yaml'), import('./output.ts')]);
      const v = await validateFile(opts.config);
      if (!v.config) return fail(opts.config, v.details, opts.json);
      const shown = redactSecrets(v.config);
      if (opts.json) out.printJson(shown);
      else process.stdout.write(`# the effective configuration of ${opts.config}: defaults filled in, paths resolved, secrets <redacted>\n${stringify(shown, { lineWidth: 0 })}`);
    });
}
