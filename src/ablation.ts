/**
 * Switching one feature off to measure what it costs: `BROKER_ABLATE=accessLog,limits` (benchmark
 * only; `npm run bench` runs one broker per feature). Never for production: every switch here
 * removes a protection or a record, and the broker says so loudly at start.
 */
import { BrokerError } from './errors.ts';

export const ABLATABLE = ['accessLog', 'authLog', 'metrics', 'limits', 'identityHeaders', 'guard', 'hostCheck', 'upstreamShare', 'traceContext', 'console'] as const;
export type Ablations = Partial<Record<(typeof ABLATABLE)[number], true>>;

export function ablationsFrom(value: string | undefined): Ablations {
  const out: Ablations = {};
  for (const raw of (value ?? '').split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    if (!(ABLATABLE as readonly string[]).includes(name)) throw new BrokerError('BRK_ERR_CONFIG_INVALID', `BROKER_ABLATE: "${name}" is not one of ${ABLATABLE.join(', ')}`);
    out[name as (typeof ABLATABLE)[number]] = true;
  }
  return out;
}
