/**
 * The public TLS listener: an https.Server with the broker's TLS settings and HTTP deadlines, which
 * decides the peer's identity once per connection (after OpenSSL verified the chain and the CRLs)
 * and logs every handshake outcome with its precise reason.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { principalFromPeer, compileIdentityRules, type IdentityResult, type Principal } from '../identity/index.ts';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/index.ts';
import type { TlsMaterial } from './material.ts';
import { serverTlsOptions } from './options.ts';
import { refusalReason } from './auth-reason.ts';
import { kRefused } from '../filter/connection-guard.ts';
import { channels, type HandshakeEvent } from '../channels.ts';

export const kPrincipal = Symbol('broker.principal');
/** Distinct client certificates whose principal is remembered (one per partner, a few per rollover). */
const PRINCIPAL_CACHE = 4096;
const kAnonymous = Symbol('broker.anonymous');

export interface PrincipalSocket extends TLSSocket {
  [kPrincipal]?: Principal;
  [kAnonymous]?: true;
}

export function principalOf(socket: unknown): Principal | undefined {
  return (socket as PrincipalSocket)[kPrincipal];
}

/**
 * Whether the listener admitted this connection: with a verified certificate, or (on the
 * certificate-optional listener only) without presenting any certificate at all.
 */
export function isAdmitted(socket: unknown): boolean {
  const s = socket as PrincipalSocket;
  return s[kPrincipal] !== undefined || s[kAnonymous] === true;
}

function peerFacts(socket: TLSSocket): { subject?: string; serial?: string } {
  try {
    const cert = socket.getPeerCertificate();
    if (!cert || !cert.serialNumber) return {};
    const cn = cert.subject?.CN;
    return { subject: Array.isArray(cn) ? cn.join('+') : cn, serial: cert.serialNumber.toLowerCase() };
  } catch {
    return {};
  }
}

const kRemoteIp = Symbol('broker.remoteIp');

/**
 * The peer address of a TLS socket, also after a refused handshake: by the time `tlsClientError`
 * fires Node has destroyed both the TLS socket and the TCP socket it wraps (`_parent`), so the
 * address is noted on the TCP socket when it is accepted.
 */
export function remoteIpOf(socket: TLSSocket): string | undefined {
  const parent = (socket as unknown as { _parent?: { [kRemoteIp]?: string } })._parent;
  return socket.remoteAddress ?? parent?.[kRemoteIp];
}

export interface ListenerHooks {
  /** A refused handshake from `ip` (after OpenSSL or the identity check said no). */
  onRefused?(ip: string): void;
  /** The identity rules in force now (they change on reload). */
  rules?(): ReturnType<typeof compileIdentityRules>;
  /** Revocations the CRL the handshake used may not know yet (heard from other replicas). */
  isRevoked?(serial: string): boolean;
}

export interface TlsListener extends Server {
  /** Closes every open connection of a certificate serial; returns how many. */
  closeConnectionsOf(serial: string): number;
  /**
   * Closes every open client connection, upgraded ones (WebSockets) included, which Node's
   * closeAllConnections() no longer tracks once upgraded; returns how many.
   */
  closeClientConnections(): number;
}

export interface ListenerOptions {
  /**
   * Ask for a client certificate without requiring one (the listener for routes whose auth drops
   * mtls). A certificate that is presented must still verify: a bad one is refused as on the main listener.
   */
  certOptional?: boolean;
}

