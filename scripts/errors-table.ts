/** Prints the README's error table from src/errors.ts: `node scripts/errors-table.ts`. */
import { ERRORS } from '../src/errors.ts';

const rows = Object.entries(ERRORS).map(([code, e]) => {
  const status = 'status' in e ? String(e.status) : '';
  return `| \`${code}\` | ${status || '-'} | ${e.exit} | ${e.hint.replace(/\|/g, '\\|')} |`;
});
process.stdout.write(['| code | HTTP | exit | what to do |', '| --- | --- | --- | --- |', ...rows].join('\n') + '\n');
