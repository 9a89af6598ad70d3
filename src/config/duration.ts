import { BrokerError } from '../errors.ts';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/**
 * Parses a duration such as `250ms`, `90s`, `15m`, `12h`, `90d`, `2w`, `1y` into milliseconds.
 * One number and one unit only: `1h30m` is refused, so a typo cannot silently mean something else.
 */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d{1,9})(ms|[smhdwy])$/.exec(text.trim());
  if (!m) {
    throw new BrokerError('BRK_ERR_USAGE_TTL', `${what} "${text}" is not a duration`);
  }
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  if (ms <= 0) throw new BrokerError('BRK_ERR_USAGE_TTL', `${what} "${text}" must be more than zero`);
  return ms;
}

/** The shortest exact spelling of a duration in ms (for messages and help). */
export function formatDuration(ms: number): string {
  for (const unit of ['y', 'w', 'd', 'h', 'm', 's', 'ms']) {
    const size = UNIT_MS[unit] as number;
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
