/**
 * The issuing CA key for the serving process, loaded only when enrollment.enabled: decrypted once
 * with enrollment.passphraseFile (or BROKER_CA_PASSPHRASE) and kept in memory, never logged. Only
 * the issuing (intermediate) key is read; the root key may live elsewhere. After `pki rotate
 * intermediate` the inventory names a new issuing CA and the next signature loads that one.
 */
import { readFileSync } from 'node:fs';
import { BrokerError } from '../errors.ts';
import type { BrokerConfig } from '../config/index.ts';
import type { Issuer } from '../pki/certs.ts';
import type { Inventory } from '../pki/inventory.ts';
import { loadPrivateKey } from '../pki/keys.ts';
import { readText } from '../pki/files.ts';
import type { StoreLayout } from '../pki/layout.ts';
import { x509 } from '../pki/x509.ts';

/** Per store folder: the issuing CA in memory, by its serial (long-lived across generations). */
const loaded = new Map<string, { serial: string; issuer: Promise<Issuer> }>();

export function caPassphrase(c: BrokerConfig): string | undefined {
  const file = c.enrollment.passphraseFile;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `cannot read enrollment.passphraseFile ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
    }
    const first = text.split(/\r?\n/, 1)[0] ?? '';
    if (!first) throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `enrollment.passphraseFile ${file} is empty`);
    return first;
  }
  return process.env.BROKER_CA_PASSPHRASE || undefined;
}

/** Signs with the issuing CA the inventory names; decrypts it on first use (and after a rotation). */
export function issuerSource(layout: StoreLayout, passphrase: string | undefined): (inv: Inventory) => Promise<Issuer> {
  return (inv) => {
    const serial = inv.ca.intermediate.serial;
    const have = loaded.get(layout.dir);
    if (have?.serial === serial) return have.issuer;
    const issuer = (async (): Promise<Issuer> => {
      if (inv.ca.encrypted && !passphrase) {
        throw new BrokerError('BRK_ERR_USAGE_PASSPHRASE_REQUIRED', `enrollment.enabled: the CA keys in ${layout.dir} are encrypted and no passphrase was given`, {
          hint: 'set enrollment.passphraseFile (a file whose first line is the CA passphrase) or BROKER_CA_PASSPHRASE for broker serve',
        });
      }
      const cert = new x509.X509Certificate(readText(layout.intermediateCert, 'issuing CA certificate'));
      if (cert.serialNumber.toLowerCase() !== serial) throw new BrokerError('BRK_ERR_PKI_INVENTORY_CORRUPT', `${layout.intermediateCert} is not the issuing CA the inventory names (${serial})`);
      const key = await loadPrivateKey(readText(layout.intermediateKey, 'issuing CA key'), inv.ca.keyType, layout.intermediateKey, inv.ca.encrypted ? passphrase : undefined);
      return { cert, key, keyType: inv.ca.keyType };
    })();
    loaded.set(layout.dir, { serial, issuer });
    // a failure is not remembered: the next attempt reads the files again
    issuer.catch(() => {
      if (loaded.get(layout.dir)?.issuer === issuer) loaded.delete(layout.dir);
    });
    return issuer;
  };
}
