import type { Command } from 'commander';
import { examples, openStore, storeOptions, type StoreOptions } from './common.ts';

export function register(pki: Command): void {
  const audit = pki.command('audit').summary('the PKI audit log').description('The audit log records every PKI operation as one JSON line chained by SHA-256 hashes.');
  storeOptions(audit.command('verify'), { passphrase: false, json: true })
    .summary('check that no audit line was edited, inserted or removed')
    .description('Walk the hash chain of audit.log and compare its end with audit.head. Exit 0 when intact; 1 with BRK_ERR_PKI_AUDIT_TAMPERED and the first bad line when not.')
    .addHelpText('after', examples('broker pki audit verify', 'broker pki audit verify --dir /etc/broker/pki --json'))
    .action(async (opts: StoreOptions) => {
      const [{ verifyAudit, readHead }, { readText }, { BrokerError }, out] = await Promise.all([
        import('../../pki/audit.ts'),
        import('../../pki/files.ts'),
        import('../../errors.ts'),
        import('../output.ts'),
      ]);
      const store = await openStore(opts);
      const r = verifyAudit(readText(store.layout.auditLog, 'audit log'), readHead(store.layout.auditHead));
      if (opts.json) out.printJson(r);
      else if (r.ok) out.printLines(`audit log intact: ${r.lines} lines, hash chain and head match`);
      if (!r.ok) throw new BrokerError('BRK_ERR_PKI_AUDIT_TAMPERED', `${store.layout.auditLog} line ${r.badLine}: ${r.problem}`);
    });
}
