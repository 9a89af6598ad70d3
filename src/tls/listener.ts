/**
 * The public TLS listener: an https.Server with the broker's TLS settings and HTTP deadlines, which
 * decides the peer's identity once per connection (after OpenSSL verified the chain and the CRLs)
 * and logs every handshake outcome with its precise reason.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { principalFromPeer, compileIdentityRules, type IdentityResult, type Principal } from '../identity/index.ts';
import { connectionId } from '../request/index.ts';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/index.ts';
import type { TlsMaterial } from './material.ts';
import { serverTlsOptions } from './options.ts';
import { refusalReason, clientRefusalWords } from './auth-reason.ts';
import { ERRORS, httpErrorBody } from '../errors.ts';
import { kRefused } from '../filter/connection-guard.ts';
import { channels, type HandshakeEvent } from '../channels.ts';
import { rawLine } from '../raw-line.ts';
import { arm, disarm, type Deadline } from '../deadline.ts';

export const kPrincipal = Symbol('broker.principal');
/** Set on a connection handed to the WebSocket relay: its Session (src/proxy/live.ts) closes it, with a close code. */
export const kRelayed = Symbol('broker.relayed');
/** Distinct client certificates whose principal is remembered (one per partner, a few per rollover). */
const PRINCIPAL_CACHE = 4096;
const kAnonymous = Symbol('broker.anonymous');

