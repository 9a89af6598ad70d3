import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  log: string[];
  from?: string;
  to?: string;
  json?: boolean;
}

/** `--from 2026-11-01`, `--from 7d` (that long ago), or an ISO time. */
async function when(value: string | undefined, flag: string): Promise<Date | undefined> {
  if (value === undefined) return undefined;
  if (/^\d+(ms|[smhdwy])$/.test(value)) {
    const { parseDuration } = await import('../config/duration.ts');
    return new Date(Date.now() - parseDuration(value, flag));
  }
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) {
    const { BrokerError } = await import('../errors.ts');
    throw new BrokerError('BRK_ERR_USAGE', `${flag} "${value}" is neither a date (2026-11-01, ISO time) nor a duration ago (7d)`);
  }
  return d;
}

export function register(program: Command): void {
  program
    .command('usage')
    .summary('per-identity usage from the access log: requests, errors, denials, 429s, bytes; tunnels and egress bytes')
    .description('Summarise access-log lines (JSON, as the broker writes them; other streams are ignored) per identity over a time range: requests through the routes, and tunnels and forwarded requests through the forward listener (counted apart, with their refusals, failures and egress bytes). Reads the --log files, or standard input.')
    .option('--log <file>', 'access log file (repeat for rotated files); default: standard input', (v: string, p: string[] = []) => [...p, v], [])
    .option('--from <when>', 'start: a date, an ISO time, or a duration ago (7d)')
    .option('--to <when>', 'end (exclusive): a date, an ISO time, or a duration ago')
    .option('--json', 'print JSON rows')
    .addHelpText('after', examples('broker usage --log /var/log/broker/access.log --from 30d', 'journalctl -u broker -o cat | broker usage --from 2026-11-01 --to 2026-12-01 --json'))
    .action(async (opts: Opts) => {
      const [{ createReadStream }, { createInterface }, { UsageAggregator }, out, { BrokerError }] = await Promise.all([
        import('node:fs'),
        import('node:readline'),
        import('../observability/usage.ts'),
        import('./output.ts'),
        import('../errors.ts'),
      ]);
      const from = await when(opts.from, '--from');
      const to = await when(opts.to, '--to');
      const agg = new UsageAggregator({ ...(from ? { from } : {}), ...(to ? { to } : {}) });
      const sources = opts.log.length ? opts.log : ['-'];
      for (const src of sources) {
        const stream = src === '-' ? process.stdin : createReadStream(src);
        try {
          for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) agg.add(line);
        } catch (cause) {
          throw new BrokerError('BRK_ERR_USAGE', `cannot read ${src}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
        }
      }
      const rows = agg.rows();
      if (opts.json) return out.printJson(rows);
      if (!rows.length) return out.printLines('no access-log lines in that range');
      // the egress columns only when the range has forward-listener lines: a reverse-only table reads as before
      const egress = agg.forwardLines > 0;
      out.printLines(
        out.table(
          ['IDENTITY', 'REQUESTS', 'ALLOWED', 'ERRORS', 'DENIED', '429', 'BYTES IN', 'BYTES OUT', ...(egress ? ['TUNNELS', 'FWD REQS', 'FWD REFUSED', 'FWD FAILED', 'BYTES UP', 'BYTES DOWN'] : []), 'FIRST', 'LAST'],
          rows.map((r) => [r.principal, r.requests, r.allowed, r.errors, r.denials, r.rateLimited, r.bytesIn, r.bytesOut, ...(egress ? [r.tunnels, r.forwardRequests, r.forwardRefused, r.forwardFailed, r.bytesUp, r.bytesDown] : []), r.first, r.last].map(String)),
        ),
      );
    });
}
