/**
 * Who is asking the forward listener: the connection's verified client certificate, or the
 * `Proxy-Authorization` of this CONNECT or request, for tools that cannot present a certificate to
 * a proxy. The credentials are the API keys and Basic credentials of `broker keys` (keys.json),
 * checked by the reverse side's verifiers (src/auth: same hashes, cache, revocations); nothing is
 * verified here.
 *
 * Accepted forms (anything else is refused as malformed):
 * - `Basic base64(name:password)`: a Basic credential (`broker keys create --basic`);
 * - `Basic base64(name:brk_…)`: an API key as the password (curl --proxy-user, HTTPS_PROXY=
 *   https://name:key@host), told from a Basic password by its form (a generated Basic password is
 *   32 base64url characters, an API key `brk_<12 hex>_<43 base64url>`); the name must be the key's;
 * - `Bearer brk_…`: an API key.
 * A connection with a verified certificate is that certificate's identity: its Proxy-Authorization
 * is neither checked nor used (nor forwarded), and only mtls rules apply.
 */
import type { Logger } from 'pino';
import { authenticate, REVOKED_KEY_PREFIX, type Verifiers } from '../auth/index.ts';
import { parseAuthorization } from '../auth/credentials.ts';
import { channels, type CredentialEvent } from '../channels.ts';
import type { ForwardAuthMethod } from '../config/index.ts';
import type { Principal } from '../identity/index.ts';
import { parseApiKey } from '../pki/keys-file.ts';

export interface ForwardCaller {
  readonly name: string;
  readonly roles: readonly string[];
  /** How the caller was identified: the rules whose auth lists it are the ones consulted. */
  readonly method: ForwardAuthMethod;
  readonly keyId?: string | undefined;
}

export type ProxyAuthCode = 'BRK_ERR_FORWARD_AUTH_REQUIRED' | 'BRK_ERR_FORWARD_AUTH_INVALID';

export type CallerResult =
  | { ok: true; caller: ForwardCaller }
  | { ok: false; code: ProxyAuthCode; method: string; reason: string; detail: string; name?: string | undefined; keyId?: string | undefined };

export interface ProxyAuthDeps {
  /** The verifiers of the config generation in force (keys.json is re-read on reload). */
  verifiers(): Verifiers;
  /** Whether an id (`key:<id>` for a credential) is revoked now, here or on another replica. */
  isRevoked(id: string): boolean;
}

const invalid = (method: string, reason: string, detail: string, who: { name?: string | undefined; keyId?: string | undefined } = {}): CallerResult => ({ ok: false, code: 'BRK_ERR_FORWARD_AUTH_INVALID', method, reason, detail, name: who.name, keyId: who.keyId });

/** The Proxy-Authorization values of a request (rawHeaders: a repeated one is refused, not guessed at). */
export function proxyAuthorizationOf(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === 'proxy-authorization') out.push(raw[i + 1] as string);
  return out;
}