export interface PrincipalSocket extends TLSSocket {
  [kPrincipal]?: Principal;
  [kAnonymous]?: true;
  [kRelayed]?: true;
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

/** The certificate a refused client presented, as the auth log records it: not trusted for anything. */
interface Presented {
  subject: string;
  issuer: string;
  serial: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
}

function peerFacts(socket: TLSSocket): { subject?: string; serial?: string; certificate?: Presented } {
  try {
    const cert = socket.getPeerCertificate();
    if (!cert || !cert.serialNumber) return {};
    const cn = cert.subject?.CN;
    const x = socket.getPeerX509Certificate();
    const serial = cert.serialNumber.toLowerCase();
    const certificate: Presented | undefined =
      x === undefined
        ? undefined
        : {
            subject: x.subject.replaceAll('\n', ', '),
            issuer: x.issuer.replaceAll('\n', ', '),
            serial,
            fingerprint: x.fingerprint256.replaceAll(':', '').toLowerCase(),
            notBefore: new Date(x.validFrom).toISOString(),
            notAfter: new Date(x.validTo).toISOString(),
          };
    return { subject: Array.isArray(cn) ? cn.join('+') : cn, serial, ...(certificate ? { certificate } : {}) };
  } catch {
    return {};
  }
}

/** The certificate the peer presented, while the socket still holds it (not after Node destroyed it). */
function presented(socket: TLSSocket): X509Certificate | undefined {
  try {
    return socket.getPeerX509Certificate();
  } catch {
    return undefined;
  }
}

/** Set on a connection whose presented certificate failed verification (tls.refusal: http): its first request is answered with the reason, then it is closed. */
const kRefusal = Symbol('broker.refusal');

interface RefusalSocket {
  [kRefusal]?: string;
}

/** The reason a refused connection is answered with (tls.refusal: http), or undefined for an admitted one. */
export function refusalOf(socket: unknown): string | undefined {
  return (socket as RefusalSocket | null)?.[kRefusal];
}

const STATUS_TEXT = 'SSL Certificate Error';

/**
 * Answers the one request of a connection refused for its certificate: 495 with the reason in
 * words, `Connection: close`, and the connection closed after it. Nothing of the request is
 * consulted or forwarded. Raw bytes on the socket, so it serves requests and upgrades alike.
 */
export function answerRefused(socket: { writable: boolean; end(data: string): unknown; destroySoon?(): void; destroy(): unknown }, reason: string): void {
  if (!socket.writable) return void socket.destroy();
  const words = clientRefusalWords(reason);
  const body = JSON.stringify({ ...httpErrorBody('BRK_ERR_TLS_CLIENT_CERT_REFUSED', '-'), reason: words.reason, hint: words.hint });
  const status = ERRORS.BRK_ERR_TLS_CLIENT_CERT_REFUSED.status;
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  socket.destroySoon?.();
}

/** Node destroys a server socket whose certificate failed verification unless this is off; OpenSSL's own mode (certificate_required for a missing certificate) is untouched. */
function keepUnverified(this: unknown, _line: Buffer, socket: TLSSocket): void {
  (socket as unknown as { _rejectUnauthorized: boolean })._rejectUnauthorized = false;
  // once per connection: the handshake's further key-log lines are not relayed to the server
  socket.removeAllListeners('keylog');
}

const kRemoteIp = Symbol('broker.remoteIp');

interface DetailedPeer {
  raw: Buffer;
  fingerprint256?: string;
  issuerCertificate?: DetailedPeer | null;
}

/**
 * The DER the client presented (when its SHA-256 is `fingerprint`) and the certificates that
 * certify it as the handshake verified them, nearest first, the self-signed trust anchor left out.
 */
export function verifiedChainDer(socket: unknown, fingerprint: string): { leaf: Buffer; chain: Buffer[] } | undefined {
  const peer = (socket as { getPeerCertificate?(detailed: boolean): DetailedPeer }).getPeerCertificate?.(true);
  if (peer?.raw === undefined || peer.fingerprint256?.replaceAll(':', '').toLowerCase() !== fingerprint) return undefined;
  const chain: Buffer[] = [];
  for (let c = peer.issuerCertificate, n = 0; c !== undefined && c !== null && n < 8 && c.issuerCertificate !== c && c.fingerprint256 !== c.issuerCertificate?.fingerprint256; c = c.issuerCertificate, n++) chain.push(c.raw);
  return { leaf: peer.raw, chain };
}

/** A principal the listener has seen, with its fields as they appear in the auth log, serialised once. */
interface Known {
  principal: Principal;
  /** okFieldsOf(principal) */
  who: string;
}

const OK_FIELDS = ['event', 'outcome', 'principal', 'roles', 'serial', 'fingerprint', 'remoteIp', 'remotePort', 'connId', 'tlsVersion', 'cipher', 'resumed'];

/** The principal's part of the "client authenticated" line: `,"event":"handshake","outcome":"ok","principal":…,"roles":…,"serial":…,"fingerprint":…`. */
export function okFieldsOf(p: Principal): string {
  return `,"event":"handshake","outcome":"ok","principal":${JSON.stringify(p.name)},"roles":${JSON.stringify(p.roles)},"serial":${JSON.stringify(p.serial)},"fingerprint":${JSON.stringify(p.fingerprint)}`;
}

type OkLine = (who: string, remoteIp: string | undefined, remotePort: number | undefined, connId: string, tlsVersion: string | null, cipher: string | undefined, resumed: boolean) => void;

/**
 * The auth log's "client authenticated" line, formatted straight into the string pino writes for
 * `log.info({ event, outcome, principal, roles, serial, fingerprint, remoteIp, remotePort, connId,
 * tlsVersion, cipher, resumed }, 'client authenticated')`: its level, time and bindings come from the logger itself,
 * the principal's fields are serialised once per certificate, and the line goes to the logger's
 * destination, as the access log does (src/observability/access-log.ts). Building an object per
 * handshake for pino to serialise was the largest part of the listener's own work per handshake.
 * Undefined for a logger set up in a way this does not reproduce (mixin, log formatter, nested
 * key, hooks, serializers or redaction on these fields, a multistream that wants metadata): pino
 * formats the line then. test/unit/auth-line.test.ts holds both to the same bytes.
 */
export function okLineFor(log: Logger): OkLine | undefined {
  const raw = rawLine(log, OK_FIELDS);
  if (raw === undefined) return undefined;
  const tail = raw.end('client authenticated');
  return (who, remoteIp, remotePort, connId, tlsVersion, cipher, resumed) => {
    if (!log.isLevelEnabled('info')) return;
    let line = `${raw.head()}${who}`;
    if (remoteIp !== undefined) line += `,"remoteIp":${JSON.stringify(remoteIp)}`;
    if (remotePort !== undefined) line += `,"remotePort":${remotePort}`;
    line += `,"connId":"${connId}","tlsVersion":${JSON.stringify(tlsVersion)}`;
    if (cipher !== undefined) line += `,"cipher":${JSON.stringify(cipher)}`;
    raw.write(`${line},"resumed":${resumed}${tail}`);
  };
}

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
  /**
   * A refused handshake from `ip` (after OpenSSL or the identity check said no), with the
   * certificate the client presented when the socket still has it (the bans decide whether it counts).
   */
  onRefused?(ip: string, cert?: X509Certificate): void;
  /** The identity rules in force now (they change on reload). */
  rules?(): ReturnType<typeof compileIdentityRules>;
  /** Revocations the CRL the handshake used may not know yet (heard from other replicas). */
  isRevoked?(serial: string): boolean;
}

