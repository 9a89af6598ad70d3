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
  if (opts.config !== undefined) {
    const { loadConfig } = await import('../../config/load.ts');
    routes = bundle.reachableRoutes(loadConfig(opts.config).config, roles);
  }
  const clash = opts.force ? [] : bundle.bundleConflicts(opts.bundle as string, name, o);
  if (clash.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${clash.join(', ')}`);
  return { dir: join(opts.bundle as string, name), routes, writeBundle: bundle.writeBundle };
}

/** After writeBundle: say what is missing from the kit (stderr). */
export async function warnBundle(written: { placeholderUrl: boolean }, routes: unknown): Promise<void> {
  const out = await import('../output.ts');
  if (written.placeholderUrl) out.warn('no --url: the kit\'s README and snippets use the placeholder https://BROKER_HOST:8443; replace it before sending the kit');
  if (!routes) out.warn('no --config: the kit does not list the routes the roles reach');
}
