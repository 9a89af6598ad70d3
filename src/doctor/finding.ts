/** What `broker doctor` reports: one finding per check, with the fix when something is wrong. */
export interface Finding {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
  fix?: string;
}

export const ok = (check: string, message: string): Finding => ({ check, status: 'ok', message });
export const warn = (check: string, message: string, fix?: string): Finding => ({ check, status: 'warn', message, ...(fix ? { fix } : {}) });
export const fail = (check: string, message: string, fix?: string): Finding => ({ check, status: 'fail', message, ...(fix ? { fix } : {}) });

export function formatFindings(findings: readonly Finding[]): string {
  const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
  return findings.map((f) => `${mark[f.status]}  ${f.check}: ${f.message}${f.fix ? `\n      fix: ${f.fix}` : ''}`).join('\n');
}
