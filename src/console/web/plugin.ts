/**
 * The console's pages on the admin listener (`/console/`): server-rendered HTML over the same
 * ConsoleSource the JSON API reads. A browser cannot send the admin bearer token, so the admin's
 * onRequest hook lets /console/* through (Host and Origin rules still apply) and this plugin
 * checks its own login: the admin token once, on a form, then a signed session cookie; every
 * action form carries the session's CSRF token and passes a confirmation page first.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, isBrokerError, type HttpErrorCode } from '../../errors.ts';
import type { ActionResult, ConsoleSource } from '../model.ts';
import { ASSETS } from './assets.ts';
import { PAGES, html, page, type Html } from './html.ts';
import { SESSION_COOKIE, cookieValue, sessions, type Session } from './session.ts';
import { ACTIONS, certificatesBody, changesBody, confirmBody, errorBody, liveBody, loginBody, partnersBody, resultBody, type ActionName } from './views.ts';
import { randomBytes } from 'node:crypto';

export interface ConsolePagesOptions {
  source: ConsoleSource;
  /** The admin token (admin.tokenFile); undefined: a loopback-only listener, no login. */
  token: string | undefined;
  /** Signs session cookies; the same in every worker (sessionKey()); default random per process. */
  sessionKey?: Buffer;
  /** Where logins and log-outs are written (actions are audited by the source). */
  audit?: { info(fields: object, msg: string): void; warn(fields: object, msg: string): void };
}

/** On every console answer (pages, assets, refusals). Referrer-Policy: see README "Console pages". */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

type Form = Record<string, string>;
const digest = (s: string) => createHash('sha256').update(s).digest();
const PAGE_PATHS: ReadonlySet<string> = new Set(PAGES.map((p) => p.path));
const isAction = (a: string): a is ActionName => Object.hasOwn(ACTIONS, a);

