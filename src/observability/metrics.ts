/**
 * Prometheus metrics, fed by the diagnostics channels. Its own registry (not prom-client's global
 * one), Prometheus naming (`broker_…_total`, `_seconds`), label values from small closed sets
 * (route names, roles, status codes, reasons) so cardinality stays bounded. Certificate expiry
 * gauges are computed when scraped. Process metrics are prom-client's defaults under their usual
 * names (`process_*`, `nodejs_*`), so stock dashboards and alerts work.
 *
 * With `--workers N` each worker keeps its own registry and the primary adds them up for a scrape
 * (src/observability/cluster-metrics.ts). Every gauge says how: `sum` (prom-client's default) for
 * what each worker holds a share of, `max`/`min` for what every worker sees alike (bans in the
 * shared store, certificate dates), so N workers do not multiply it.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { listen, type BanEvent, type ConnectionEvent, type CredentialEvent, type HandshakeEvent, type RejectEvent, type RequestEvent, type StoreEvent, type ForwardEvent } from '../channels.ts';

export interface ExpirySource {
  /** [kind, name, notAfter] for every certificate and CRL worth watching. */
  (): Array<{ kind: 'server' | 'ca' | 'crl' | 'client'; name: string; notAfter: Date }>;
}

/** Each identity's newest unrevoked, unexpired client certificate (read at start, reload and hourly). */
export interface ClientCertSource {
  (): ReadonlyArray<{ identity: string; serial: string; notAfter: Date }>;
}

export interface PoolSource {
  (): Array<{ route: string; inUse: number; max: number }>;
}

