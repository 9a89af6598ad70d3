/** Shared by `pki issue --bundle` and `pki invite --bundle`: the kit's options and the checks made before anything is issued. */
import type { Command } from 'commander';

export interface BundleCliOptions {
  bundle?: string;
  url?: string;
  config?: string;
  force?: boolean;
}

export function bundleOptions(cmd: Command, what: string): Command {
  return cmd
    .option('--bundle <dir>', `write an onboarding kit for the partner to DIR/NAME/ (${what})`)
    .option('--url <url>', 'with --bundle: https://HOST:PORT the partner reaches the broker at (a placeholder otherwise)')
    .option('--config <file>', 'with --bundle: the broker config, to list the routes and methods the roles reach');
}

/**
 * Checks everything the kit needs before anything is issued (a refusal changes nothing): --url,
 * no --out, the config (read for the routes the roles reach), no existing kit unless --force.
 * Returns the kit folder (DIR/NAME) and the routes.
 */
export async function prepareBundle(name: string, roles: string[], opts: BundleCliOptions, command: Command, o: { token?: boolean } = {}) {
  const [{ BrokerError }, { join }, bundle] = await Promise.all([import('../../errors.ts'), import('node:path'), import('../../pki/bundle.ts')]);
  if (command.getOptionValueSource('out') === 'cli') throw new BrokerError('BRK_ERR_USAGE', '--bundle DIR writes the credentials to DIR/NAME/: leave out --out');
  if (opts.url !== undefined) bundle.checkBundleUrl(opts.url);
  let routes: ReturnType<typeof bundle.reachableRoutes> | undefined;
  /** What the config says of enrolment (invitation kits): undefined without --config. */
  let enrollment: { enabled: boolean; optionalPort: number | undefined } | undefined;
  if (opts.config !== undefined) {
    const { loadConfig } = await import('../../config/load.ts');
    const config = loadConfig(opts.config).config;
    routes = bundle.reachableRoutes(config, roles);
    enrollment = { enabled: config.enrollment.enabled, optionalPort: config.listenCertOptional?.port };
  }
  const clash = opts.force ? [] : bundle.bundleConflicts(opts.bundle as string, name, o);
  if (clash.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${clash.join(', ')}`);
  return { dir: join(opts.bundle as string, name), routes, enrollment, writeBundle: bundle.writeBundle, enrollUrlOf: bundle.enrollUrlOf };
}

/** After writeBundle: say what is missing from the kit (stderr). */
export async function warnBundle(written: { placeholderUrl: boolean; placeholderEnrollUrl?: boolean | undefined }, routes: unknown, enrollment?: { enabled: boolean; optionalPort: number | undefined }): Promise<void> {
  const out = await import('../output.ts');
  if (written.placeholderUrl) out.warn('no --url: the kit\'s README and snippets use the placeholder https://BROKER_HOST:8443; replace it before sending the kit');
  if (written.placeholderEnrollUrl) out.warn('no --enroll-url (nor --url with a --config whose listenCertOptional has a fixed port): the kit\'s enroll command uses the placeholder https://BROKER_HOST:8444; replace it before sending the kit');
  if (!routes) out.warn('no --config: the kit does not list the routes the roles reach');
  if (enrollment && !enrollment.enabled) out.warn('the config has enrollment.enabled false: the partner cannot enrol until it is true');
  if (enrollment && enrollment.optionalPort === undefined) out.warn('the config has no listenCertOptional: enrolment is served only there, add it');
}