export async function consolePages(app: FastifyInstance, o: ConsolePagesOptions): Promise<void> {
  const store = sessions(o.sessionKey ?? randomBytes(32));
  const want = o.token === undefined ? undefined : digest(o.token);
  const logout = want !== undefined;

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    return payload;
  });

  const setCookie = (reply: FastifyReply, value: string, maxAge?: number) =>
    reply.header('set-cookie', `${SESSION_COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict${maxAge === undefined ? '' : `; Max-Age=${maxAge}`}`);
  const send = (reply: FastifyReply, status: number, title: string, body: Html, extra: { path?: string; csrf?: string } = {}) =>
    reply.code(status).type('text/html; charset=utf-8').send(page({ title, logout, ...extra }, body));
  const refuse = (reply: FastifyReply, code: HttpErrorCode, csrf?: string) => {
    const e = ERRORS[code];
    return send(reply.header('x-broker-error', code), e.status, 'Refused', errorBody(code, e.public, e.hint), csrf === undefined ? {} : { csrf });
  };

  /** The request's session (refreshed), a new one where no login is needed, or undefined. */
  const sessionOf = (request: FastifyRequest, reply: FastifyReply): Session | undefined => {
    let s = store.check(cookieValue(request.headers.cookie, SESSION_COOKIE));
    if (!s && want === undefined && request.method === 'GET') s = store.open();
    if (s) setCookie(reply, s.cookie);
    return s;
  };
  /** GET pages: the session, or a redirect to the login form. */
  const viewer = (request: FastifyRequest, reply: FastifyReply): Session | undefined => {
    const s = sessionOf(request, reply);
    if (!s) {
      const next = PAGE_PATHS.has(request.url.split('?')[0] as string) ? request.url.split('?')[0] : '/console/';
      void reply.code(303).header('location', `/console/login?next=${encodeURIComponent(next as string)}`).send();
    }
    return s;
  };
  /** POSTs: the session and a matching CSRF token, else a 403 with the code. */
  const actor = (request: FastifyRequest, reply: FastifyReply): Session | undefined => {
    const s = sessionOf(request, reply);
    if (!s) return void refuse(reply, 'BRK_ERR_CONSOLE_SESSION');
    if (!store.csrfMatches(s, formOf(request).csrf)) return void refuse(reply, 'BRK_ERR_CONSOLE_CSRF', s.csrf);
    return s;
  };

  for (const [path, asset] of ASSETS) app.get(path, async (_request, reply) => reply.type(asset.type).send(asset.body));
  app.get('/console', async (_request, reply) => reply.code(308).header('location', '/console/').send());

  app.get('/console/login', async (request, reply) => {
    const next = (request.query as Form).next;
    if (want === undefined) return reply.code(303).header('location', '/console/').send();
    return send(reply, 200, 'Log in', loginBody(PAGE_PATHS.has(next ?? '') ? (next as string) : '/console/', undefined));
  });
  app.post('/console/login', async (request, reply) => {
    if (want === undefined) return reply.code(303).header('location', '/console/').send();
    const form = formOf(request);
    const next = PAGE_PATHS.has(form.next ?? '') ? (form.next as string) : '/console/';
    const given = typeof form.token === 'string' ? digest(form.token) : undefined;
    if (!given || !timingSafeEqual(given, want)) {
      o.audit?.warn({ event: 'console', action: 'login', outcome: 'refused', remoteIp: request.socket.remoteAddress }, 'console login with a wrong admin token');
      const e = ERRORS.BRK_ERR_CONSOLE_LOGIN;
      return send(reply.header('x-broker-error', 'BRK_ERR_CONSOLE_LOGIN'), e.status, 'Log in', loginBody(next, `BRK_ERR_CONSOLE_LOGIN: ${e.public}`));
    }
    o.audit?.info({ event: 'console', action: 'login', outcome: 'ok', remoteIp: request.socket.remoteAddress }, 'console login');
    setCookie(reply, store.open().cookie);
    return reply.code(303).header('location', next).send();
  });
  app.post('/console/logout', async (request, reply) => {
    if (!actor(request, reply)) return reply;
    o.audit?.info({ event: 'console', action: 'logout', remoteIp: request.socket.remoteAddress }, 'console logout');
    setCookie(reply, '', 0);
    return reply.code(303).header('location', want === undefined ? '/console/' : '/console/login').send();
  });

  const views: Record<string, (request: FastifyRequest) => Promise<Html>> = {
    '/console/': async () => partnersBody(await o.source.partners()),
    '/console/certificates': async () => certificatesBody(await o.source.certificates()),
    '/console/live': async (request) => {
      const refresh = Number((request.query as Form).refresh);
      return liveBody(await o.source.live(), Number.isInteger(refresh) && refresh >= 2 && refresh <= 3600 ? refresh : undefined);
    },
    '/console/changes': async () => changesBody(await o.source.changes()),
  };
  for (const p of PAGES) {
    app.get(p.path, async (request, reply) => {
      const s = viewer(request, reply);
      if (!s) return reply;
      return send(reply, 200, p.title, await (views[p.path] as (r: FastifyRequest) => Promise<Html>)(request), { path: p.path, csrf: s.csrf });
    });
  }

  /** The confirmation page: what the action will do, to whom, with [Do it] [Cancel]. */
  app.get('/console/actions/:action', async (request, reply) => {
    const action = (request.params as { action: string }).action;
    if (!isAction(action)) return refuse(reply, 'BRK_ERR_CONSOLE_NOT_FOUND');
    const s = viewer(request, reply);
    if (!s) return reply;
    const field = ACTIONS[action].field;
    const target = field ? (request.query as Form)[field] : '';
    if (field && !validTarget(target)) return refuse(reply, 'BRK_ERR_CONSOLE_BAD_REQUEST', s.csrf);
    const question = await questionFor(o.source, action, target as string);
    if (!question) return refuse(reply, 'BRK_ERR_CONSOLE_NOT_FOUND', s.csrf);
    return send(reply, 200, 'Confirm', confirmBody(action, target as string, question, s.csrf, backOf(action)), { csrf: s.csrf });
  });
  app.post('/console/actions/:action', async (request, reply) => {
    const action = (request.params as { action: string }).action;
    if (!isAction(action)) return refuse(reply, 'BRK_ERR_CONSOLE_NOT_FOUND');
    const s = actor(request, reply);
    if (!s) return reply;
    const field = ACTIONS[action].field;
    const target = field ? formOf(request)[field] : '';
    if (field && !validTarget(target)) return refuse(reply, 'BRK_ERR_CONSOLE_BAD_REQUEST', s.csrf);
    let result: ActionResult;
    try {
      result = await run(o.source, action, target as string);
    } catch (err) {
      // the source audits what it did; an unexpected failure is shown with its code, not its stack
      result = { ok: false, action, target: target as string, message: isBrokerError(err) ? `${err.code}: ${err.message}` : 'the action failed unexpectedly; the error log has the details' };
    }
    return send(reply, result.ok ? 200 : 422, result.ok ? 'Done' : 'Failed', resultBody(result, backOf(action)), { csrf: s.csrf });
  });
}

function formOf(request: FastifyRequest): Form {
  const b = request.body;
  return b !== null && typeof b === 'object' ? (b as Form) : {};
}

const validTarget = (t: unknown): t is string => typeof t === 'string' && t.length > 0 && t.length <= 256;
const backOf = (a: ActionName) => (a === 'revoke-certificate' || a === 'revoke-credential' ? '/console/' : '/console/live');

function run(source: ConsoleSource, action: ActionName, target: string): Promise<ActionResult> {
  switch (action) {
    case 'revoke-certificate':
      return source.revokeCertificate(target);
    case 'revoke-credential':
      return source.revokeCredential(target);
    case 'lift-ban':
      return source.liftBan(target);
    case 'reload':
      return source.reload();
  }
}

/** The confirmation question, naming the holder; undefined when the console does not show the target. */
async function questionFor(source: ConsoleSource, action: ActionName, target: string): Promise<Html | undefined> {
  if (action === 'reload') return html`Reload the configuration and certificates now? A bad configuration is refused and the current one keeps serving.`;
  if (action === 'lift-ban') {
    const ban = (await source.live()).bans.find((b) => b.key === target);
    return ban && html`Lift the ban on <code>${ban.key}</code> (until ${ban.until})?`;
  }
  const kind = action === 'revoke-certificate' ? 'certificate' : undefined;
  for (const p of (await source.partners()).partners) {
    const c = p.credentials.find((x) => x.id === target && (kind ? x.kind === kind : x.kind !== 'certificate'));
    if (c) return html`Revoke ${c.kind === 'certificate' ? 'certificate' : c.kind === 'apiKey' ? 'API key' : 'Basic credential'} <code>${c.id}</code> of <strong>${p.name}</strong>? Its connections are closed and it cannot be used again.`;
  }
  return undefined;
}
