/**
 * `broker pki rotate intermediate`: a new issuing CA signed by the same root. During the overlap
 * the old one stays trusted (in chain.pem, with its own CRL) so certificates it issued keep
 * working while they are renewed; new issuance uses the new one. When the overlap ends (at the next
 * CRL publication: run `broker pki crl` from a timer) the old one is retired: dropped from the
 * chain and listed as revoked (superseded) in the root's CRL.
 */
import { createIntermediate, fingerprint } from './certs.ts';
import { PRIVATE_MODE, PUBLIC_MODE, readText } from './files.ts';
import { generateKeyPair, privateKeyPem } from './keys.ts';
import { INTERMEDIATE_LIFETIME_MS } from './init.ts';
import { stageChain, stageCrls } from './crl.ts';
import { statusOf } from './inventory.ts';
import type { CaStore } from './store.ts';

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

export async function rotateIntermediate(store: CaStore, o: { overlapMs: number; passphrase?: string }): Promise<{ serial: string; notAfter: string; retireAt: string; previous: string }> {
  return store.mutate('rotate-intermediate', o.passphrase, async (ctx) => {
    const keys = await ctx.keys();
    const inv = ctx.inventory;
    const l = ctx.layout;
    const now = new Date();
    const old = inv.ca.intermediate;
    // keep the old issuing CA under its serial for the overlap (its key signs its CRL meanwhile)
    const encrypted = inv.ca.encrypted;
    ctx.tx.write(l.previousIntermediateCert(old.serial), readText(l.intermediateCert, 'CA certificate'), PUBLIC_MODE);
    ctx.tx.write(l.previousIntermediateKey(old.serial), readText(l.intermediateKey, 'CA key'), PRIVATE_MODE);
    const pair = await generateKeyPair(inv.ca.keyType);
    const cert = await createIntermediate({ name: inv.ca.name, publicKey: pair.publicKey, issuer: keys.root, lifetimeMs: INTERMEDIATE_LIFETIME_MS, now });
    ctx.tx.write(l.intermediateCert, `${cert.toString('pem')}\n`, PUBLIC_MODE);
    ctx.tx.write(l.intermediateKey, privateKeyPem(pair.privateKey, encrypted ? o.passphrase : undefined), PRIVATE_MODE);
    const retireAt = new Date(now.getTime() + o.overlapMs).toISOString();
    inv.ca.previous = [...(inv.ca.previous ?? []), { ...old, retireAt, crlNumber: 0 }];
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
