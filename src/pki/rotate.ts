/**
 * `broker pki rotate intermediate`: a new issuing CA signed by the same root. During the overlap
 * the old one stays trusted (in chain.pem, with its own CRL) so certificates it issued keep
 * working while they are renewed; new issuance uses the new one. When the overlap ends (at the next
 * CRL publication: run `broker pki crl` from a timer) the old one is retired: dropped from the
 * chain and listed as revoked (superseded) in the root's CRL.
 */
import { createCrossCert, createIntermediate, createRoot, fingerprint } from './certs.ts';
import { PRIVATE_MODE, PUBLIC_MODE, readText } from './files.ts';
import { generateKeyPair, privateKeyPem } from './keys.ts';
import { INTERMEDIATE_LIFETIME_MS, ROOT_LIFETIME_MS } from './init.ts';
import { stageChain, stageCrls } from './crl.ts';
import { statusOf } from './inventory.ts';
import type { CaStore, RootKeys } from './store.ts';

export interface RotationPlan {
  from: { serial: string; notAfter: string };
  retireAt: string;
  /** Valid certificates issued by the current issuing CA: they keep working until retireAt. */
  affected: Array<{ name: string; type: string; serial: string; notAfter: string }>;
}

export function planIntermediateRotation(store: CaStore, overlapMs: number, now = Date.now()): RotationPlan {
  const inv = store.readInventory();
  return {
    from: { serial: inv.ca.intermediate.serial, notAfter: inv.ca.intermediate.notAfter },
    retireAt: new Date(now + overlapMs).toISOString(),
    affected: inv.certs.filter((c) => c.issuer === inv.ca.intermediate.serial && statusOf(c, now) === 'valid').map((c) => ({ name: c.name, type: c.type, serial: c.serial, notAfter: c.notAfter })),
  };
}

export async function rotateIntermediate(store: CaStore, o: { overlapMs: number; passphrase?: string; rootPassphrase?: string }): Promise<{ serial: string; notAfter: string; retireAt: string; previous: string }> {
  return store.mutate('rotate-intermediate', { ca: o.passphrase, root: o.rootPassphrase }, async (ctx) => {
    const keys = await ctx.rootKeys();
    const inv = ctx.inventory;
    const l = ctx.layout;
    const now = new Date();
    const old = inv.ca.intermediate;
    // keep the old issuing CA under its serial for the overlap (its key signs its CRL meanwhile)
    const encrypted = inv.ca.encrypted;
    ctx.tx.write(l.previousIntermediateCert(old.serial), readText(l.intermediateCert, 'CA certificate'), PUBLIC_MODE);
    ctx.tx.write(l.previousIntermediateKey(old.serial), readText(l.intermediateKey, 'CA key'), PRIVATE_MODE);
    const pair = await generateKeyPair(inv.ca.keyType);
    const cert = await createIntermediate({ name: inv.ca.name, publicKey: pair.publicKey, issuer: keys.root, lifetimeMs: INTERMEDIATE_LIFETIME_MS, now, generation: (inv.ca.previous?.length ?? 0) + 2 });
    ctx.tx.write(l.intermediateCert, `${cert.toString('pem')}\n`, PUBLIC_MODE);
    ctx.tx.write(l.intermediateKey, privateKeyPem(pair.privateKey, encrypted ? o.passphrase : undefined), PRIVATE_MODE);
    const retireAt = new Date(now.getTime() + o.overlapMs).toISOString();
    inv.ca.previous = [...(inv.ca.previous ?? []), { ...old, retireAt, crlNumber: inv.ca.crlNumber.intermediate, root: inv.ca.root.serial }];
    inv.ca.intermediate = { serial: cert.serialNumber.toLowerCase(), notAfter: cert.notAfter.toISOString(), fingerprint: fingerprint(cert.rawData) };
    const next = { ...keys, previous: new Map(keys.previous).set(old.serial, keys.intermediate), intermediate: { cert, key: pair.privateKey, keyType: inv.ca.keyType } };
    stageChain(inv, next, l, ctx.tx);
    await stageCrls(inv, next, l, ctx.tx, now);
    return {
      result: { serial: inv.ca.intermediate.serial, notAfter: inv.ca.intermediate.notAfter, retireAt, previous: old.serial },
      audit: { serial: inv.ca.intermediate.serial, detail: `previous=${old.serial} retireAt=${retireAt}` },
    };
  });
}

/**
 * `broker pki rotate root`: a new root, a new issuing CA under it, and a cross certificate (the new
 * issuing CA signed by the old root). During the overlap both roots are trusted (ca.crt, chain.pem, a CRL
 * for each), and server chains carry the cross certificate so clients that still trust only the
 * old root reach the new one. Hand the new ca.crt to partners during the overlap; after it, the
 * old root and the issuing CA under it are retired.
 */
