/**
 * The admin listener: health, readiness and metrics on its own address (127.0.0.1 by default),
 * never on the public listener. Beyond loopback it requires a bearer token (config check refuses
 * otherwise); /healthz stays open so an orchestrator can probe liveness.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface AdminDeps {
  registry: Registry;
  readiness(): Promise<ReadinessCheck[]>;
  /** Bearer token required on every endpoint but /healthz; undefined: none (loopback only). */
  token?: string | undefined;
  /** Admin actions (reload, …) are registered by their owners. */
  extend?(app: FastifyInstance): void;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export async function buildAdmin(deps: AdminDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, requestIdHeader: false });
  const want = deps.token === undefined ? undefined : digest(deps.token);
  app.addHook('onRequest', (request, reply, done) => {
    if (want === undefined || request.url === '/healthz') return done();
    const auth = request.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? digest(auth.slice(7)) : undefined;
    if (!given || !timingSafeEqual(given, want)) {
      reply.code(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, code: 'BRK_ERR_ADMIN_UNAUTHORIZED', message: 'admin token required' });
      return;
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
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', deps.registry.contentType);
    return deps.registry.metrics();
  });
  deps.extend?.(app);
  await app.ready();
  return app;
}
