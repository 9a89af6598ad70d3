/**
 * The composition root: builds the broker from a validated config and never listens by itself.
 * Long-lived parts (the TLS listeners, the shared store, the connection guard, logs, metrics,
 * alerts, the admin listener) live as long as the process; the request path is one generation per
 * config (src/pipeline.ts), swapped atomically by `reload()` (src/lifecycle/reload.ts).
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { BrokerConfig } from './config/index.ts';
import { settingsOf } from './config/index.ts';
import { compileIdentityRules } from './identity/index.ts';
import { loadTlsMaterial, type TlsMaterial } from './tls/material.ts';
import { readiness } from './admin/readiness.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { createAlerts, type AlertEngine } from './observability/alerts.ts';
import { buildAdmin } from './admin/plugin.ts';
import { clientCertificates, expirySource } from './observability/expiry.ts';
import { createLoggers, type Loggers } from './observability/loggers.ts';
import { ConnectionGuard } from './filter/connection-guard.ts';
import { createStore, type SharedStore } from './ratelimit/index.ts';
import { compilePipeline, type Generation } from './pipeline.ts';
import { REVOKED_KEY_PREFIX, buildVerifiers, type Verifiers } from './auth/index.ts';
import type { TlsListener } from './tls/listener.ts';
import { ablationsFrom, type Ablations } from './ablation.ts';
import { createListeners, listenAll } from './lifecycle/listeners.ts';
import { Generations } from './lifecycle/generations.ts';
import { createDrain } from './lifecycle/drain.ts';
import { revocationFanOut } from './lifecycle/revocations.ts';
import { LiveConnections } from './proxy/live.ts';
import { reloader, type Current, type ReloadResult } from './lifecycle/reload.ts';
import { assertionKeeper, type PreparedAssertions } from './lifecycle/assertion-keys.ts';
import { createForwardListener, type ForwardListener, type LookupFn } from './forward/index.ts';
import { createActivity, type Activity } from './console/activity.ts';
import { createConsoleSource } from './console/source.ts';
import { registerConsoleApi } from './console/api.ts';
import type { ConsoleSource } from './console/model.ts';
import { consolePages, sessionKey } from './console/web/index.ts';

export type { ReloadResult } from './lifecycle/reload.ts';

export interface Broker {
  /** The current generation's request path (changes on reload). */
  readonly generation: Generation;
  readonly config: BrokerConfig;
  readonly material: TlsMaterial;
  store: SharedStore;
  guard: ConnectionGuard;
  server: TlsListener;
  /** The certificate-optional listener (listenCertOptional), when configured. */
  optionalServer: TlsListener | undefined;
  /** The forward (egress) listener (forward.listen), when configured. */
  forwardServer: TlsListener | undefined;
  loggers: Loggers;
  /** Relayed WebSockets and keyed keep-alive connections (revocation, expiry, caps, relay stats). */
  live: LiveConnections;
  metrics: Metrics;
  alerts: AlertEngine;
  admin: FastifyInstance | undefined;
  /** The operator's console data (admin.console with the admin listener on): what /api/console/* and /console/ show. */
  console: ConsoleSource | undefined;
  /** Starts listening (and the admin listener); resolves with the bound addresses. */
  listen(): Promise<{ host: string; port: number; adminPort?: number; optionalPort?: number; forwardPort?: number }>;
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
  /** Name resolution of the forward listener's SSRF guard (tests: a resolver stub); default node:dns. */
  forwardLookup?: LookupFn;
  /** Features switched off to measure their cost (default: BROKER_ABLATE; benchmark only). */
  ablations?: Ablations;
  /** The data behind the console pages (tests: a double); default the broker's own. */
  consoleSource?: ConsoleSource;
}

/**
 * The alert engine and its clocks: certificate expiry at start and hourly; the loaded CRL's
 * nextUpdate (`checkCrl`) at start and every minute, since a short CRL can pass within the hour
 * (reloads check it too).
 */
function startAlerts(
  c: BrokerConfig,
  error: Loggers['error'],
  expiry: ReturnType<typeof expirySource>,
  checkClients: (alerts: AlertEngine) => void,
  checkCrl: (alerts: AlertEngine) => void,
): { alerts: AlertEngine; timers: NodeJS.Timeout[] } {
  const n = settingsOf(c);
  const alerts = createAlerts(
    {
      webhook: c.alerts.webhook,
      dedupWindowMs: n.alerts.dedupWindowMs,
      windowMs: n.alerts.windowMs,
      failedHandshakesPerIp: c.alerts.failedHandshakesPerIp,
      failedHandshakesTotal: c.alerts.failedHandshakesTotal,
      rateLimitHits: c.alerts.rateLimitHits,
      expiryWarningMs: n.alerts.expiryWarningMs,
      crlExpiryMs: n.alerts.crlExpiryMs,
      webhookTimeoutMs: n.alerts.webhookTimeoutMs,
      clientExpiry: n.alerts.clientExpiry,
    },
    error,
  );
  alerts.checkExpiry(expiry());
  checkClients(alerts);
  checkCrl(alerts);
  return {
    alerts,
    timers: [
      setInterval(() => {
        alerts.checkExpiry(expiry());
        checkClients(alerts);
      }, 3_600_000).unref(),
      setInterval(() => checkCrl(alerts), 60_000).unref(),
    ],
  };
}

