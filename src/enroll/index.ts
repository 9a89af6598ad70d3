/**
 * The lifecycle endpoints under /.well-known/broker/, loaded by src/pipeline.ts only when
 * enrollment.enabled (with it off, nothing here is imported and those paths are ordinary paths):
 *
 *   GET  /.well-known/broker/ca      the CA certificates (issuing CA, roots) as PEM: what a partner
 *                                     checks against its token's pin before trusting the broker
 *   POST /.well-known/broker/enroll  {token, csr}: only to a caller without a certificate (that is,
 *                                     on the certificate-optional listener)
 *   POST /.well-known/broker/renew   {csr}: only to a caller with a verified certificate (stage 2
 *                                     of the pipeline has already refused revoked and expired ones)
 *
 * The certificate is for the invitation's (or the current certificate's) identity and roles; the
 * CSR gives only its public key, after its self-signature verified. POSTs are limited per client
 * address (enrollment.rateLimit); refusals answer 4xx through the pipeline's `refuse`, so 401/403
 * count toward bans like any denied request.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { isBrokerError, type HttpErrorCode } from '../errors.ts';
import type { BrokerConfig } from '../config/index.ts';
import { settingsOf } from '../config/index.ts';
import type { RequestContext } from '../request/index.ts';
import type { SharedStore } from '../ratelimit/store.ts';
import type { LimitCheck } from '../ratelimit/policy.ts';
import { CaStore } from '../pki/store.ts';
import { readText } from '../pki/files.ts';
import { readCsr } from '../pki/issue.ts';
import { clientCertByFingerprint, parseToken, redeemInvitation, renewalOpensAt, renewByFingerprint, type Minted } from '../pki/invitations.ts';
import { caPassphrase, issuerSource } from './issuer.ts';

export const LIFECYCLE_PREFIX = '/.well-known/broker/';
const BODY_LIMIT = 64 * 1024;
const JSON_TYPE = 'application/json; charset=utf-8';

export type Refuse = (ctx: RequestContext, code: HttpErrorCode, detail: string, close?: boolean) => false;

export interface LifecycleDeps {
  store: SharedStore;
  /** Every attempt (auth log). */
  log: Logger;
  /** Every certificate issued (audit log, besides the PKI audit log's line). */
  audit: Logger;
  errorLog: Logger;
}

export interface LifecycleEndpoints {
  /** Answers a request whose canonical path starts with /.well-known/broker/. */
  handle(ctx: RequestContext, refuse: Refuse): void;
}

