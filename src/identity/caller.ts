/**
 * The caller of one request: one name and one set of roles, whichever credentials established it
 * (client certificate, API key, bearer token, Basic). Authorization, limits, logs and the upstream
 * headers all read a Caller, so every method is treated the same way.
 */
import type { AuthMethod } from '../config/index.ts';
import type { Principal } from './principal.ts';

export interface Caller {
  readonly name: string;
  readonly roles: readonly string[];
  /** The credentials that vouched for this caller, as the route lists them. */
  readonly methods: readonly AuthMethod[];
  /** The connection's verified client certificate, when it has one (always the same identity). */
  readonly cert?: Principal;
  /** The API key or Basic credential id, when one was used. */
  readonly keyId?: string;
  /** A bearer token's exp (ms since the epoch, without clock skew), when one was used. */
  readonly tokenExpiresAt?: number;
}

/** What one credential says about its holder. */
export interface Vouch {
  readonly name: string;
  readonly roles: readonly string[];
  readonly keyId?: string;
  /** When the credential stops being valid (a bearer token's exp). */
  readonly expiresAt?: Date;
}

const MTLS: readonly AuthMethod[] = Object.freeze(['mtls']);
const byCert = new WeakMap<Principal, Caller>();

/** The caller of a certificate-only route: one object per connection, so per-identity caches hit. */
export function certCaller(p: Principal): Caller {
  let c = byCert.get(p);
  if (c === undefined) byCert.set(p, (c = Object.freeze({ name: p.name, roles: p.roles, methods: MTLS, cert: p })));
  return c;
}

/**
 * Several credentials of one request → one caller, or the reason they do not agree. Every credential
 * must name the same identity (a certificate on the connection too, even when the route does not
 * require it); the roles are those every required credential vouches for (least privilege).
 */
export function combine(methods: readonly AuthMethod[], vouches: readonly Vouch[], cert: Principal | undefined): { ok: true; caller: Caller } | { ok: false; detail: string } {
  const names = new Set(vouches.map((v) => v.name));
  if (cert) names.add(cert.name);
  if (names.size !== 1) return { ok: false, detail: `credentials of different identities: ${[...names].map((n) => JSON.stringify(n)).join(', ')}` };
  const first = vouches[0];
  if (first === undefined) return { ok: false, detail: 'no credential' };
  return { ok: true, caller: memo(methods, cert, vouches, () => build(methods, vouches, cert)) };
}

function build(methods: readonly AuthMethod[], vouches: readonly Vouch[], cert: Principal | undefined): Caller {
  const [first, ...rest] = vouches as [Vouch, ...Vouch[]];
  const roles = first.roles.filter((r) => rest.every((v) => v.roles.includes(r)));
  const keyId = vouches.find((v) => v.keyId !== undefined)?.keyId;
  const exp = vouches.find((v) => v.expiresAt !== undefined)?.expiresAt;
  return Object.freeze({
    name: first.name,
    roles: Object.freeze(roles),
    methods: Object.freeze([...methods]),
    ...(cert ? { cert } : {}),
    ...(keyId !== undefined ? { keyId } : {}),
    ...(exp !== undefined ? { tokenExpiresAt: exp.getTime() } : {}),
  });
}

interface MemoNode {
  next: WeakMap<object, MemoNode>;
  caller?: Caller;
}

/** Callers memoised by the credential objects that made them (verifiers return one object per credential while cached). */
const memoRoots = new Map<string, MemoNode>();
const NO_CERT = {};

function memo(methods: readonly AuthMethod[], cert: Principal | undefined, vouches: readonly Vouch[], make: () => Caller): Caller {
  const key = methods.join(',');
  let node: MemoNode | undefined = memoRoots.get(key);
  if (node === undefined) memoRoots.set(key, (node = { next: new WeakMap() }));
  for (const part of [cert ?? NO_CERT, ...vouches] as object[]) {
    let n: MemoNode | undefined = node.next.get(part);
    if (n === undefined) node.next.set(part, (n = { next: new WeakMap() }));
    node = n;
  }
  return (node.caller ??= make());
}
