/** Options and steps shared by the `broker pki` leaf commands. Light imports only (help must stay instant). */
import type { Command } from 'commander';
import { isBrokerError } from '../../errors.ts';
import { caPassphraseSource, resolveSecret, rootPassphraseSource } from '../secrets.ts';

export interface StoreOptions {
  dir?: string;
  passphraseFile?: string;
  rootPassphraseFile?: string;
  json?: boolean;
}

export function storeOptions(cmd: Command, o: { passphrase?: boolean; root?: boolean; json?: boolean } = {}): Command {
  cmd.option('--dir <dir>', 'CA store folder (default: $BROKER_PKI_DIR or ./pki)');
  if (o.passphrase !== false) cmd.option('--passphrase-file <file>', 'file whose first line is the CA passphrase (or set BROKER_CA_PASSPHRASE)');
  if (o.root) cmd.option('--root-passphrase-file <file>', 'file whose first line is the root key\'s own passphrase (or set BROKER_ROOT_CA_PASSPHRASE); for a store whose root has one');
  if (o.json) cmd.option('--json', 'print JSON instead of text');
  return cmd;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

/** Opens the store named by --dir / BROKER_PKI_DIR / ./pki (it must hold a CA). */
export async function openStore(opts: StoreOptions) {
  const [{ CaStore }, { resolveStoreDir }] = await Promise.all([import('../../pki/store.ts'), import('../../pki/layout.ts')]);
  return CaStore.open(resolveStoreDir(opts.dir));
}

/**
 * The CA passphrase for a command that signs: asked for only when the store's keys are encrypted.
 * An inventory that cannot be read is left for the command to report: it reads it again under the
 * store lock, fails with the same code, and records the failure in the audit log.
 */
export async function caPassphrase(store: { readInventory(): { ca: { encrypted: boolean } } }, opts: StoreOptions): Promise<string | undefined> {
  let encrypted: boolean;
  try {
    encrypted = store.readInventory().ca.encrypted;
  } catch (err) {
    if (isBrokerError(err)) return undefined;
    throw err;
  }
  if (!encrypted) return undefined;
  return resolveSecret(caPassphraseSource(opts.passphraseFile));
}

/**
 * The root key's own passphrase, for root operations: only asked for when the store's root has one
 * (`always`: when the command needs it regardless, e.g. to read an export folder).
 */
export async function rootPassphrase(store: { readInventory(): { ca: { rootKey?: unknown } } }, opts: StoreOptions, always = false): Promise<string | undefined> {
  let own: boolean;
  try {
    own = store.readInventory().ca.rootKey !== undefined;
  } catch (err) {
    if (isBrokerError(err)) return undefined;
    throw err;
  }
  if (!own && !always) return undefined;
  return resolveSecret(rootPassphraseSource(opts.rootPassphraseFile));
}

/**
 * Warns when the store holds a CRL lifetime under an hour that an older `pki crl --next-update`
 * persisted: it is ignored (crl-lifetime.ts). An unreadable inventory is left to the command.
 */
export async function warnIgnoredCrlLifetime(store: { readInventory(): { ca: { crlValidityMs: number; crlValidityForced?: boolean } } }): Promise<void> {
  const [{ storeCrlValidity, ignoredWarning }, { warn }] = await Promise.all([import('../../pki/crl-lifetime.ts'), import('../output.ts')]);
  let message: string | undefined;
  try {
    message = ignoredWarning(storeCrlValidity(store.readInventory().ca));
  } catch (err) {
    if (isBrokerError(err)) return;
    throw err;
  }
  if (message) warn(`${message} (set the lifetime at "broker pki init --crl-next-update", or per publication with "broker pki crl --next-update")`);
}

export async function ttl(value: string | undefined, fallbackMs: number): Promise<number> {
  if (value === undefined) return fallbackMs;
  const [{ parseDuration }, { BrokerError }] = await Promise.all([import('../../config/duration.ts'), import('../../errors.ts')]);
  const ms = parseDuration(value, '--ttl');
  if (ms < 60_000) throw new BrokerError('BRK_ERR_USAGE_TTL', `--ttl ${value} is shorter than the 1 minute a certificate needs to be usable`);
  return ms;
}