class Refusal {
  readonly code: HttpErrorCode;
  readonly detail: string;
  constructor(code: HttpErrorCode, detail: string) {
    this.code = code;
    this.detail = detail;
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > BODY_LIMIT) return reject(new Refusal('BRK_ERR_ENROLL_BAD_REQUEST', `body of ${declared} bytes (at most ${BODY_LIMIT})`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        req.removeAllListeners('data');
        reject(new Refusal('BRK_ERR_ENROLL_BAD_REQUEST', `body over ${BODY_LIMIT} bytes`));
      } else chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(req);
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new Refusal('BRK_ERR_ENROLL_BAD_REQUEST', 'the body is not a JSON object');
}

async function csrKey(body: Record<string, unknown>): Promise<CryptoKey> {
  if (typeof body.csr !== 'string' || !body.csr.includes('-----BEGIN CERTIFICATE REQUEST-----')) throw new Refusal('BRK_ERR_ENROLL_CSR_INVALID', 'no PEM "csr" in the body');
  try {
    return await readCsr(Buffer.from(body.csr, 'latin1'), 'the request');
  } catch (err) {
    if (isBrokerError(err, 'BRK_ERR_PKI_CSR_INVALID')) throw new Refusal('BRK_ERR_ENROLL_CSR_INVALID', err.message);
    throw err;
  }
}

/** What a refusal of the store or the CA means to the partner. */
function refusalOf(err: unknown): Refusal | undefined {
  if (err instanceof Refusal) return err;
  if (!isBrokerError(err)) return undefined;
  switch (err.code) {
    case 'BRK_ERR_ENROLL_TOKEN_INVALID':
    case 'BRK_ERR_ENROLL_TOKEN_EXPIRED':
    case 'BRK_ERR_ENROLL_TOKEN_USED':
    case 'BRK_ERR_ENROLL_TOKEN_REVOKED':
    case 'BRK_ERR_ENROLL_CERT_UNKNOWN':
    case 'BRK_ERR_ENROLL_TOO_EARLY':
      return new Refusal(err.code, err.message);
    case 'BRK_ERR_PKI_LOCKED':
    case 'BRK_ERR_PKI_LOCK_LOST':
    case 'BRK_ERR_PKI_FILE_WRITE':
    case 'BRK_ERR_PKI_AUDIT_INTERRUPTED':
      return new Refusal('BRK_ERR_ENROLL_UNAVAILABLE', `${err.code}: ${err.message}`);
    default:
      return undefined;
  }
}

export async function lifecycleEndpoints(c: BrokerConfig, deps: LifecycleDeps): Promise<LifecycleEndpoints> {
  const n = settingsOf(c).enrollment;
  const store = CaStore.open(c.pki.dir);
  const issuerFor = issuerSource(store.layout, caPassphrase(c));
  // decrypted now, so that a wrong or missing passphrase stops this generation (serve, reload), not a partner
  await issuerFor(store.readInventory());
  const renewAfter = c.enrollment.renewAfter;
  const { log, audit, errorLog } = deps;

  function caBundle(): string {
    const l = store.layout;
    return readText(l.intermediateCert, 'issuing CA certificate').trimEnd() + '\n' + readText(l.caCert, 'CA bundle').trimEnd() + '\n';
  }

  function send(ctx: RequestContext, type: string, body: string): void {
    const res = ctx.res;
    const headers: Record<string, string | number> = ctx.headers ?? {};
    headers['content-type'] = type;
    headers['cache-control'] = 'no-store';
    headers['x-request-id'] = ctx.id;
    headers['content-length'] = ctx.bytesOut = Buffer.byteLength(body);
    res.writeHead(200, headers);
    res.end(ctx.req.method === 'HEAD' ? undefined : body);
  }

  function issued(ctx: RequestContext, m: Minted): void {
    const l = store.layout;
    send(
      ctx,
      JSON_TYPE,
      JSON.stringify({
        name: m.record.name,
        roles: m.record.roles,
        serial: m.record.serial,
        notAfter: m.record.notAfter,
        certificate: `${m.cert.toString('pem')}\n`,
        chain: `${m.issuer.cert.toString('pem')}\n`,
        ca: readText(l.caCert, 'CA bundle'),
      }),
    );
  }

  async function admitted(ip: string): Promise<Refusal | undefined> {
    const checks: LimitCheck[] = [{ key: `enroll:${ip}`, spec: n.rate }];
    const v = await deps.store.take(checks);
    return v.allowed ? undefined : new Refusal('BRK_ERR_ENROLL_RATE_LIMITED', `more than ${n.rate.burst} attempts from ${ip} (enrollment.rateLimit); retry in ${Math.ceil(v.retryAfterMs / 1000)} s`);
  }

  async function enroll(ctx: RequestContext, ip: string): Promise<void> {
    const body = await jsonBody(ctx.req);
    if (typeof body.token !== 'string') throw new Refusal('BRK_ERR_ENROLL_TOKEN_INVALID', 'no "token" in the body');
    const token = parseToken(body.token);
    const publicKey = await csrKey(body);
    const m = await redeemInvitation(store, { token, publicKey, issuerFor, remoteIp: ip });
    const line = { event: 'enroll', outcome: 'ok', principal: m.record.name, roles: m.record.roles, serial: m.record.serial, notAfter: m.record.notAfter, invitation: token.id, remoteIp: ip, reqId: ctx.id };
    log.info(line, 'partner enrolled');
    audit.info(line, `certificate ${m.record.serial} issued to ${m.record.name} by enrolment`);
    issued(ctx, m);
  }

  async function renew(ctx: RequestContext, ip: string): Promise<void> {
    const p = ctx.principal;
    if (p === undefined) throw new Refusal('BRK_ERR_ENROLL_LISTENER', 'renewal needs the current client certificate on the connection');
    // Too early is answered without the store lock (and without a PKI audit line: a daily timer
    // asks early by design), with Retry-After; the store change checks again under the lock.
    const rec = clientCertByFingerprint(store.readInventory(), p.fingerprint);
    const opens = rec === undefined ? 0 : renewalOpensAt(rec, renewAfter);
    if (Date.now() < opens) {
      ctx.setHeader('retry-after', Math.ceil((opens - Date.now()) / 1000));
      throw new Refusal('BRK_ERR_ENROLL_TOO_EARLY', `certificate ${p.serial} of ${p.name} can renew from ${new Date(Math.ceil(opens)).toISOString()} (enrollment.renewAfter ${renewAfter})`);
    }
    const body = await jsonBody(ctx.req);
    const publicKey = await csrKey(body);
    const m = await renewByFingerprint(store, { fingerprint: p.fingerprint, publicKey, ttlMs: n.certTtlMs, renewAfter, issuerFor, remoteIp: ip });
    const line = { event: 'renew', outcome: 'ok', principal: m.record.name, roles: m.record.roles, serial: m.record.serial, notAfter: m.record.notAfter, renews: p.serial, remoteIp: ip, reqId: ctx.id };
    log.info(line, 'certificate renewed over mTLS');
    audit.info(line, `certificate ${m.record.serial} issued to ${m.record.name} by renewal of ${p.serial}`);
    issued(ctx, m);
  }

  async function post(ctx: RequestContext, refuse: Refuse, what: 'enroll' | 'renew'): Promise<void> {
    const ip = ctx.req.socket.remoteAddress ?? '';
    try {
      if (what === 'enroll' && ctx.principal !== undefined) throw new Refusal('BRK_ERR_ENROLL_LISTENER', 'enrolment is for callers without a certificate, on the certificate-optional listener');
      const limited = await admitted(ip);
      if (limited !== undefined) {
        ctx.setHeader('retry-after', 60);
        throw limited;
      }
      await (what === 'enroll' ? enroll(ctx, ip) : renew(ctx, ip));
    } catch (err) {
      const r = refusalOf(err);
      if (r === undefined) {
        errorLog.error({ event: 'internal', reqId: ctx.id, op: what, err }, `${what} failed`);
        return void refuse(ctx, 'BRK_ERR_HTTP_INTERNAL', (err as Error)?.message ?? String(err));
      }
      log.warn({ event: what, outcome: 'refused', code: r.code, reason: r.detail, principal: ctx.principal?.name ?? null, remoteIp: ip, reqId: ctx.id }, `${what} refused`);
      if (r.code === 'BRK_ERR_ENROLL_UNAVAILABLE') errorLog.error({ event: what, reqId: ctx.id, detail: r.detail }, 'the CA store could not be changed');
      refuse(ctx, r.code, r.detail, r.code === 'BRK_ERR_ENROLL_BAD_REQUEST');
    }
  }

  return {
    handle(ctx, refuse) {
      const sub = ctx.path.slice(LIFECYCLE_PREFIX.length);
      const method = ctx.req.method;
      if (sub === 'ca') {
        if (method !== 'GET' && method !== 'HEAD') return void refuse(ctx, 'BRK_ERR_ENROLL_BAD_REQUEST', `${method} on ${ctx.path}`);
        return send(ctx, 'application/pem-certificate-chain', caBundle());
      }
      if (sub !== 'enroll' && sub !== 'renew') return void refuse(ctx, 'BRK_ERR_HTTP_NOT_FOUND', `no lifecycle endpoint ${ctx.path}`);
      if (method !== 'POST') return void refuse(ctx, 'BRK_ERR_ENROLL_BAD_REQUEST', `${method} on ${ctx.path} (POST a JSON body)`);
      void post(ctx, refuse, sub);
    },
  };
}
