import type { Command } from 'commander';
import { examples, openStore, storeOptions, type StoreOptions } from './common.ts';

export function register(pki: Command): void {
  const audit = pki.command('audit').summary('the PKI audit log').description('The audit log records every PKI operation as one JSON line chained by SHA-256 hashes.');
  storeOptions(audit.command('verify'), { passphrase: false, json: true })
    .summary('check that no audit line was edited, inserted or removed')
    .description(
      'Walk the hash chain of audit.log and compare its end with audit.head (and with audit.pending, the change being committed, when there is one). ' +
        'Exit 0 when intact; 1 with BRK_ERR_PKI_AUDIT_INTERRUPTED when a change was cut off by a crash (run "broker pki audit recover"); ' +
        '1 with BRK_ERR_PKI_AUDIT_TAMPERED and the first bad line when lines were edited, inserted or removed.',
    )
    .addHelpText('after', examples('broker pki audit verify', 'broker pki audit verify --dir /etc/broker/pki --json'))
    .action(async (opts: StoreOptions) => {
      const [{ verifyAudit, readHead, readPending }, { readText }, { BrokerError }, out] = await Promise.all([
        import('../../pki/audit.ts'),
        import('../../pki/files.ts'),
        import('../../errors.ts'),
        import('../output.ts'),
      ]);
      const store = await openStore(opts);
      const l = store.layout;
      const r = verifyAudit(readText(l.auditLog, 'audit log'), readHead(l.auditHead), readPending(l.pending));
      if (opts.json) out.printJson(r);
      else if (r.ok) out.printLines(`audit log intact: ${r.lines} lines, hash chain and head match`);
      if (r.interrupted) throw new BrokerError('BRK_ERR_PKI_AUDIT_INTERRUPTED', `${l.auditLog} line ${r.badLine}: ${r.problem}`);
      if (!r.ok) throw new BrokerError('BRK_ERR_PKI_AUDIT_TAMPERED', `${l.auditLog} line ${r.badLine}: ${r.problem}`);
    });
  storeOptions(audit.command('recover'), { passphrase: false, json: true })
    .summary('complete a change a crash or kill cut off')
    .description(
      'Under the store lock, complete the change recorded in audit.pending (append its audit line if missing, move its staged files into place, update audit.head), ' +
        'remove temp files left by a change that never reached its commit point, and record a "recover" line. Every store-changing command does this first; ' +
        'this command does it alone, without a passphrase. Refuses (BRK_ERR_PKI_AUDIT_TAMPERED) when the log does not fit audit.pending.',
    )
    .addHelpText('after', examples('broker pki audit recover', 'broker pki audit recover --dir /etc/broker/pki && broker pki audit verify --dir /etc/broker/pki'))
    .action(async (opts: StoreOptions) => {
      const [{ recoverStore }, out] = await Promise.all([import('../../pki/store.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const r = await recoverStore(store.layout);
      if (opts.json) return out.printJson(r);
      out.printLines(
        r.completed ? `completed the interrupted "${r.completed.op}" change (audit line ${r.completed.seq}, process ${r.completed.pid})` : r.adopted ? `accepted audit line ${r.adopted}, left past audit.head by an older broker` : 'nothing to recover',
        ...(r.removedTemps ? [`removed ${r.removedTemps} left-over temp file(s)`] : []),
      );
    });
}
