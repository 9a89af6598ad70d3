/** `broker pki revoke` and `broker pki crl`. */
import { BrokerError } from '../errors.ts';
import { PUBLIC_MODE } from './files.ts';
import { findCerts, type CertRecord, type RevocationReason } from './inventory.ts';
import type { CaStore } from './store.ts';
import { stageCrls } from './crl.ts';
import { checkCrlValidity, storeCrlValidity } from './crl-lifetime.ts';

/**
 * Revokes by serial (that one certificate) or by name (every certificate of that name not yet
 * revoked, so "revoke acme" cuts acme off entirely, renewed overlaps included). `via` names where
 * it was asked for besides the CLI (the audit line's detail says `via=console`).
 */
export async function revoke(store: CaStore, o: { target: string; reason: RevocationReason; passphrase?: string; via?: string }): Promise<CertRecord[]> {
  return store.mutate('revoke', o.passphrase, async (ctx) => {
    const found = findCerts(ctx.inventory, o.target);
    if (!found.length) throw new BrokerError('BRK_ERR_PKI_IDENTITY_NOT_FOUND', `no certificate named or numbered "${o.target}"`);
    const open = found.filter((c) => !c.revokedAt);
    if (!open.length) throw new BrokerError('BRK_ERR_PKI_ALREADY_REVOKED', `every certificate of "${o.target}" is already revoked`);
    const at = new Date().toISOString();
    for (const c of open) {
      c.revokedAt = at;
      c.reason = o.reason;
    }
    await stageCrls(ctx.inventory, await ctx.keys(), ctx.layout, ctx.tx);
    const first = open[0] as CertRecord;
    return {
      result: open,
      audit: { name: first.name, serial: open.map((c) => c.serial).join(','), roles: first.roles, detail: `reason=${o.reason}${o.via ? ` via=${o.via}` : ''}` },
    };
  });
}

export interface CrlResult {
  files: string[];
  nextUpdate: Date;
  revoked: number;
}

/**
 * Re-signs both CRLs (new numbers, fresh nextUpdate); optionally copies the bundle. `nextUpdateMs`
 * is this publication's lifetime only (the store's default stays); under an hour needs `force`.
 */
export async function publishCrl(store: CaStore, o: { nextUpdateMs?: number; force?: boolean; out?: string; passphrase?: string }): Promise<CrlResult> {
  if (o.nextUpdateMs !== undefined) checkCrlValidity(o.nextUpdateMs, '--next-update', o.force);
  return store.mutate('crl', o.passphrase, async (ctx) => {
    const crls = await stageCrls(ctx.inventory, await ctx.keys(), ctx.layout, ctx.tx, new Date(), o.nextUpdateMs ?? storeCrlValidity(ctx.inventory.ca).ms);
    if (o.out) ctx.tx.write(o.out, crls.bundle, PUBLIC_MODE);
    const files = ctx.tx.targets.filter((f) => f.endsWith('.crl') || f.endsWith('.pem') || f === o.out);
    return {
      result: { files, nextUpdate: crls.intermediate.nextUpdate, revoked: crls.intermediate.count },
      audit: { detail: `crlNumber=${ctx.inventory.ca.crlNumber.intermediate} nextUpdate=${crls.intermediate.nextUpdate.toISOString()}` },
    };
  });
}
