import { isIP } from 'node:net';

/** Why an entry is not an address or block, or undefined when it is one. */
export function cidrProblem(entry: string): string | undefined {
  const [addr, bits, ...rest] = entry.split('/');
  const family = isIP(addr ?? '');
  if (!family || rest.length) return `"${entry}" is not an IP address or CIDR block (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)`;
  if (bits === undefined) return undefined;
  const n = Number(bits);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || n > max) return `"${entry}" has a prefix length outside 0-${max} (the number after "/" counts the fixed leading bits of the IPv${family} address)`;
  return undefined;
}