export async function rotateRoot(store: CaStore, o: { overlapMs: number; passphrase?: string; rootPassphrase?: string }): Promise<{ root: string; intermediate: string; cross: string; retireAt: string; previousRoot: string }> {
  return store.mutate('rotate-root', { ca: o.passphrase, root: o.rootPassphrase }, async (ctx) => {
    const keys = await ctx.rootKeys();
    const inv = ctx.inventory;
    const l = ctx.layout;
    const now = new Date();
    const retireAt = new Date(now.getTime() + o.overlapMs).toISOString();
    const pass = inv.ca.encrypted ? o.passphrase : undefined;
    // a root with its own passphrase keeps it across the rollover
    const rootPass = inv.ca.rootKey ? o.rootPassphrase : pass;
    const oldRoot = inv.ca.root;
    const oldInt = inv.ca.intermediate;
    ctx.tx.write(l.previousRootCert(oldRoot.serial), readText(l.rootCert, 'CA certificate'), PUBLIC_MODE);
    ctx.tx.write(l.previousRootKey(oldRoot.serial), readText(l.rootKey, 'CA key'), PRIVATE_MODE);
    ctx.tx.write(l.previousIntermediateCert(oldInt.serial), readText(l.intermediateCert, 'CA certificate'), PUBLIC_MODE);
    ctx.tx.write(l.previousIntermediateKey(oldInt.serial), readText(l.intermediateKey, 'CA key'), PRIVATE_MODE);

    const rootPair = await generateKeyPair(inv.ca.keyType);
    const rootCert = await createRoot({ name: inv.ca.name, keys: rootPair, keyType: inv.ca.keyType, lifetimeMs: ROOT_LIFETIME_MS, now, generation: (inv.ca.previousRoots?.length ?? 0) + 2 });
    const root = { cert: rootCert, key: rootPair.privateKey, keyType: inv.ca.keyType };
    const intPair = await generateKeyPair(inv.ca.keyType);
    const intCert = await createIntermediate({ name: inv.ca.name, publicKey: intPair.publicKey, issuer: root, lifetimeMs: INTERMEDIATE_LIFETIME_MS, now, generation: (inv.ca.previous?.length ?? 0) + 2 });
    const cross = await createCrossCert({ subject: intCert, subjectKey: intPair.publicKey, issuer: keys.root, now });
    ctx.tx.write(l.rootCert, `${rootCert.toString('pem')}\n`, PUBLIC_MODE);
    ctx.tx.write(l.rootKey, privateKeyPem(rootPair.privateKey, rootPass), PRIVATE_MODE);
    ctx.tx.write(l.intermediateCert, `${intCert.toString('pem')}\n`, PUBLIC_MODE);
    ctx.tx.write(l.intermediateKey, privateKeyPem(intPair.privateKey, pass), PRIVATE_MODE);
    ctx.tx.write(l.crossCert, `${cross.toString('pem')}\n`, PUBLIC_MODE);

    const facts = (c: typeof rootCert) => ({ serial: c.serialNumber.toLowerCase(), notAfter: c.notAfter.toISOString(), fingerprint: fingerprint(c.rawData) });
    inv.ca.previous = [...(inv.ca.previous ?? []), { ...oldInt, retireAt, crlNumber: inv.ca.crlNumber.intermediate, root: oldRoot.serial }];
    inv.ca.previousRoots = [...(inv.ca.previousRoots ?? []), { ...oldRoot, retireAt, crlNumber: inv.ca.crlNumber.root }];
    inv.ca.root = facts(rootCert);
    inv.ca.intermediate = facts(intCert);
    inv.ca.cross = { serial: cross.serialNumber.toLowerCase(), retireAt };
    const next: RootKeys = {
      root,
      intermediate: { cert: intCert, key: intPair.privateKey, keyType: inv.ca.keyType },
      previous: new Map(keys.previous).set(oldInt.serial, keys.intermediate),
      previousRoots: new Map(keys.previousRoots).set(oldRoot.serial, keys.root),
    };
    stageChain(inv, next, l, ctx.tx);
    await stageCrls(inv, next, l, ctx.tx, now);
    return {
      result: { root: inv.ca.root.serial, intermediate: inv.ca.intermediate.serial, cross: inv.ca.cross.serial, retireAt, previousRoot: oldRoot.serial },
      audit: { serial: inv.ca.root.serial, detail: `previousRoot=${oldRoot.serial} intermediate=${inv.ca.intermediate.serial} retireAt=${retireAt}` },
    };
  });
}
