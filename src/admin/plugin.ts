/**
 * The admin listener: health, readiness and metrics on its own address (127.0.0.1 by default),
 * never on the public listener. Beyond loopback it requires a bearer token (config check refuses
 * otherwise, and a token-less listener refuses connections that arrive on a non-loopback address);
 * /healthz stays open so an orchestrator can probe liveness, and /.well-known/jwks.json so upstreams
 * can fetch the identity assertion keys (public keys only).
 *
 * Browsers are kept out, since a page on any site can make a browser send requests to loopback:
 * - Host must be an IP address, `localhost` or a name in `admin.allowedHosts` (421 otherwise): a
 *   DNS-rebinding page reaches the listener under its own name, which is none of these, so it
 *   cannot read /metrics. The port is not checked: it is not what rebinding changes, and SSH or
 *   kubectl port forwards change it.
 * - State-changing requests (anything but GET and HEAD) need `X-Broker-Admin: 1` or the bearer
 *   token, and no Origin but the admin's own (403 otherwise): a cross-site form or `fetch` cannot
 *   add a custom header without a CORS preflight, which this listener never grants.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Registry } from 'prom-client';
import { ERRORS, type HttpErrorCode } from '../errors.ts';
import { isLoopbackAddress } from '../config/index.ts';
import { hostProblem } from '../filter/index.ts';
import { isIP } from 'node:net';

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface AdminDeps {
  registry: Registry;
  /** The text of a scrape when it is not just `registry`'s (with --workers: every worker's, summed by the primary). */
  scrape?(): Promise<string>;
  readiness(): Promise<ReadinessCheck[]>;
  /** Bearer token required on every endpoint but /healthz and the JWKS; undefined: none (loopback only). */
  token?: string | undefined;
  /** Host names answered besides IP addresses and localhost (admin.allowedHosts). */
  allowedHosts?: readonly string[];
  /**
   * The identity assertion keys published now (JWKS), served at /.well-known/jwks.json without the
   * admin token. Read on every request: it changes on reload and when a replaced key retires.
   */
  jwks?(): { keys: readonly object[] };
  /**
   * The console pages are served (src/console/web): /console and /console/* check their own login
   * (a session cookie after the admin token was given on a form) and per-session CSRF token instead
   * of the bearer token and X-Broker-Admin header, which a browser cannot send. Host and Origin rules still apply.
   */
  console?: boolean;
  /** Admin actions (reload, …) are registered by their owners. */
  extend?(app: FastifyInstance): void;
}

/** The header a state-changing request carries when it comes without the bearer token. */
export const ADMIN_HEADER = 'x-broker-admin';

/** Where the identity assertion keys are published (readable without the token, like /healthz). */
export const JWKS_PATH = '/.well-known/jwks.json';
/** Paths answered without the bearer token: liveness, and public keys upstreams must fetch. */
const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', JWKS_PATH]);

const digest = (s: string) => createHash('sha256').update(s).digest();

function refuse(reply: FastifyReply, code: HttpErrorCode & `BRK_ERR_ADMIN_${string}`): void {
  const e = ERRORS[code];
  if (code === 'BRK_ERR_ADMIN_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  reply.code(e.status).send({ statusCode: e.status, code, message: e.public });
}

/** Whether a Host header names this listener in a way no DNS-rebinding page can: an IP address, localhost, or a configured name. */
export function adminHostAllowed(host: string | undefined, names: ReadonlySet<string>): boolean {
  if (host === undefined || hostProblem(host) !== undefined) return false;
  if (host.charCodeAt(0) === 91 /* [ */) return true; // a bracketed IPv6 address (hostProblem checked it)
  const colon = host.indexOf(':');
  const name = (colon === -1 ? host : host.slice(0, colon)).toLowerCase();
  return isIP(name) === 4 || name === 'localhost' || names.has(name);
}

export async function buildAdmin(deps: AdminDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, requestIdHeader: false });
  const want = deps.token === undefined ? undefined : digest(deps.token);
  const names: ReadonlySet<string> = new Set((deps.allowedHosts ?? []).map((h) => h.toLowerCase()));
  app.addHook('onRequest', (request, reply, done) => {
    const host = request.headers.host;
    if (!adminHostAllowed(host, names)) return refuse(reply, 'BRK_ERR_ADMIN_HOST');
    // Without a token the listener is for loopback only, whatever address it was bound to.
    if (want === undefined && !isLoopbackAddress(request.socket.localAddress ?? '')) return refuse(reply, 'BRK_ERR_ADMIN_NOT_LOOPBACK');
    const byConsole = deps.console === true && (request.url === '/console' || request.url.startsWith('/console/'));
    if (want !== undefined && !OPEN_PATHS.has(request.url) && !byConsole) {
      const auth = request.headers.authorization ?? '';
      const given = auth.startsWith('Bearer ') ? digest(auth.slice(7)) : undefined;
      if (!given || !timingSafeEqual(given, want)) return refuse(reply, 'BRK_ERR_ADMIN_UNAUTHORIZED');
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const origin = request.headers.origin;
      if (origin !== undefined && origin.toLowerCase() !== `http://${(host as string).toLowerCase()}`) return refuse(reply, 'BRK_ERR_ADMIN_CROSS_SITE');
      if (want === undefined && !byConsole && request.headers[ADMIN_HEADER] !== '1') return refuse(reply, 'BRK_ERR_ADMIN_CROSS_SITE');
    }
    done();
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const checks = await deps.readiness();
    const ready = checks.every((c) => c.ok);
    reply.code(ready ? 200 : 503);
    return { ready, checks, notReady: checks.filter((c) => !c.ok).map((c) => c.name) };
  });
  const scrape = deps.scrape ?? (() => deps.registry.metrics());
  app.get('/metrics', async (_request, reply) => {
    let text: string;
    try {
      text = await scrape();
    } catch {
      // A worker did not answer the primary: fail the scrape rather than serve a partial sum.
      return refuse(reply, 'BRK_ERR_ADMIN_METRICS_UNAVAILABLE');
    }
    reply.header('content-type', deps.registry.contentType);
    return text;
  });
  if (deps.jwks) {
    const jwks = deps.jwks;
    app.get(JWKS_PATH, async (_request, reply) => {
      // Upstreams cache it; a rotation's overlap (default 1h) covers this and the token lifetime.
      reply.header('content-type', 'application/jwk-set+json').header('cache-control', 'public, max-age=300');
      return JSON.stringify({ keys: jwks().keys });
    });
  }
  deps.extend?.(app);
  await app.ready();
  return app;
}