export async function buildBroker(initial: BrokerConfig, o: BuildOptions = {}): Promise<Broker> {
  const n = settingsOf(initial);
  const ablations = o.ablations ?? ablationsFrom(process.env.BROKER_ABLATE);
  const loggers = o.loggers ?? createLoggers({ ...initial.log, ...(ablations.authLog ? { auth: 'off' } : {}), bufferBytes: n.logBufferBytes, flushMs: n.logFlushMs });
  if (Object.keys(ablations).length) loggers.error.warn({ event: 'ablation', off: Object.keys(ablations) }, `BROKER_ABLATE: ${Object.keys(ablations).join(', ')} switched off (for benchmarks only)`);

  // ---- long-lived parts
  const initialVerifiers = buildVerifiers(initial);
  let current: Current = { config: initial, material: loadTlsMaterial(initial), verifiers: initialVerifiers, revokedKeys: new Set(initialVerifiers.keys.revokedIds().map((id) => REVOKED_KEY_PREFIX + id)) };
  let rules = compileIdentityRules(initial.identities);
  const store = o.store ?? createStore(initial, loggers.error);
  const guard = new ConnectionGuard(initial, store, loggers.auth, loggers.audit);
  await guard.start();
  store.onRecover?.(() => void guard.start());
  let heard: (serial: string) => boolean = () => false;
  // A serial is hex and never starts like "key:": certificate callers skip the revoked-key set.
  const keyMark = REVOKED_KEY_PREFIX.charCodeAt(0);
  const isRevoked = (id: string) => current.material.revoked.has(id) || heard(id) || (id.charCodeAt(0) === keyMark && current.revokedKeys.has(id));

  // ---- the first generation, and the listeners that hand it requests
  const live = new LiveConnections(loggers.auth, REVOKED_KEY_PREFIX);
  // The identity assertion signer is per generation (a rotated store key arrives with a reload);
  // the keys of the generation last compiled are published when it is swapped in (reloads run one at a time).
  const assertions = assertionKeeper(loggers.error);
  let compiledAssertions: PreparedAssertions = { keys: undefined, signer: undefined };
  const compile = (c: BrokerConfig, verifiers: Verifiers) => {
    const a = assertions.prepare(c);
    compiledAssertions = a;
    return compilePipeline(c, { loggers, store, guard, isRevoked, verifiers, ablations, live, ...(a.signer ? { assertion: a.signer } : {}) });
  };
  const generations = new Generations(await compile(initial, current.verifiers));
  try {
    assertions.apply(initial, compiledAssertions, { strict: true });
  } catch (err) {
    await generations.current.close().catch(() => {});
    throw err;
  }
  const drain = createDrain();
  const hooks = { onRefused: (ip: string, cert?: import('node:crypto').X509Certificate) => void guard.failure(ip, 'handshake', cert), rules: () => rules, isRevoked: (serial: string) => heard(serial) };
  const listeners = createListeners(
    initial,
    current.material,
    loggers.auth,
    {
      request: drain.track((req, res) => generations.current.handle(req, res)),
      upgrade: (req, socket, head) => generations.current.upgrade(req, socket, head),
    },
    hooks,
  );
  if (!ablations.guard) for (const s of listeners.all) guard.attach(s);
  // The forward (egress) listener: the same certificates, client-certificate policy, guard and bans.
  const forward: ForwardListener | undefined = initial.forward ? createForwardListener(initial, current.material, { loggers, guard: ablations.guard ? undefined : guard, isRevoked, verifiers: () => current.verifiers, hooks, store, ...(o.forwardLookup ? { lookup: o.forwardLookup } : {}) }) : undefined;
  if (forward && !ablations.guard) guard.attach(forward.server);
  /** A revoked credential (serial or `key:<id>`): its WebSockets get a close frame, its other connections are cut. */
  const closeConnectionsOf = (ids: Iterable<string>): number => {
    const list = [...ids];
    let forwardClosed = 0;
    if (forward) for (const id of list) forwardClosed += forward.server.closeConnectionsOf(id);
    return live.closeOf(list) + listeners.closeConnectionsOf(list) + forwardClosed;
  };
  const revocations = await revocationFanOut(store, loggers.audit, closeConnectionsOf);
  heard = revocations.heard;

  // ---- observability
  const metrics = o.metrics ?? createMetrics();
  if (ablations.metrics) metrics.close();
  const expiry = expirySource(initial, () => current.material);
  metrics.setExpirySource(expiry);
  metrics.setBansActive(() => guard.activeBans);
  metrics.setPoolSource(() => generations.current.pools());
  // ---- client certificate expiry notices (issue 17): the inventory is read at start, at every reload and hourly
  let clientCerts = clientCertificates(initial);
  metrics.setClientCertSource(() => clientCerts);
  const checkClients = (engine: AlertEngine) => {
    clientCerts = clientCertificates(current.config);
    engine.checkClientExpiry(clientCerts);
  };
  const checkCrl = (engine: AlertEngine) => void engine.checkCrl(current.material.crlNextUpdate, current.material.files.crl || undefined);
  const { alerts, timers: alertTimers } = startAlerts(initial, loggers.error, expiry, checkClients, checkCrl);

  // ---- reload: whatever the outcome, the CRL now loaded is checked (a refused reload may still have applied a new CRL)
  const reloadNow = reloader({
    current: () => current,
    source: o.reloadSource,
    compile,
    setSecureContext: (options) => {
      for (const s of listeners.all) s.setSecureContext(options);
      forward?.server.setSecureContext(options);
    },
    commit(next, generation) {
      generations.swap(generation, settingsOf(next.config).drainMs);
      assertions.apply(next.config, compiledAssertions);
      current = next;
      rules = compileIdentityRules(next.config.identities);
      listeners.applyLimits(next.config);
      forward?.update(next.config);
      guard.update(next.config);
      checkClients(alerts);
    },
    applyRevocations(next) {
      current = next;
    },
    closeConnectionsOf,
    announce: revocations.announce,
    audit: loggers.audit,
    error: loggers.error,
  });
  const reload: typeof reloadNow = async (next, trigger) => {
    try {
      return await reloadNow(next, trigger);
    } finally {
      checkCrl(alerts);
    }
  };

  const adminToken = initial.admin.tokenFile ? readFileSync(initial.admin.tokenFile, 'utf8').split(/\r?\n/, 1)[0] : undefined;
  // ---- the operator's console: activity is only listened for when it is served, so the request path publishes to no one otherwise
  const activity: Activity | undefined = initial.admin.enabled && initial.admin.console && !ablations.console ? createActivity() : undefined;
  const consoleSource: ConsoleSource | undefined = o.consoleSource ?? (activity
    ? createConsoleSource({
        config: () => current.config,
        material: () => current.material,
        activity,
        store,
        guard,
        openConnectionsOf: (serial) => {
          let n = 0;
          for (const s of listeners.all) n += s.openConnectionsOf?.(serial) ?? 0;
          return n + (forward?.server.openConnectionsOf?.(serial) ?? 0);
        },
        reload: (trigger) => reload(undefined, trigger),
        audit: loggers.audit,
      })
    : undefined);

  const admin = initial.admin.enabled
    ? await buildAdmin({
        registry: metrics.registry,
        scrape: metrics.scrape,
        token: adminToken,
        console: consoleSource !== undefined,
        allowedHosts: initial.admin.allowedHosts,
        jwks: () => assertions.jwks(),
        readiness: readiness({
          serverNotAfter: () => current.material.server.notAfter,
          crlNextUpdate: () => current.material.crlNextUpdate,
          upstreams: () => current.config.routes.map((r) => ({ route: r.name, url: r.upstream })),
          upstreamTimeoutMs: n.adminUpstreamCheckMs,
          store,
        }),
        extend(adminApp) {
          if (consoleSource) void adminApp.register(consolePages, { source: consoleSource, token: adminToken, sessionKey: sessionKey(current.material.key, adminToken), audit: loggers.audit });
          adminApp.post('/reload', async (_request, reply) => {
            const r = await reload(undefined, 'admin');
            loggers.audit.info({ event: 'admin', action: 'reload', outcome: r.ok ? 'ok' : 'failed' }, 'reload requested on the admin listener');
            reply.code(r.ok ? 200 : 422);
            return r;
          });
          if (consoleSource) registerConsoleApi(adminApp, consoleSource);
        },
      })
    : undefined;

  let closing: Promise<void> | undefined;
  return {
    get generation() {
      return generations.current;
    },
    get config() {
      return current.config;
    },
    get material() {
      return current.material;
    },
    store,
    guard,
    server: listeners.server,
    optionalServer: listeners.optionalServer,
    forwardServer: forward?.server,
    loggers,
    live,
    metrics,
    alerts,
    admin,
    console: consoleSource,
    async listen() {
      const bound = await listenAll(listeners, current.config, admin);
      const at = current.config.forward?.listen;
      if (!forward || !at) return bound;
      try {
        return { ...bound, forwardPort: await forward.listen(at) };
      } catch (err) {
        for (const s of listeners.all) s.close();
        await admin?.close();
        throw Object.assign(new Error(`forward listener ${at.host}:${at.port}: ${(err as NodeJS.ErrnoException).code ?? err}`), { code: (err as NodeJS.ErrnoException).code, forward: true });
      }
    },
    reload,
    close(graceMs = 0) {
      closing ??= (async () => {
        guard.close();
        for (const timer of alertTimers) clearInterval(timer);
        assertions.close();
        // tunnels have no natural end to wait for: the forward listener stops at once
        await Promise.all([drain.stop(listeners.all, graceMs), forward?.close()]);
        alerts.close();
        activity?.close();
        if (!o.metrics) metrics.close();
        await Promise.all([generations.closeAll(), admin?.close()]);
        await store.close();
        loggers.flush();
      })();
      return closing;
    },
  };
}
