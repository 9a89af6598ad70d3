/**
 * TEMPORARY STUB of the SSRF guard (the real one is written on another branch with this same
 * interface and replaces this file at merge). It resolves with node:dns and refuses only loopback
 * addresses that `allowPrivate` does not allow, so the forward listener's tests can run.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export type LookupFn = (name: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;
export type Destination =
  | { ok: true; host: string; address: string; family: 4 | 6; literal: boolean }
  | { ok: false; code: 'BRK_ERR_FORWARD_BAD_HOST' | 'BRK_ERR_FORWARD_PRIVATE' | 'BRK_ERR_FORWARD_RESOLVE'; reason: string };

const defaultLookup: LookupFn = async (name) => (await dnsLookup(name, { all: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

function isLoopback(address: string, family: 4 | 6): boolean {
  return family === 4 ? address.startsWith('127.') : address === '::1' || address.toLowerCase().startsWith('::ffff:127.');
}

export async function resolveDestination(host: string, o: { allowPrivate(address: string, family: 4 | 6): boolean; lookup?: LookupFn; timeoutMs?: number }): Promise<Destination> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const literal = isIP(bare);
  let all: Array<{ address: string; family: 4 | 6 }>;
  if (literal) all = [{ address: bare, family: literal === 6 ? 6 : 4 }];
  else {
    try {
      all = await (o.lookup ?? defaultLookup)(bare);
    } catch (err) {
      return { ok: false, code: 'BRK_ERR_FORWARD_RESOLVE', reason: `${bare} did not resolve: ${(err as Error).message}` };
    }
  }
  const first = all[0];
  if (first === undefined) return { ok: false, code: 'BRK_ERR_FORWARD_RESOLVE', reason: `${bare} has no address` };
  for (const a of all) if (isLoopback(a.address, a.family) && !o.allowPrivate(a.address, a.family)) return { ok: false, code: 'BRK_ERR_FORWARD_PRIVATE', reason: `${bare} is ${a.address}, a loopback address` };
  return { ok: true, host: bare, address: first.address, family: first.family, literal: literal !== 0 };
}
