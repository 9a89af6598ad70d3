/**
 * The console's JSON API on the admin listener: `GET /api/console/{partners,certificates,live,changes}`
 * and `POST /api/console/actions/{revoke-certificate,revoke-credential,lift-ban,reload}`. The admin
 * listener's onRequest hook already applies its rules (Host, token, loopback, and for POST the
 * X-Broker-Admin header or token and no foreign Origin); the pages at /console/ use this same API.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { ActionResult, ConsoleSource } from './model.ts';

export const CONSOLE_API = '/api/console';

/** Each action, the body field naming its target, and the source method. */
const ACTIONS: Record<ActionResult['action'], { field: string | undefined; run: (s: ConsoleSource, target: string) => Promise<ActionResult> }> = {
  'revoke-certificate': { field: 'serial', run: (s, t) => s.revokeCertificate(t) },
  'revoke-credential': { field: 'id', run: (s, t) => s.revokeCredential(t) },
  'lift-ban': { field: 'key', run: (s, t) => s.liftBan(t) },
  reload: { field: undefined, run: (s) => s.reload() },
};

function answer(reply: FastifyReply, r: ActionResult): ActionResult {
  const e = r.code ? (ERRORS[r.code as ErrorCode] as { status?: number } | undefined) : undefined;
  reply.code(r.ok ? 200 : (e?.status ?? 500));
  return r;
}

export function registerConsoleApi(app: FastifyInstance, source: ConsoleSource): void {
  app.get(`${CONSOLE_API}/partners`, () => source.partners());
  app.get(`${CONSOLE_API}/certificates`, () => source.certificates());
  app.get(`${CONSOLE_API}/live`, () => source.live());
  app.get(`${CONSOLE_API}/changes`, () => source.changes());
  app.post<{ Params: { action: string }; Body: unknown }>(`${CONSOLE_API}/actions/:action`, async (request, reply) => {
    const name = request.params.action as ActionResult['action'];
    const spec = Object.hasOwn(ACTIONS, name) ? ACTIONS[name] : undefined;
    if (!spec) {
      const e = ERRORS.BRK_ERR_CONSOLE_NOT_FOUND;
      return reply.code(404).send({ statusCode: 404, code: 'BRK_ERR_CONSOLE_NOT_FOUND', message: `no console action "${name}"`, hint: e.hint });
    }
    const body = request.body;
    let target = '';
    if (spec.field !== undefined) {
      const v = body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[spec.field] : undefined;
      if (typeof v !== 'string' || v.length === 0 || v.length > 512) {
        return answer(reply, { ok: false, action: name, target: '', code: 'BRK_ERR_CONSOLE_BAD_REQUEST', message: `send a JSON body with "${spec.field}" (a string)` });
      }
      target = v;
    }
    return answer(reply, await spec.run(source, target));
  });
}
