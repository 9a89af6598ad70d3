/** Shared by issue, sign and renew: the hand-out folder, the PKCS#12 password, and the summary printed. */
import type { Command } from 'commander';
import type { IssueResult } from '../../pki/issue.ts';

export interface HandoutOptions {
  out?: string;
  p12?: boolean;
  passwordFile?: string;
  force?: boolean;
  json?: boolean;
}

export function handoutOptions(cmd: Command, o: { p12: boolean }): Command {
  cmd.option('--out <dir>', 'folder for the certificate bundle', '.').option('--force', 'replace existing files of the same names');
  if (o.p12) {
    cmd
      .option('--p12', 'also write NAME.p12 (PKCS#12 with the key and the chain, AES-256)')
      .option('--password-file <file>', 'PKCS#12 password (first line); or set BROKER_P12_PASSWORD; generated when neither is given');
  }
  return cmd;
}

/** The PKCS#12 password: file, env, prompt; else a generated one that the caller writes beside the .p12. */
export async function p12Password(opts: HandoutOptions): Promise<{ password?: string; generated: boolean }> {
  if (!opts.p12) return { generated: false };
  const { resolveSecret, generatePassword } = await import('../secrets.ts');
  const given = await resolveSecret({ file: opts.passwordFile, env: 'BROKER_P12_PASSWORD', what: 'PKCS#12 password' }, { confirm: true });
  return given === undefined ? { password: generatePassword(), generated: true } : { password: given, generated: false };
}

export async function printIssued(r: IssueResult, opts: HandoutOptions): Promise<void> {
  const out = await import('../output.ts');
  const rec = r.record;
  if (opts.json) {
    out.printJson({ ...rec, files: r.files });
    return;
  }
  const lines = [
    `${rec.source === 'renew' ? 'renewed' : 'issued'} ${rec.type} certificate for ${rec.name}${rec.roles.length ? ` (roles: ${rec.roles.join(', ')})` : ''}`,
    `  serial       ${rec.serial}`,
    `  valid        ${rec.notBefore} .. ${rec.notAfter} (${out.days(Date.parse(rec.notAfter) - Date.now())})`,
    `  fingerprint  sha256:${rec.fingerprint}`,
    `  certificate  ${r.files.cert} (leaf + issuing CA)`,
  ];
  if (r.files.key) lines.push(`  private key  ${r.files.key} (0600${rec.type === 'client' ? '; hand it over securely, the CA keeps no copy' : ''})`);
  lines.push(`  trust        ${r.files.ca} (root CA)`);
  if (r.files.p12) lines.push(`  PKCS#12      ${r.files.p12}${r.files.p12Password ? `, generated password in ${r.files.p12Password} (send it by another channel)` : ''}`);
  out.printLines(...lines);
}

/** The hand-out fields every leaf command passes to the CA. */
export async function handout(opts: HandoutOptions): Promise<{ outDir: string; force: boolean; savePassword: boolean; p12Password?: string }> {
  const pw = await p12Password(opts);
  return { outDir: opts.out ?? '.', force: opts.force ?? false, savePassword: pw.generated, ...(pw.password === undefined ? {} : { p12Password: pw.password }) };
}
