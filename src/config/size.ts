import { BrokerError } from '../errors.ts';

const UNIT: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `512`, `16kb`, `1mb`, `2gb` (binary multiples) to bytes. */
export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number' && Number.isSafeInteger(text) && text >= 0) return text;
  const m = /^(\d{1,12})\s*(b|kb|mb|gb)?$/i.exec(String(text).trim());
  if (!m) throw new BrokerError('BRK_ERR_USAGE', `${what} "${text}" is not a size (like 512, 16kb, 1mb)`);
  return Number(m[1]) * (UNIT[(m[2] ?? 'b').toLowerCase()] as number);
}
