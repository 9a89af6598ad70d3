/** `broker pki init`: a root CA, an intermediate issuing CA, empty CRLs, an inventory, an audit log. */
import { BrokerError } from '../errors.ts';
import { createIntermediate, createRoot, fingerprint } from './certs.ts';
import { ensureDir, PRIVATE_MODE, PUBLIC_MODE, WriteTransaction } from './files.ts';
import { generateKeyPair, privateKeyPem, type KeyType } from './keys.ts';
import { INVENTORY_FORMAT, serializeInventory, type Inventory } from './inventory.ts';
import { storeLayout } from './layout.ts';
import { caExists, withStoreLock } from './store.ts';
import { commitChange } from './journal.ts';
import { stageCrls } from './crl.ts';
import { DEFAULT_CRL_VALIDITY_MS, MIN_CRL_VALIDITY_MS, checkCrlValidity } from './crl-lifetime.ts';
import { checkTrustDomain } from './names.ts';
import { stageFirstAssertionKey } from './assertion.ts';

const YEAR = 365 * 86_400_000;
export const ROOT_LIFETIME_MS = 20 * YEAR;
export const INTERMEDIATE_LIFETIME_MS = 5 * YEAR;

export interface InitOptions {
  dir: string;
  name: string;
  keyType: KeyType;
  trustDomain: string;
  /** Undefined: keys stored unencrypted (the CLI only allows this with --no-passphrase). */
  passphrase: string | undefined;
  /** The store's default CRL lifetime (30 days); under an hour needs `forceCrlValidity`. */
  crlValidityMs?: number;
  /**
   * The root key's own passphrase: the root can then be kept offline (`broker pki root`), and its
   * CRL is pre-signed for `rootCrlValidityMs`. Undefined: the root shares `passphrase`.
   */
  rootPassphrase?: string | undefined;
  rootCrlValidityMs?: number;
  forceCrlValidity?: boolean;
}

/** How long a root CRL signed by a root operation stays valid unless told otherwise. */
export const DEFAULT_ROOT_CRL_VALIDITY_MS = 180 * 86_400_000;

export interface InitResult {
  dir: string;
  root: { subject: string; serial: string; notAfter: Date; fingerprint: string };
  intermediate: { subject: string; serial: string; notAfter: Date; fingerprint: string };
  encrypted: boolean;
  /** The first identity assertion signing key (ES256), by kid. */
  assertionKid: string;
}

export async function initCa(o: InitOptions): Promise<InitResult> {
  const layout = storeLayout(o.dir);
  checkTrustDomain(o.trustDomain);
  const crlValidityMs = checkCrlValidity(o.crlValidityMs ?? DEFAULT_CRL_VALIDITY_MS, '--crl-next-update', o.forceCrlValidity);
  if (!o.name.trim() || o.name.length > 64) throw new BrokerError('BRK_ERR_USAGE', 'the CA --name must be 1-64 characters');
  ensureDir(o.dir);
  return withStoreLock(layout, async (held) => {
    if (caExists(layout)) throw new BrokerError('BRK_ERR_PKI_CA_EXISTS', `${o.dir} already holds a CA`);
    const now = new Date();
    const rootKeys = await generateKeyPair(o.keyType);
    const rootCert = await createRoot({ name: o.name, keys: rootKeys, keyType: o.keyType, lifetimeMs: ROOT_LIFETIME_MS, now });
    const root = { cert: rootCert, key: rootKeys.privateKey, keyType: o.keyType };
    const intKeys = await generateKeyPair(o.keyType);
    const intCert = await createIntermediate({ name: o.name, publicKey: intKeys.publicKey, issuer: root, lifetimeMs: INTERMEDIATE_LIFETIME_MS, now });
    const intermediate = { cert: intCert, key: intKeys.privateKey, keyType: o.keyType };
    const facts = (c: typeof rootCert) => ({ serial: c.serialNumber.toLowerCase(), notAfter: c.notAfter.toISOString(), fingerprint: fingerprint(c.rawData) });

    const inventory: Inventory = {
      format: INVENTORY_FORMAT,
      ca: {
        name: o.name,
        trustDomain: o.trustDomain,
        keyType: o.keyType,
        encrypted: o.passphrase !== undefined,
        createdAt: now.toISOString(),
        crlValidityMs,
        ...(crlValidityMs < MIN_CRL_VALIDITY_MS ? { crlValidityForced: true } : {}),
        crlNumber: { root: 0, intermediate: 0 },
        root: facts(rootCert),
        intermediate: facts(intCert),
        ...(o.rootPassphrase ? { rootKey: { crlValidityMs: o.rootCrlValidityMs ?? DEFAULT_ROOT_CRL_VALIDITY_MS } } : {}),
      },
      certs: [],
    };
    const tx = new WriteTransaction();
    const rootPem = `${rootCert.toString('pem')}\n`;
    const intPem = `${intCert.toString('pem')}\n`;
    tx.write(layout.rootCert, rootPem, PUBLIC_MODE)
      .write(layout.rootKey, privateKeyPem(rootKeys.privateKey, o.rootPassphrase ?? o.passphrase), PRIVATE_MODE)
      .write(layout.intermediateCert, intPem, PUBLIC_MODE)
      .write(layout.intermediateKey, privateKeyPem(intKeys.privateKey, o.passphrase), PRIVATE_MODE)
      .write(layout.caCert, rootPem, PUBLIC_MODE)
      .write(layout.chain, intPem + rootPem, PUBLIC_MODE);
    await stageCrls(inventory, { root, intermediate, previous: new Map(), previousRoots: new Map() }, layout, tx, now);
    const assertionKid = await stageFirstAssertionKey(layout, tx, now);
    tx.write(layout.inventory, serializeInventory(inventory), PRIVATE_MODE);
    commitChange(layout, tx, {
      op: 'init',
      outcome: 'ok',
      name: o.name,
      serial: inventory.ca.intermediate.serial,
      detail: `keyType=${o.keyType} trustDomain=${o.trustDomain} encrypted=${inventory.ca.encrypted}${o.rootPassphrase ? ' rootPassphrase=own' : ''}`,
    }, () => held.check());
    const summary = (c: typeof rootCert) => ({ subject: c.subject, serial: c.serialNumber.toLowerCase(), notAfter: c.notAfter, fingerprint: fingerprint(c.rawData) });
    return { dir: o.dir, root: summary(rootCert), intermediate: summary(intCert), encrypted: inventory.ca.encrypted, assertionKid };
  });
}