export interface TlsListener extends Server {
  /** Closes every open connection of a certificate serial; returns how many. */
  closeConnectionsOf(serial: string): number;
  /** Open connections of a certificate serial now (the operator's console). */
  openConnectionsOf?(serial: string): number;
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
  /**
   * One timer per certificate with open connections, at its notAfter: its keep-alive connections
   * are closed when it expires (and each request on them compares notAfter, in the pipeline).
   */
  const expiries = new Map<string, Deadline>();
  const expire = (serial: string, name: string) => {
    expiries.delete(serial);
    const closed = server.closeConnectionsOf(serial);
    authLog.warn({ event: 'connection', outcome: 'closed', reason: 'expired', principal: name, serial, closedConnections: closed }, 'connections closed: their client certificate expired');
  };
  const n = settingsOf(c);
  const answerInHttp = c.tls.refusal !== 'close';
  const headersTimeout = n.timeouts.headers;
  const requestTimeout = n.timeouts.request;
  // Principals by certificate fingerprint: building one from Node's full peer-certificate object
  // took about 70 µs of every handshake, the SHA-256 fingerprint a few. OpenSSL has verified the
  // chain, the dates and the CRLs before this runs, and revocations are checked on every request,
  // so the cache only saves the parsing; it starts afresh when the identity rules change. With each
  // principal go its fields as the auth log writes them.
  const principals = new Map<string, Known>();
  let principalsFor: unknown;
  const okLine = okLineFor(authLog);
  const identify = (socket: TLSSocket): Known | Extract<IdentityResult, { ok: false }> => {
    const now = rules();
    if (principalsFor !== now) {
      principals.clear();
      principalsFor = now;
    }
    const fp = socket.getPeerX509Certificate()?.fingerprint256;
    const hit = fp === undefined ? undefined : principals.get(fp);
    if (hit) return hit;
    const result = principalFromPeer(socket.getPeerCertificate(), now);
    if (!result.ok) return result;
    const k: Known = { principal: result.principal, who: okFieldsOf(result.principal) };
    // cached only under the certificate's own fingerprint (as the principal has it, without colons)
    if (fp !== undefined && fp.replaceAll(':', '').toLowerCase() === result.principal.fingerprint) {
      if (principals.size >= PRINCIPAL_CACHE) principals.delete(principals.keys().next().value as string);
      principals.set(fp, k);
    }
    return k;
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
    answerInHttp ? gate(handler) : handler,
  ) as TlsListener;
  // Both modes: the broker, not Node, refuses a certificate that failed verification, so its auth
  // line can carry the certificate (Node's own destroy comes before anything can read it).
  server.on('keylog', keepUnverified);
  server.openConnectionsOf = (serial) => bySerial.get(serial)?.size ?? 0;
  server.closeConnectionsOf = (serial) => {
    const open = bySerial.get(serial);
    if (!open) return 0;
    let closed = 0;
    for (const s of [...open]) {
      if ((s as PrincipalSocket)[kRelayed]) continue; // a WebSocket: closed by its Session, with a close code
      s.destroy();
      closed++;
    }
    return closed;
  };
  /** Connections admitted without a certificate (certificate-optional listener). */
  const anonymous = new Set<TLSSocket>();
  server.closeClientConnections = () => {
    let closed = 0;
    for (const open of [...bySerial.values()]) for (const s of [...open]) (s.destroy(), closed++);
    for (const s of [...anonymous]) s.destroy();
    return closed + anonymous.size;
  };
  /**
   * Forgets a closed client connection: one function for every socket (installed with on(), as
   * 'close' comes once), so a connection costs no closure of its own.
   */
  const forget = function (this: PrincipalSocket): void {
    const p = this[kPrincipal];
    if (p === undefined) {
      anonymous.delete(this);
      return;
    }
    const open = bySerial.get(p.serial);
    if (open === undefined) return;
    open.delete(this);
    if (open.size > 0) return;
    bySerial.delete(p.serial);
    const d = expiries.get(p.serial);
    if (d !== undefined) {
      disarm(d);
      expiries.delete(p.serial);
    }
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
    authLog.warn({ event: 'handshake', outcome: 'refused', reason, detail, remoteIp, remotePort: socket.remotePort, connId: connectionId(socket), ...facts }, 'client refused');
    channels.handshake.publish({ outcome: 'refused', reason, remoteIp, ...(facts.serial ? { serial: facts.serial } : {}), ...(facts.certificate ? { subject: facts.certificate.subject, fingerprint: facts.certificate.fingerprint } : {}) } satisfies HandshakeEvent);
    if (remoteIp) hooks.onRefused?.(remoteIp, presented(socket));
  };
  const refuse = (socket: PrincipalSocket, reason: string, detail: string) => {
    report(socket, reason, detail, socket.remoteAddress);
    socket.destroy();
  };
  /** A presented certificate failed verification: refused (logged, counted) as ever; with tls.refusal http its first request learns why. */
  const refuseCertificate = (socket: PrincipalSocket, reason: string, detail: string) => {
    if (!answerInHttp) return refuse(socket, reason, detail);
    report(socket, reason, detail, socket.remoteAddress);
    (socket as RefusalSocket)[kRefusal] = reason;
  };

