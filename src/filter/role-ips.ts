/** Per-role client address lists: pure. A refusal reason when one of the identity's roles does not admit the address. */
import type { BrokerConfig } from '../config/index.ts';
import { compileIpList, plainIp, type IpList } from './ip.ts';

export type RoleIps = (held: readonly string[], ip: string) => string | undefined;

export function compileRoleIps(roles: BrokerConfig['roles']): RoleIps {
  const lists = new Map<string, { allow: IpList; deny: IpList }>();
  for (const [role, r] of Object.entries(roles)) {
    if (r.allowIps?.length || r.denyIps?.length) lists.set(role, { allow: compileIpList(r.allowIps ?? []), deny: compileIpList(r.denyIps ?? []) });
  }
  if (lists.size === 0) return () => undefined;
  return (held, ip) => {
    const address = plainIp(ip);
    for (const role of held) {
      const l = lists.get(role);
      if (!l) continue;
      if (l.deny.size && l.deny.has(address)) return `${address} denied for role ${role}`;
      if (l.allow.size && !l.allow.has(address)) return `${address} not allowed for role ${role}`;
    }
    return undefined;
  };
}
