import { isIP } from 'node:net';

/** Why an entry is not an address or block, or undefined when it is one. */
export function cidrProblem(entry: string): string | undefined {
  const [addr, bits, ...rest] = entry.split('/');
  const family = isIP(addr ?? '');
  if (!family || rest.length) return `"${entry}" is not an IP address or CIDR block`;
  if (bits === undefined) return undefined;
  const n = Number(bits);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || n > max) return `"${entry}" has a prefix length outside 0-${max}`;
  return undefined;
}