  server.prependListener('secureConnection', (socket: PrincipalSocket) => {
    if (socket.destroyed) return; // refused by the connection guard (a ban on this certificate)
    const remoteIp = socket.remoteAddress;
    if (!o.certOptional && !socket.authorized) {
      // tls.refusal http: Node left a certificate that failed verification connected (keepUnverified).
      const { reason, detail } = refusalReason(socket.authorizationError, new Error(String(socket.authorizationError ?? 'certificate not verified')));
      return refuseCertificate(socket, reason, detail);
    }
    if (o.certOptional && !socket.authorized) {
      // OpenSSL let the handshake finish: either no certificate was sent (admitted, the routes'
      // credentials decide) or one failed verification (refused, with OpenSSL's reason).
      if (socket.getPeerX509Certificate() !== undefined) {
        const { reason, detail } = refusalReason(socket.authorizationError, new Error(String(socket.authorizationError ?? 'certificate not verified')));
        return refuseCertificate(socket, reason, detail);
      }
      socket[kAnonymous] = true;
      anonymous.add(socket);
      socket.on('close', forget);
      channels.handshake.publish({ outcome: 'ok', remoteIp } satisfies HandshakeEvent);
      authLog.info({ event: 'handshake', outcome: 'ok', principal: null, certificate: false, remoteIp, remotePort: socket.remotePort, connId: connectionId(socket), tlsVersion: socket.getProtocol(), cipher: socket.getCipher()?.name }, 'client connected without a certificate');
      return;
    }
    const id = identify(socket);
    if (!('who' in id)) return refuse(socket, id.reason, id.detail);
    const p = id.principal;
    if (hooks.isRevoked?.(p.serial)) return refuseCertificate(socket, 'revoked', 'revoked (announced by another replica)');
    socket[kPrincipal] = p;
    let open = bySerial.get(p.serial);
    if (!open) {
      bySerial.set(p.serial, (open = new Set()));
      const d: Deadline = { at: p.notAfter.getTime(), timer: undefined, expire: () => expire(p.serial, p.name) };
      expiries.set(p.serial, d);
      arm(d);
    }
    open.add(socket);
    socket.on('close', forget);
    channels.handshake.publish({ outcome: 'ok', remoteIp, principal: p.name, serial: p.serial } satisfies HandshakeEvent);
    if (okLine) okLine(id.who, remoteIp, socket.remotePort, connectionId(socket), socket.getProtocol(), socket.getCipher()?.name, socket.isSessionReused());
    else {
      authLog.info(
        { event: 'handshake', outcome: 'ok', principal: p.name, roles: p.roles, serial: p.serial, fingerprint: p.fingerprint, remoteIp, remotePort: socket.remotePort, connId: connectionId(socket), tlsVersion: socket.getProtocol(), cipher: socket.getCipher()?.name, resumed: socket.isSessionReused() },
        'client authenticated',
      );
    }
  });

  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    // A connection the guard refused at accept never got to TLS: it was logged there already.
    if ((socket as unknown as { _parent?: Record<symbol, unknown> })._parent?.[kRefused]) return;
    const { reason, detail } = refusalReason(socket.authorizationError, err);
    report(socket, reason, detail, remoteIpOf(socket));
  });
  return server;
}

/** The request handler of a listener with tls.refusal http: a connection refused for its certificate gets its answer here, before anything of the pipeline. */
function gate(handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const refused = (req.socket as RefusalSocket)[kRefusal];
    if (refused === undefined) return handler(req, res);
    res.shouldKeepAlive = false;
    answerRefused(req.socket as TLSSocket, refused);
  };
}