/** The caller of one CONNECT or absolute-form request; `values` from proxyAuthorizationOf. */
export async function forwardCaller(cert: Principal | undefined, values: readonly string[], d: ProxyAuthDeps, remoteIp?: string): Promise<CallerResult> {
  // The certificate, verified at the handshake and bound to the connection, decides alone: a header
  // cannot change what a certificate caller may reach, and costs it no hash.
  if (cert) return { ok: true, caller: { name: cert.name, roles: cert.roles, method: 'mtls' } };
  if (values.length === 0) {
    return { ok: false, code: 'BRK_ERR_FORWARD_AUTH_REQUIRED', method: 'proxy', reason: 'missing', detail: 'no client certificate and no Proxy-Authorization' };
  }
  if (values.length > 1) return invalid('proxy', 'malformed', 'more than one Proxy-Authorization header');
  const auth = parseAuthorization(values[0] as string);
  let method: 'apiKey' | 'basic';
  let apiKey: string | undefined;
  let user: string | undefined;
  if (auth.scheme === 'malformed') return invalid('proxy', 'malformed', auth.detail);
  if (auth.scheme === 'other') return invalid('proxy', 'malformed', `Proxy-Authorization scheme "${auth.name}" (Basic or Bearer only)`);
  if (auth.scheme === 'bearer') {
    if (!parseApiKey(auth.token)) return invalid('apiKey', 'malformed', 'a Bearer Proxy-Authorization must be an API key (brk_<id>_<secret>)');
    method = 'apiKey';
    apiKey = auth.token;
  } else if (parseApiKey(auth.password)) {
    method = 'apiKey';
    apiKey = auth.password;
    user = auth.user;
  } else {
    method = 'basic';
  }
  const v = d.verifiers();
  const r = method === 'apiKey' ? await authenticate(['apiKey'], { apiKey }, v) : await authenticate(['basic'], { authorization: values[0] }, v);
  if (!r.ok) return invalid(method, r.reason, r.detail, r);
  const { name, roles, keyId } = r.caller;
  if (keyId !== undefined && d.isRevoked(REVOKED_KEY_PREFIX + keyId)) return invalid(method, 'revoked', 'revoked (announced by another replica)', { name, keyId });
  if (user !== undefined && user !== name) return invalid(method, 'mismatch', `the proxy user "${user}" is not the API key's identity`, { name, keyId });
  if (channels.credential.hasSubscribers) channels.credential.publish({ method, outcome: 'ok', remoteIp, principal: name } satisfies CredentialEvent);
  return { ok: true, caller: { name, roles, method, keyId } };
}

/** The auth log line and credential event of a refused Proxy-Authorization (metrics, alerts), as the reverse side writes them. */
export function reportProxyRefusal(authLog: Logger, r: Extract<CallerResult, { ok: false }>, at: { remoteIp: string | undefined; reqId: string; connId: string }): void {
  authLog.warn(
    { event: 'credential', outcome: 'refused', listener: 'forward', method: r.method, reason: r.reason, detail: r.detail, remoteIp: at.remoteIp, reqId: at.reqId, connId: at.connId, ...(r.name !== undefined ? { principal: r.name } : {}), ...(r.keyId !== undefined ? { keyId: r.keyId } : {}) },
    'proxy credential refused',
  );
  channels.credential.publish({ method: r.method, outcome: 'refused', reason: r.reason, remoteIp: at.remoteIp, ...(r.name !== undefined ? { principal: r.name } : {}) } satisfies CredentialEvent);
}

/** The challenge of a 407: Basic is the scheme every proxy client speaks (an API key goes as its password). */
export function proxyChallenge(realm: string): string {
  return `Basic realm="${realm}", charset="UTF-8"`;
}

type Closable = { destroy(): unknown; once(event: 'close', listener: () => void): unknown; destroyed?: boolean };

/**
 * Client connections that carried a tunnel or request authenticated by an API key or Basic
 * credential, by credential id: a revoked credential's connections are cut, as a revoked
 * certificate's are (the listener's closeConnectionsOf, with the `key:<id>` ids revocations use).
 */
export class KeyedConnections {
  readonly #byKey = new Map<string, Set<Closable>>();

  hold(keyId: string, socket: Closable): void {
    if (socket.destroyed) return;
    let open = this.#byKey.get(keyId);
    if (open === undefined) this.#byKey.set(keyId, (open = new Set()));
    if (open.has(socket)) return;
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      if (open.size === 0 && this.#byKey.get(keyId) === open) this.#byKey.delete(keyId);
    });
  }

  /** Cuts the connections of `id` when it is a `key:<id>` revocation id; returns how many. */
  closeOf(id: string): number {
    if (!id.startsWith(REVOKED_KEY_PREFIX)) return 0;
    const open = this.#byKey.get(id.slice(REVOKED_KEY_PREFIX.length));
    if (open === undefined) return 0;
    const all = [...open];
    for (const s of all) s.destroy();
    return all.length;
  }
}
