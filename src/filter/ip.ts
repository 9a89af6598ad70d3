/** IP allow and deny lists (IPv4 and IPv6, single addresses or CIDR blocks) on Node's BlockList. */
import { BlockList, isIP } from 'node:net';

export interface IpList {
  has(ip: string): boolean;
  readonly size: number;
}

/** `::ffff:192.0.2.1` (a dual-stack socket's view of an IPv4 client) as `192.0.2.1`. */
export function plainIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

export function compileIpList(entries: readonly string[]): IpList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return {
    size: entries.length,
    has(ip: string): boolean {
      const plain = plainIp(ip);
      const family = isIP(plain);
      return family !== 0 && list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
    },
  };
}

/** Admission by address: refused when denied, or when an allow list exists and does not name it. */
export function ipAdmitted(ip: string, allow: IpList, deny: IpList): boolean {
  if (deny.size && deny.has(ip)) return false;
  return allow.size === 0 || allow.has(ip);
}
