/** Validation of the names, roles and SANs that go into certificates. */
import { isIP } from 'node:net';
import { BrokerError } from '../errors.ts';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const DNS_RE = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const TRUST_DOMAIN_RE = /^[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9])?$/;

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) throw new BrokerError('BRK_ERR_USAGE_NAME', `"${name}" is not a valid identity name`);
  return name;
}

/** Roles as given, validated, de-duplicated, order kept. At least one. */
export function checkRoles(roles: readonly string[]): string[] {
  if (roles.length === 0) throw new BrokerError('BRK_ERR_USAGE_ROLE', 'give at least one --role; an identity without roles can reach nothing');
  for (const r of roles) {
    if (!ROLE_RE.test(r)) throw new BrokerError('BRK_ERR_USAGE_ROLE', `"${r}" is not a valid role`);
  }
  return [...new Set(roles)];
}

export function checkTrustDomain(td: string): string {
  if (!TRUST_DOMAIN_RE.test(td)) {
    throw new BrokerError('BRK_ERR_USAGE', `"${td}" is not a valid trust domain (lower-case letters, digits, "." and "-", like acme.example)`);
  }
  return td;
}

export function checkSans(dns: readonly string[], ip: readonly string[]): { dns: string[]; ip: string[] } {
  for (const d of dns) {
    if (d.length > 253 || !DNS_RE.test(d)) throw new BrokerError('BRK_ERR_PKI_SAN_INVALID', `"${d}" is not a valid DNS name`);
  }
  for (const a of ip) {
    if (!isIP(a)) throw new BrokerError('BRK_ERR_PKI_SAN_INVALID', `"${a}" is not an IP address`);
  }
  if (dns.length + ip.length === 0) throw new BrokerError('BRK_ERR_PKI_SAN_INVALID', 'a server certificate needs at least one --dns or --ip');
  return { dns: [...new Set(dns.map((d) => d.toLowerCase()))], ip: [...new Set(ip)] };
}

export function spiffeId(trustDomain: string, kind: 'client' | 'server', name: string): string {
  return `spiffe://${trustDomain}/${kind}/${name}`;
}
