/**
 * The composition root: builds the broker from a validated config and never listens by itself.
 * Long-lived parts (the TLS listener, the shared store, the connection guard, logs, metrics,
 * alerts, the admin listener) live as long as the process; the request-handling app is one
 * generation per config (app.ts), swapped atomically by `reload()`.
 *
 * Request path: TCP accept (guard) → TLS handshake (chain + CRLs, identity decided once per
 * connection) → rewriteUrl (one canonical path) → onRequest (head checks, identity, role address
 * lists, revocation) → route → ACL → limits → proxy → access log.
 */
import { readFileSync } from 'node:fs';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { BrokerConfig } from './config/index.ts';
import { parseDuration, parseSize } from './config/index.ts';
import { compileIdentityRules } from './identity/index.ts';
import { createTlsServer, isAdmitted, type TlsListener } from './tls/listener.ts';
import { loadTlsMaterial, type TlsMaterial } from './tls/material.ts';
import { secureContextOptions } from './tls/options.ts';
import { readiness } from './observability/plugin.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { createAlerts, type AlertEngine } from './observability/alerts.ts';
import { buildAdmin } from './admin/plugin.ts';
import { expirySource } from './observability/expiry.ts';
import { createLoggers, type Loggers } from './observability/loggers.ts';
import { ERRORS, httpErrorBody, type HttpErrorCode } from './errors.ts';
import { ConnectionGuard } from './filter/connection-guard.ts';
import { createStore, type SharedStore } from './ratelimit/index.ts';
import { buildApp } from './app.ts';
import { channels } from './channels.ts';
import { buildVerifiers, REVOKED_KEY_PREFIX } from './auth/index.ts';

export interface ReloadResult {
  ok: boolean;
  problems: string[];
  /** Settings that changed but only take effect after a restart. */
  restartNeeded: string[];
  revoked: number;
}

export interface Broker {
  /** The current generation's app (changes on reload). */
  readonly app: FastifyInstance;
  readonly config: BrokerConfig;
  readonly material: TlsMaterial;
  store: SharedStore;
  guard: ConnectionGuard;
  server: TlsListener;
  /** The certificate-optional listener (listenCertOptional), when configured. */
  optionalServer: TlsListener | undefined;
  loggers: Loggers;
  metrics: Metrics;
  alerts: AlertEngine;
  admin: FastifyInstance | undefined;
  /** Starts listening (and the admin listener); resolves with the bound addresses. */
  listen(): Promise<{ host: string; port: number; adminPort?: number; optionalPort?: number }>;
  /**
   * Builds everything for `next` off to the side and switches to it; on any problem keeps the
   * current config and certificates and says why. `next` defaults to re-reading the same config
   * (new certificates, CRL) when the caller has no new file content.
   */
  reload(next?: BrokerConfig, trigger?: string): Promise<ReloadResult>;
  /** Stops accepting, lets running requests finish up to `graceMs`, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

export interface BuildOptions {
  loggers?: Loggers;
  /** The shared store, when the caller provides it (a cluster worker talks to its primary's). */
  store?: SharedStore;
  /** Metrics shared by several brokers in one process (tests); by default each makes its own. */
  metrics?: Metrics;
  /** Re-reads the config file for reloads without an explicit config (SIGHUP, POST /reload, file changes). */
  reloadSource?: () => BrokerConfig;
}

function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  // Only HTTP errors (parser, request/headers deadline) on an established connection get an answer.
  // TLS errors arrive here too (a handshake timeout, an alert): there is no channel to answer on,
  // and `end()` would keep the connection open for ever; those sockets are destroyed.
  const httpError = err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
  if (!httpError || !socket.writable || !isAdmitted(socket)) return void socket.destroy();
  const code: HttpErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'BRK_ERR_HTTP_HEADERS_TOO_LARGE' : 'BRK_ERR_HTTP_BAD_REQUEST';
  const body = JSON.stringify(httpErrorBody(code, '-'));
  const status = ERRORS[code].status;
  socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** Top-level settings a reload cannot change in a running process. */
const RESTART_ONLY = ['listen', 'listenCertOptional', 'admin', 'log', 'workers', 'redis'] as const;

function restartNeeded(a: BrokerConfig, b: BrokerConfig): string[] {
  const changed: string[] = RESTART_ONLY.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (a.rateLimit.store !== b.rateLimit.store || a.rateLimit.failOpen !== b.rateLimit.failOpen) changed.push('rateLimit.store');
  if (a.limits.headerSize !== b.limits.headerSize) changed.push('limits.headerSize');
  return changed;
}

