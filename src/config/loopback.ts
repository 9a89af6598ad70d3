/**
 * Whether an address is loopback, decided on the parsed address, never on a string prefix
 * ("127.attacker.example" is a DNS name that can point anywhere). Loopback: 127.0.0.0/8, ::1 in any
 * spelling, and IPv4-mapped ::ffff:127.x.y.z. The name "localhost" is accepted only where the
 * caller says so; every other name is not loopback.
 */
import { BlockList, isIP } from 'node:net';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** `addr` is an IP address (IPv6 with or without brackets) in a loopback range. */
export function isLoopbackAddress(addr: string): boolean {
  const a = addr.length > 1 && addr.charCodeAt(0) === 91 /* [ */ && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  const family = isIP(a);
  return family !== 0 && LOOPBACK.check(a, family === 6 ? 'ipv6' : 'ipv4');
}

/** A loopback address, or the name "localhost" (any case, one trailing dot allowed). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === 'localhost.' || isLoopbackAddress(host);
}
