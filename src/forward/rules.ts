/**
 * forward.rules, compiled once per config generation: which destinations (host, port) each role
 * may reach, default deny. A pure decision; the listener answers its refusals.
 *
 * Hosts are compared after normalisation: lower case, one trailing dot removed, IP literals in
 * their canonical form (the WHATWG URL host parser: `0x7f.1` and `2130706433` are `127.0.0.1`,
 * IPv6 compressed, without brackets). A rule host is an exact name, `*.suffix` (one or more labels
 * before the suffix: `*.payments.example` matches `a.payments.example` and `a.b.payments.example`,
 * never `payments.example` itself), or an IP literal, which matches that address only when the
 * destination is written as an address (a name is never compared with IP rules).
 *
 * A rule is consulted only for the credential the caller was identified by (its auth: mtls for a
 * certificate, apiKey or basic for Proxy-Authorization; default [mtls]).
 */
import { BlockList, isIP } from 'node:net';
import type { BrokerConfig, ForwardAuthMethod } from '../config/index.ts';

export interface CompiledRule {
  readonly roles: ReadonlySet<string>;
  readonly names: ReadonlySet<string>;
  /** ".payments.example" for "*.payments.example". */
  readonly suffixes: readonly string[];
  readonly addresses: ReadonlySet<string>;
  readonly ports: ReadonlySet<number>;
  readonly allowPrivate: BlockList | undefined;
  /** The credentials that may use this rule (forward.rules[].auth). */
  readonly auth: ReadonlySet<ForwardAuthMethod>;
}

export type RuleDecision =
  | { ok: true; allowPrivate(address: string, family: 4 | 6): boolean }
  | { ok: false; code: 'BRK_ERR_FORWARD_DENIED' | 'BRK_ERR_FORWARD_PORT'; reason: string };

/** A host as a URL would normalise it (lower case, canonical IP literal), without brackets or a trailing dot; undefined when it is not a valid host. */
export function normaliseHost(host: string): string | undefined {
  if (host.length === 0 || host.length > 255) return undefined;
  const inner = host.startsWith('[') ? host : isIP(host) === 6 ? `[${host}]` : host;
  let h: string;
  try {
    h = new URL(`http://${inner}/`).hostname;
  } catch {
    return undefined;
  }
  if (h.startsWith('[')) return h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.length === 0 ? undefined : h;
}

function compileRule(r: NonNullable<BrokerConfig['forward']>['rules'][number]): CompiledRule {
  const names = new Set<string>();
  const suffixes: string[] = [];
  const addresses = new Set<string>();
  for (const entry of r.hosts) {
    if (entry.startsWith('*.')) {
      const s = normaliseHost(entry.slice(2));
      if (s !== undefined) suffixes.push(`.${s}`);
      continue;
    }
    const h = normaliseHost(entry);
    if (h === undefined) continue;
    if (isIP(h)) addresses.add(h);
    else names.add(h);
  }
  let allowPrivate: BlockList | undefined;
  if (r.allowPrivate.length > 0) {
    allowPrivate = new BlockList();
    for (const cidr of r.allowPrivate) {
      const [addr, bits] = cidr.split('/') as [string, string | undefined];
      const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) allowPrivate.addAddress(addr, family);
      else allowPrivate.addSubnet(addr, Number(bits), family);
    }
  }
  return { roles: new Set(r.roles), names, suffixes, addresses, ports: new Set(r.ports), allowPrivate, auth: new Set(r.auth) };
}

function hostMatches(rule: CompiledRule, host: string, literal: boolean): boolean {
  if (literal) return rule.addresses.has(host);
  if (rule.names.has(host)) return true;
  for (const s of rule.suffixes) if (host.length > s.length && host.endsWith(s)) return true;
  return false;
}

const NEVER = () => false;

export class ForwardRules {
  readonly #rules: readonly CompiledRule[];

  constructor(c: BrokerConfig) {
    this.#rules = (c.forward?.rules ?? []).map(compileRule);
  }

  /**
   * Whether `roles`, identified by `method`, may reach `host` (normalised) on `port`. Only the
   * rules whose auth lists `method` are consulted. With several matching rules, an address is
   * allowed as private when any of them allows it.
   */
  decide(roles: readonly string[], host: string, port: number, method: ForwardAuthMethod = 'mtls'): RuleDecision {
    const literal = isIP(host) !== 0;
    let hostSeen = false;
    const matched: BlockList[] = [];
    let any = false;
    for (const rule of this.#rules) {
      if (!rule.auth.has(method) || !roles.some((r) => rule.roles.has(r))) continue;
      if (!hostMatches(rule, host, literal)) continue;
      hostSeen = true;
      if (!rule.ports.has(port)) continue;
      any = true;
      if (rule.allowPrivate !== undefined) matched.push(rule.allowPrivate);
    }
    if (!any) {
      const who = `roles ${roles.join(',') || '(none)'}${method === 'mtls' ? '' : ` with auth ${method}`}`;
      return hostSeen
        ? { ok: false, code: 'BRK_ERR_FORWARD_PORT', reason: `port ${port} is not in the ports of the forward.rules that allow ${host} for ${who}` }
        : { ok: false, code: 'BRK_ERR_FORWARD_DENIED', reason: `no forward.rules entry of ${who} allows ${host}` };
    }
    if (matched.length === 0) return { ok: true, allowPrivate: NEVER };
    return { ok: true, allowPrivate: (address, family) => matched.some((b) => b.check(address, family === 6 ? 'ipv6' : 'ipv4')) };
  }
}