export interface Metrics {
  registry: Registry;
  /** The text of a scrape: this registry's, or with --workers every worker's added up (cluster-metrics.ts). */
  scrape(): Promise<string>;
  /** Gauge of bans in force, refreshed on scrape. */
  setBansActive(fn: () => number): void;
  setExpirySource(fn: ExpirySource): void;
  setClientCertSource(fn: ClientCertSource): void;
  /** Each route's upstream pool now (read on scrape: nothing is counted on the request path). */
  setPoolSource(fn: PoolSource): void;
  close(): void;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics(o: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (o.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const requests = new Counter({ name: 'broker_requests_total', help: 'Requests answered, by route, granting role and status', labelNames: ['route', 'role', 'status'], registers: [registry] });
  const duration = new Histogram({ name: 'broker_request_duration_seconds', help: 'Time from request head to response end', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const upstream = new Histogram({ name: 'broker_upstream_duration_seconds', help: 'Time the upstream took to answer', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const handshakes = new Counter({ name: 'broker_handshakes_total', help: 'TLS handshakes by outcome and failure reason', labelNames: ['outcome', 'reason'], registers: [registry] });
  const credentials = new Counter({ name: 'broker_credentials_total', help: 'API keys, bearer tokens and Basic credentials checked, by method, outcome and failure reason', labelNames: ['method', 'outcome', 'reason'], registers: [registry] });
  const rejections = new Counter({ name: 'broker_rejections_total', help: 'Requests and connections refused by limits and filters, by kind', labelNames: ['kind'], registers: [registry] });
  const open = new Gauge({ name: 'broker_open_connections', help: 'Client connections open now', registers: [registry] });
  const bans = new Counter({ name: 'broker_bans_total', help: 'Addresses banned, by reason', labelNames: ['reason'], registers: [registry] });
  let bansActive: () => number = () => 0;
  new Gauge({ name: 'broker_bans_active', help: 'Addresses banned now', aggregator: 'max', registers: [registry], collect() { this.set(bansActive()); } });
  const reloads = new Counter({ name: 'broker_reloads_total', help: 'Reloads of config and certificates, by outcome', labelNames: ['outcome'], registers: [registry] });
  // The start is the first load (the broker refuses to start on a bad one): 1, at start time.
  const lastReloadOk = new Gauge({ name: 'broker_config_last_reload_success', help: 'Whether the last reload of config and certificates succeeded (1) or was refused (0); 1 from the start until the first reload', aggregator: 'min', registers: [registry] });
  const lastReloadAt = new Gauge({ name: 'broker_config_last_reload_timestamp_seconds', help: 'When (Unix seconds) config and certificates were last reloaded, whatever the outcome; the start time until the first reload', aggregator: 'max', registers: [registry] });
  lastReloadOk.set(1);
  lastReloadAt.set(Math.floor(Date.now() / 1000));
  const forwards = new Counter({ name: 'broker_forward_total', help: 'Forward (egress) tunnels and requests, by identity, outcome (ok, refused, failed) and refusal code', labelNames: ['identity', 'outcome', 'code'], registers: [registry] });
  const forwardBytes = new Counter({ name: 'broker_forward_bytes_total', help: 'Bytes the forward listener carried, by identity and direction (up: to destinations, down: from them)', labelNames: ['identity', 'direction'], registers: [registry] });
  const storeErrors = new Counter({ name: 'broker_redis_errors_total', help: 'Shared store (Redis) outages and errors', labelNames: ['outcome'], registers: [registry] });
  let pools: PoolSource = () => [];
  new Gauge({
    name: 'broker_upstream_connections_in_use',
    help: 'Upstream exchanges under way per route (each holds, or waits for, one of the pool\'s connections)',
    labelNames: ['route'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of pools()) this.set({ route: p.route }, p.inUse);
    },
  });
  new Gauge({
    name: 'broker_upstream_connections_max',
    help: 'Size of each route\'s upstream pool (limits.upstreamConnections)',
    labelNames: ['route'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of pools()) this.set({ route: p.route }, p.max);
    },
  });
  const shareRefusals = new Counter({ name: 'broker_upstream_share_refusals_total', help: 'Requests refused because their identity had its share of the route\'s upstream connections in use (429 BRK_ERR_RATE_UPSTREAM_SHARE)', labelNames: ['route'], registers: [registry] });
  let expiry: ExpirySource = () => [];
  new Gauge({
    name: 'broker_certificate_expiry_timestamp_seconds',
    help: 'End (Unix seconds) of the server certificate, the CA certificates, the CRLs (nextUpdate) and every issued client certificate: notAfter',
    labelNames: ['kind', 'name'],
    // Workers that disagree (one failed a reload) report the sooner end: alerts err on the early side.
    aggregator: 'min',
    registers: [registry],
    collect() {
      this.reset();
      for (const e of expiry()) this.set({ kind: e.kind, name: e.name }, Math.floor(e.notAfter.getTime() / 1000));
    },
  });

  let clientCerts: ClientCertSource = () => [];
  new Gauge({
    name: 'broker_client_certificate_expiry_timestamp_seconds',
    help: 'End (notAfter, Unix seconds) of each identity\'s newest unrevoked client certificate in the PKI store\'s inventory',
    labelNames: ['identity', 'serial'],
    aggregator: 'min',
    registers: [registry],
    collect() {
      this.reset();
      for (const c of clientCerts()) this.set({ identity: c.identity, serial: c.serial }, Math.floor(c.notAfter.getTime() / 1000));
    },
  });

  const onHandshake = (m: unknown) => {
    const e = m as HandshakeEvent;
    handshakes.inc({ outcome: e.outcome, reason: e.outcome === 'ok' ? '' : (e.reason ?? 'unknown') });
  };
  const onCredential = (m: unknown) => {
    const e = m as CredentialEvent;
    credentials.inc({ method: e.method, outcome: e.outcome, reason: e.outcome === 'ok' ? '' : (e.reason ?? 'unknown') });
  };
  const onRequest = (m: unknown) => {
    const e = m as RequestEvent;
    const route = e.route ?? '';
    requests.inc({ route, role: e.role, status: String(e.status) });
    duration.observe({ route }, e.durationMs / 1000);
    if (e.upstreamMs !== undefined) upstream.observe({ route }, e.upstreamMs / 1000);
    if (e.code === 'BRK_ERR_RATE_UPSTREAM_SHARE') shareRefusals.inc({ route });
  };
  const onReject = (m: unknown) => rejections.inc({ kind: (m as RejectEvent).kind });
  const onBan = (m: unknown) => bans.inc({ reason: (m as BanEvent).reason });
  const onStore = (m: unknown) => storeErrors.inc({ outcome: (m as StoreEvent).outcome });
  const onConnection = (m: unknown) => open.inc((m as ConnectionEvent).delta);
  const onReload = (m: unknown) => {
    const outcome = (m as { outcome: string }).outcome;
    reloads.inc({ outcome });
    lastReloadOk.set(outcome === 'ok' ? 1 : 0);
    lastReloadAt.set(Math.floor(Date.now() / 1000));
  };
  const onForward = (m: unknown) => {
    const e = m as ForwardEvent;
    const identity = e.principal ?? '';
    forwards.inc({ identity, outcome: e.outcome, code: e.code ?? '' });
    if (e.bytesUp > 0) forwardBytes.inc({ identity, direction: 'up' }, e.bytesUp);
    if (e.bytesDown > 0) forwardBytes.inc({ identity, direction: 'down' }, e.bytesDown);
  };
  const unlisten = listen({ handshake: onHandshake, credential: onCredential, request: onRequest, reject: onReject, ban: onBan, store: onStore, connection: onConnection, reload: onReload, forward: onForward });

  return {
    registry,
    scrape: () => registry.metrics(),
    setBansActive: (fn) => void (bansActive = fn),
    setExpirySource: (fn) => void (expiry = fn),
    setClientCertSource: (fn) => void (clientCerts = fn),
    setPoolSource: (fn) => void (pools = fn),
    close: unlisten,
  };
}
