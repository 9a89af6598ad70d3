import type { Command } from 'commander';
import { collect, examples, openStore, storeOptions, type StoreOptions } from './common.ts';

interface Opts extends StoreOptions {
  authLog: string[];
}

export function register(pki: Command): void {
  storeOptions(pki.command('readiness'), { passphrase: false, json: true })
    .summary('who still connects with a certificate from an issuing CA a rotation will retire')
    .description(
      'Read the broker\'s auth log (log.auth written to a file; handshake lines with outcome ok) and list the identities that connected with a certificate from an issuing CA in its overlap after "broker pki rotate intermediate" or "rotate root": they break when it retires unless renewed. Each row: identity, serial, the retiring CA and its retireAt, when it was last seen and how often, whether the identity already holds a certificate from the new CA (renewed) and whether it was seen later with one (moved on). Only what the given logs saw: pass every log file of the overlap (rotated files too), from every broker replica.',
    )
    .requiredOption('--auth-log <file>', 'an auth log file, or - for standard input (repeat for rotated files or other replicas)', collect)
    .addHelpText('after', examples('broker pki readiness --auth-log /var/log/broker/auth.log', 'broker pki readiness --auth-log auth.log --auth-log auth.log.1 --json', 'journalctl -u broker -o cat | broker pki readiness --auth-log -'))
    .action(async (opts: Opts) => {
      const [{ readSightings, rotationReadiness }, out] = await Promise.all([import('../../pki/readiness.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const inv = store.readInventory();
      const { sightings, lines } = await readSightings(opts.authLog);
      const report = rotationReadiness(inv, sightings, { lines });
      if (opts.json) return out.printJson(report);
      if (!report.retiring.length) return out.printLines('no issuing CA is being retired (no rotation in its overlap): nothing to be ready for');
      const head = report.retiring.map((r) => `retiring issuing CA ${r.serial} at ${r.retireAt}`);
      const pending = report.identities.filter((r) => !r.movedOn);
      if (!report.identities.length) return out.printLines(...head, `no certificate from a retiring CA connected in the ${lines} log lines read`);
      out.printLines(
        ...head,
        `${pending.length} identit${pending.length === 1 ? 'y' : 'ies'} still connect${pending.length === 1 ? 's' : ''} with a certificate from a retiring CA (${lines} log lines read)`,
        out.table(
          ['IDENTITY', 'SERIAL', 'RETIRING CA', 'RETIRE AT', 'LAST SEEN', 'CONNECTIONS', 'RENEWED', 'MOVED ON', 'CONTACT'],
          report.identities.map((r) => [r.identity, r.serial, r.issuer, r.retireAt, r.lastSeen, String(r.connections), r.renewed ? 'yes' : 'no', r.movedOn ? 'yes' : 'no', r.contact ?? '-']),
        ),
      );
    });
}