/** How long a replaced generation is kept for the requests still running on it. */
function drainMs(c: BrokerConfig): number {
  return Math.max(...c.routes.map((r) => parseDuration(r.timeout, 'timeout')), parseDuration(c.timeouts.request, 'timeouts.request')) + 5_000;
}

export async function buildBroker(initial: BrokerConfig, o: BuildOptions = {}): Promise<Broker> {
  const loggers = o.loggers ?? createLoggers({ ...initial.log, bufferBytes: parseSize(initial.log.buffer, 'log.buffer'), flushMs: parseDuration(initial.log.flushInterval, 'log.flushInterval') });
  let config = initial;
  let material = loadTlsMaterial(config);
  let rules = compileIdentityRules(config.identities);
  /** Revocations heard from other replicas, beyond this replica's CRL. */
  const remoteRevoked = new Set<string>();
  const isRevoked = (serial: string) => material.revoked.has(serial) || remoteRevoked.has(serial);
  const store = o.store ?? createStore(config, loggers.error);
  const guard = new ConnectionGuard(config, store, loggers.auth, loggers.audit);
  await guard.start();
  store.onRecover?.(() => void guard.start());

  const deps = { loggers, store, guard, isRevoked };
  let verifiers = buildVerifiers(config);
  let app = await buildApp(config, { ...deps, verifiers });
  /** Replaced generations, closed once their running requests had time to finish. */
  const retired = new Map<NodeJS.Timeout, FastifyInstance>();

  // Responses being written, so that a shutdown can tell each one to end its connection: a kept-alive
  // connection would otherwise take further requests until the grace period cuts them off.
  const running = new Set<ServerResponse>();
  let draining = false;
  const finished = function (this: ServerResponse) {
    running.delete(this);
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    if (draining) res.shouldKeepAlive = false;
    running.add(res);
    res.once('close', finished);
    app.routing(req, res);
  };

  const hooks = {
    onRefused: (ip: string) => void guard.failure(ip, 'handshake'),
    rules: () => rules,
    isRevoked: (serial: string) => remoteRevoked.has(serial),
  };
  // The main listener always requires a client certificate; routes whose auth drops mtls are
  // reached on a second listener that asks for one without requiring it.
  const server = createTlsServer(config, material, loggers.auth, handle, hooks);
  const optionalServer = config.listenCertOptional ? createTlsServer(config, material, loggers.auth, handle, hooks, { certOptional: true }) : undefined;
  const servers = optionalServer ? [server, optionalServer] : [server];
  const applyServerLimits = (c: BrokerConfig) => {
    for (const s of servers) {
      s.maxRequestsPerSocket = c.filters.maxRequestsPerConnection;
      s.maxHeadersCount = c.limits.headerCount + 1;
      s.headersTimeout = parseDuration(c.timeouts.headers, 'timeouts.headers');
      s.requestTimeout = parseDuration(c.timeouts.request, 'timeouts.request');
      s.keepAliveTimeout = parseDuration(c.timeouts.keepAlive, 'timeouts.keepAlive');
    }
  };
  applyServerLimits(config);
  for (const s of servers) {
    s.on('clientError', clientErrorHandler);
    guard.attach(s);
    // WebSocket upgrades go to the current generation: to its WebSocket routes when it has any,
    // otherwise through its normal request path (which refuses them).
    s.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (app.server.listenerCount('upgrade') > 0) {
        app.server.emit('upgrade', req, socket, head);
        return;
      }
      const res = new ServerResponse(req);
      res.assignSocket(socket as never);
      res.on('finish', () => socket.destroy());
      app.routing(req, res);
    });
  }

  const closeRevoked = (serials: Iterable<string>): number => {
    let closed = 0;
    for (const serial of serials) for (const s of servers) closed += s.closeConnectionsOf(serial);
    return closed;
  };
  store.onRevoked?.((heard) => {
    for (const s of heard) remoteRevoked.add(s);
    const serials = heard.filter((s) => !s.startsWith(REVOKED_KEY_PREFIX));
    const keys = heard.filter((s) => s.startsWith(REVOKED_KEY_PREFIX)).map((s) => s.slice(REVOKED_KEY_PREFIX.length));
    const closed = closeRevoked(serials);
    loggers.audit.info({ event: 'revocation', source: 'replica', serials, ...(keys.length ? { keys } : {}), closedConnections: closed }, 'revocations heard from another replica');
  });
  for (const s of (await store.revokedSerials?.()) ?? []) remoteRevoked.add(s);

  const metrics = o.metrics ?? createMetrics();
  const expiry = expirySource(config, () => material);
  metrics.setExpirySource(expiry);
  metrics.setBansActive(() => guard.activeBans);
  const alerts = createAlerts(
    {
      webhook: config.alerts.webhook,
      dedupWindowMs: parseDuration(config.alerts.dedupWindow, 'alerts.dedupWindow'),
      windowMs: parseDuration(config.alerts.window, 'alerts.window'),
      failedHandshakesPerIp: config.alerts.failedHandshakesPerIp,
      failedHandshakesTotal: config.alerts.failedHandshakesTotal,
      rateLimitHits: config.alerts.rateLimitHits,
      expiryWarningMs: parseDuration(config.alerts.expiryWarning, 'alerts.expiryWarning'),
      webhookTimeoutMs: parseDuration(config.alerts.webhookTimeout, 'alerts.webhookTimeout'),
    },
    loggers.error,
  );
  alerts.checkExpiry(expiry());
  const expiryTimer = setInterval(() => alerts.checkExpiry(expiry()), 3_600_000).unref();

  let reloading: Promise<ReloadResult> | undefined;
  const reload = async (next?: BrokerConfig, trigger = 'api'): Promise<ReloadResult> => {
    let target = next ?? config;
    let restart: string[] = [];
    try {
      if (!next && o.reloadSource) target = o.reloadSource();
      restart = restartNeeded(config, target);
      const nextMaterial = loadTlsMaterial(target);
      const nextVerifiers = buildVerifiers(target, { config, verifiers });
      const nextApp = await buildApp(target, { ...deps, verifiers: nextVerifiers });
      try {
        // setSecureContext replaces every option: hand it the full set.
        for (const s of servers) s.setSecureContext(secureContextOptions(nextMaterial, target.tls));
      } catch (err) {
        await nextApp.close().catch(() => {});
        throw err;
      }
      const newlyRevoked = [...nextMaterial.revoked].filter((s) => !material.revoked.has(s));
      const wasRevoked = new Set(verifiers.keys.revokedIds());
      const newlyRevokedKeys = nextVerifiers.keys.revokedIds().filter((id) => !wasRevoked.has(id));
      const previous = app;
      app = nextApp;
      verifiers = nextVerifiers;
      material = nextMaterial;
      rules = compileIdentityRules(target.identities);
      applyServerLimits(target);
      guard.update(target);
      config = target;
      const timer = setTimeout(() => {
        retired.delete(timer);
        void previous.close().catch(() => {});
      }, drainMs(target)).unref();
      retired.set(timer, previous);
      const closed = closeRevoked(newlyRevoked);
      const announce = [...newlyRevoked, ...newlyRevokedKeys.map((id) => REVOKED_KEY_PREFIX + id)];
      if (announce.length) await store.publishRevoked?.(announce);
      loggers.audit.info({ event: 'reload', outcome: 'ok', trigger, routes: target.routes.length, revoked: newlyRevoked, revokedKeys: newlyRevokedKeys, closedConnections: closed, restartNeeded: restart }, 'configuration and certificates reloaded');
      if (restart.length) loggers.error.warn({ event: 'reload', restartNeeded: restart }, `changes to ${restart.join(', ')} take effect after a restart`);
      channels.reload.publish({ outcome: 'ok' });
      return { ok: true, problems: [], restartNeeded: restart, revoked: newlyRevoked.length };
    } catch (err) {
      const problems = ((err as Error).message ?? String(err)).split('\n').map((l) => l.trim()).filter(Boolean);
      loggers.error.error({ event: 'reload', outcome: 'failed', trigger, problems }, 'reload refused; still serving the previous configuration');
      loggers.audit.info({ event: 'reload', outcome: 'failed', trigger, problems }, 'reload refused');
      channels.reload.publish({ outcome: 'failed' });
      return { ok: false, problems, restartNeeded: restart, revoked: 0 };
    }
  };
  const serialReload = (next?: BrokerConfig, trigger?: string): Promise<ReloadResult> => {
    const run = (reloading ?? Promise.resolve()).then(() => reload(next, trigger));
    reloading = run.finally(() => {
      if (reloading === run) reloading = undefined;
    }) as Promise<ReloadResult>;
    return run;
  };

  const admin = config.admin.enabled
    ? await buildAdmin({
        registry: metrics.registry,
        token: config.admin.tokenFile ? readFileSync(config.admin.tokenFile, 'utf8').split(/\r?\n/, 1)[0] : undefined,
        readiness: readiness({
          serverNotAfter: () => material.server.notAfter,
          crlNextUpdate: () => material.crlNextUpdate,
          upstreams: () => config.routes.map((r) => ({ route: r.name, url: r.upstream })),
          upstreamTimeoutMs: parseDuration(config.admin.upstreamCheckTimeout, 'admin.upstreamCheckTimeout'),
          store,
        }),
        extend(adminApp) {
          adminApp.post('/reload', async (_request, reply) => {
            const r = await serialReload(undefined, 'admin');
            loggers.audit.info({ event: 'admin', action: 'reload', outcome: r.ok ? 'ok' : 'failed' }, 'reload requested on the admin listener');
            reply.code(r.ok ? 200 : 422);
            return r;
          });
        },
      })
    : undefined;

  let closing: Promise<void> | undefined;
  const broker: Broker = {
    get app() {
      return app;
    },
    get config() {
      return config;
    },
    get material() {
      return material;
    },
    store,
    guard,
    server,
    optionalServer,
    loggers,
    metrics,
    alerts,
    admin,
    async listen() {
      const bind = (s: TlsListener, at: { host: string; port: number }) =>
        new Promise<{ address: string; port: number }>((resolve, reject) => {
          s.once('error', reject);
          s.listen(at.port, at.host, () => {
            s.off('error', reject);
            const addr = s.address();
            if (!addr || typeof addr === 'string') reject(new Error('listener has no TCP address'));
            else resolve(addr);
          });
        });
      const addr = await bind(server, config.listen);
      let optionalPort: number | undefined;
      if (optionalServer && config.listenCertOptional) {
        try {
          optionalPort = (await bind(optionalServer, config.listenCertOptional)).port;
        } catch (err) {
          server.close();
          throw Object.assign(new Error(`certificate-optional listener ${config.listenCertOptional.host}:${config.listenCertOptional.port}: ${(err as NodeJS.ErrnoException).code ?? err}`), { code: (err as NodeJS.ErrnoException).code, optional: true });
        }
      }
      let adminPort: number | undefined;
      if (admin) {
        try {
          await admin.listen({ host: config.admin.host, port: config.admin.port });
        } catch (err) {
          server.close();
          optionalServer?.close();
          throw Object.assign(new Error(`admin listener ${config.admin.host}:${config.admin.port}: ${(err as NodeJS.ErrnoException).code ?? err}`), { code: (err as NodeJS.ErrnoException).code, admin: true });
        }
        const a = admin.server.address();
        adminPort = a && typeof a !== 'string' ? a.port : undefined;
      }
      return { host: addr.address, port: addr.port, ...(adminPort !== undefined ? { adminPort } : {}), ...(optionalPort !== undefined ? { optionalPort } : {}) };
    },
    reload: serialReload,
    close(graceMs = 0) {
      closing ??= (async () => {
        guard.close();
        clearInterval(expiryTimer);
        for (const t of retired.keys()) clearTimeout(t);
        // Stop accepting; idle keep-alive connections go now, busy ones after their answer
        // ("Connection: close", or closed once idle when the answer's head is already out).
        draining = true;
        for (const res of running) {
          if (!res.headersSent) res.shouldKeepAlive = false;
          else res.once('close', () => setImmediate(() => { for (const s of servers) s.closeIdleConnections(); }));
        }
        const stopped = Promise.all(servers.map((s) => (s.listening ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve())));
        for (const s of servers) s.closeIdleConnections();
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
        await Promise.race([stopped, deadline]);
        for (const s of servers) {
          s.closeAllConnections();
          // WebSockets (upgraded connections) are not among Node's connections: without this they
          // would keep the process alive after the grace period.
          s.closeClientConnections();
        }
        alerts.close();
        if (!o.metrics) metrics.close();
        await Promise.all([app.close(), admin?.close(), ...[...retired.values()].map((a) => a.close().catch(() => {}))]);
        await store.close();
        loggers.flush();
      })();
      return closing;
    },
  };
  return broker;
}