export function createTlsServer(c: BrokerConfig, material: TlsMaterial, authLog: Logger, handler: (req: IncomingMessage, res: ServerResponse) => void, hooks: ListenerHooks = {}, o: ListenerOptions = {}): TlsListener {
  const initialRules = compileIdentityRules(c.identities);
  const rules = hooks.rules ?? (() => initialRules);
  const bySerial = new Map<string, Set<TLSSocket>>();
  const n = settingsOf(c);
  const headersTimeout = n.timeouts.headers;
  const requestTimeout = n.timeouts.request;
  // Principals by certificate fingerprint: building one from Node's full peer-certificate object
  // took about 70 µs of every handshake, the SHA-256 fingerprint a few. OpenSSL has verified the
  // chain, the dates and the CRLs before this runs, and revocations are checked on every request,
  // so the cache only saves the parsing; it starts afresh when the identity rules change.
  const principals = new Map<string, IdentityResult>();
  let principalsFor: unknown;
  const identify = (socket: TLSSocket): IdentityResult => {
    const now = rules();
    if (principalsFor !== now) {
      principals.clear();
      principalsFor = now;
    }
    const fp = socket.getPeerX509Certificate()?.fingerprint256;
    const known = fp === undefined ? undefined : principals.get(fp);
    if (known) return known;
    const result = principalFromPeer(socket.getPeerCertificate(), now);
    if (fp !== undefined && result.ok) {
      if (principals.size >= PRINCIPAL_CACHE) principals.delete(principals.keys().next().value as string);
      principals.set(fp, result);
    }
    return result;
  };
  const server = createServer(
    {
      ...serverTlsOptions(material, c.tls, n.handshakeTimeoutMs),
      ...(o.certOptional ? { rejectUnauthorized: false } : {}),
      maxHeaderSize: n.headerSize,
      headersTimeout,
      requestTimeout,
      // Node enforces both deadlines only when it sweeps its connections, every 30 s by default: a
      // slow client would get up to 30 s more than the configured deadline. Sweep at least every second.
      connectionsCheckingInterval: Math.min(1_000, headersTimeout, requestTimeout),
      keepAliveTimeout: n.timeouts.keepAlive,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      insecureHTTPParser: false,
    },
    handler,
  ) as TlsListener;
  server.closeConnectionsOf = (serial) => {
    const open = bySerial.get(serial);
    if (!open) return 0;
    for (const s of open) s.destroy();
    return open.size;
  };
  /** Connections admitted without a certificate (certificate-optional listener). */
  const anonymous = new Set<TLSSocket>();
  server.closeClientConnections = () => {
    let closed = 0;
    for (const serial of [...bySerial.keys()]) closed += server.closeConnectionsOf(serial);
    for (const s of [...anonymous]) s.destroy();
    return closed + anonymous.size;
  };
  // One more than the cap, so that a request over the cap is seen (and refused with 431) instead of
  // silently truncated, which could drop headers that matter.
  server.maxHeadersCount = c.limits.headerCount + 1;

  server.prependListener('connection', (raw: { remoteAddress?: string; [kRemoteIp]?: string }) => {
    raw[kRemoteIp] = raw.remoteAddress;
  });

  /** Logs, publishes and counts a refused client (OpenSSL's verdict or the broker's). */
  const report = (socket: TLSSocket, reason: string, detail: string, remoteIp: string | undefined) => {
    const facts = peerFacts(socket);
    authLog.warn({ event: 'handshake', outcome: 'refused', reason, detail, remoteIp, ...facts }, 'client refused');
    channels.handshake.publish({ outcome: 'refused', reason, remoteIp, ...(facts.serial ? { serial: facts.serial } : {}) } satisfies HandshakeEvent);
    if (remoteIp) hooks.onRefused?.(remoteIp);
  };
  const refuse = (socket: PrincipalSocket, reason: string, detail: string) => {
    report(socket, reason, detail, socket.remoteAddress);
    socket.destroy();
  };

  server.prependListener('secureConnection', (socket: PrincipalSocket) => {
    const remoteIp = socket.remoteAddress;
    if (o.certOptional && !socket.authorized) {
      // OpenSSL let the handshake finish: either no certificate was sent (admitted, the routes'
      // credentials decide) or one failed verification (refused, with OpenSSL's reason).
      if (socket.getPeerX509Certificate() !== undefined) {
        const { reason, detail } = refusalReason(socket.authorizationError, new Error(String(socket.authorizationError ?? 'certificate not verified')));
        return refuse(socket, reason, detail);
      }
      socket[kAnonymous] = true;
      anonymous.add(socket);
      socket.once('close', () => anonymous.delete(socket));
      channels.handshake.publish({ outcome: 'ok', remoteIp } satisfies HandshakeEvent);
      authLog.info({ event: 'handshake', outcome: 'ok', principal: null, certificate: false, remoteIp, tlsVersion: socket.getProtocol(), cipher: socket.getCipher()?.name }, 'client connected without a certificate');
      return;
    }
    let result = identify(socket);
    if (result.ok && hooks.isRevoked?.(result.principal.serial)) result = { ok: false, reason: 'revoked', detail: 'revoked (announced by another replica)' };
    if (!result.ok) return refuse(socket, result.reason, result.detail);
    const p = result.principal;
    socket[kPrincipal] = p;
    let open = bySerial.get(p.serial);
    if (!open) bySerial.set(p.serial, (open = new Set()));
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      if (open.size === 0 && bySerial.get(p.serial) === open) bySerial.delete(p.serial);
    });
    channels.handshake.publish({ outcome: 'ok', remoteIp, principal: p.name, serial: p.serial } satisfies HandshakeEvent);
    authLog.info(
      { event: 'handshake', outcome: 'ok', principal: p.name, roles: p.roles, serial: p.serial, fingerprint: p.fingerprint, remoteIp, tlsVersion: socket.getProtocol(), cipher: socket.getCipher()?.name, resumed: socket.isSessionReused() },
      'client authenticated',
    );
  });

  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    // A connection the guard refused at accept never got to TLS: it was logged there already.
    if ((socket as unknown as { _parent?: Record<symbol, unknown> })._parent?.[kRefused]) return;
    const { reason, detail } = refusalReason(socket.authorizationError, err);
    report(socket, reason, detail, remoteIpOf(socket));
  });
  return server;
}
