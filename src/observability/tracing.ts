/**
 * OpenTelemetry export of a span per request (tracing.otlp): a SERVER span for the partner's
 * request and, when the request goes upstream, a CLIENT span for the exchange with the upstream,
 * sent in batches over OTLP/HTTP (JSON) to the configured collector with the official SDK.
 *
 * Loaded only when tracing.otlp is configured (src/pipeline.ts imports this module dynamically):
 * with tracing off, neither this file nor the OpenTelemetry SDK or exporter is loaded (only the
 * no-op @opentelemetry/api, which prom-client requires for its exemplars; test/e2e/tracing-lazy).
 *
 * Ids: the broker's trace context (src/request/trace.ts) stays the source of truth. The SDK takes
 * the trace id from the parent span context when there is one (a partner's traceparent); for a
 * trace the broker starts, it asks its IdGenerator, and ours answers with the id the request
 * already has (`next`, set just before the synchronous startSpan). Span ids come from the
 * broker's pooled random bytes. So the request id `<trace-id>-<server span id>` names the exported
 * server span, and the upstream's traceparent names the exported client span.
 *
 * Sampling: ParentBased(root: TraceIdRatioBased(tracing.sampleRatio)): a partner's sampled flag
 * decides for the traces it continues; the broker's ratio for the traces it starts. The decision
 * is written back to the request (`sampled`), so the upstream's traceparent flags match it. An
 * unsampled request records nothing, sets no attribute and exports nothing (a partner's unsampled
 * trace does not even reach the SDK; a root the ratio leaves out costs the sampler's decision).
 *
 * Never in the request's way: spans are queued (at most MAX_QUEUE; past that they are dropped),
 * exported in the background, and a failed export is dropped (reported to `onExportError`, at most
 * once a minute, when the caller gives one).
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createTraceState, trace, type Span } from '@opentelemetry/api';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type IdGenerator, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { settingsOf, type BrokerConfig } from '../config/index.ts';
import { BrokerError } from '../errors.ts';
import { decisionOf, newSpanId, newTraceId, type RequestContext, type RequestTracer, type RouteNote, type TraceNote } from '../request/index.ts';

/** Spans waiting for export; past this they are dropped (the SDK's default). */
export const MAX_QUEUE = 2048;
/** Spans per OTLP request (the SDK's default). */
const BATCH = 512;
/** A failed export is reported at most this often. */
const REPORT_EVERY_MS = 60_000;
/**
 * performance.now() values (the `at` of start/upstream/end) as epoch milliseconds. One offset for
 * every span, so that a client span sits exactly within its server span (the SDK's own conversion
 * of a performance timestamp re-reads Date.now() per span, whose millisecond steps would not).
 * It follows the monotonic clock from process start: an NTP step of the wall clock since then
 * shifts span times by as much (durations stay exact).
 */
const ORIGIN = performance.timeOrigin;
/** The OTLP ExportResultCode for success (@opentelemetry/core's ExportResultCode.SUCCESS). */
const EXPORT_SUCCESS = 0;

export interface OtlpTracerOptions {
  /** Told (at most once a minute) that a batch of spans could not be exported and was dropped. */
  onExportError?: (err: Error, dropped: number) => void;
  /** Delay between two exports (default 5 s, the SDK's); a full batch is sent at once. */
  scheduledDelayMs?: number;
}

export interface OtlpTracer extends RequestTracer {
  /** Exports what is queued now. */
  flush(): Promise<void>;
  /** Exports what is queued and stops (the generation is retired). */
  close(): Promise<void>;
}

/** The broker's ids for the SDK: the request's own trace id for a root span, pooled random span ids. */
class RequestIds implements IdGenerator {
  next = '';
  generateTraceId(): string {
    const id = this.next;
    this.next = '';
    return id === '' ? newTraceId() : id;
  }
  generateSpanId(): string {
    return newSpanId();
  }
}

/** One sampled request's spans (the request keeps it in `span`). */
class Spans {
  readonly server: Span;
  client: Span | undefined = undefined;
  constructor(server: Span) {
    this.server = server;
  }
}

/** The compiled route's fields that say what path the upstream receives (src/pipeline.ts Route fills them). */
type ProxiedRoute = RouteNote;

/** server.address / server.port of an upstream origin, parsed once per origin. */
interface Peer {
  address: string;
  port: number;
}

/** Hands failed exports to `report` (rate-limited), then to the batch processor, which drops them. */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #report: ((err: Error, dropped: number) => void) | undefined;
  #lastReport = -Infinity;
  #dropped = 0;
  constructor(inner: SpanExporter, report: ((err: Error, dropped: number) => void) | undefined) {
    this.#inner = inner;
    this.#report = report;
  }
  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== EXPORT_SUCCESS && this.#report !== undefined) {
        this.#dropped += spans.length;
        const now = performance.now();
        if (now - this.#lastReport >= REPORT_EVERY_MS) {
          this.#lastReport = now;
          const dropped = this.#dropped;
          this.#dropped = 0;
          try {
            this.#report(result.error ?? new Error('span export failed'), dropped);
          } catch {
            // a reporter's failure is not the exporter's
          }
        }
      }
      done(result);
    });
  }
  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

export async function otlpTracer(c: BrokerConfig, o: OtlpTracerOptions = {}): Promise<OtlpTracer> {
  const otlp = c.tracing.otlp;
  if (otlp === undefined) throw new BrokerError('BRK_ERR_CONFIG_INVALID', 'tracing.otlp: no collector endpoint to export spans to');
  const timeoutMs = settingsOf(c).tracingTimeoutMs;
  const ids = new RequestIds();
  let otlpExporter: OTLPTraceExporter;
  try {
    otlpExporter = new OTLPTraceExporter({ url: otlp.endpoint, headers: { ...otlp.headers }, timeoutMillis: timeoutMs });
  } catch (err) {
    throw new BrokerError('BRK_ERR_CONFIG_INVALID', `tracing.otlp.endpoint: not a usable URL (${otlp.endpoint})`, { cause: err });
  }
  const exporter = new ReportingExporter(otlpExporter, o.onExportError);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': c.tracing.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(c.tracing.sampleRatio) }),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: MAX_QUEUE, maxExportBatchSize: BATCH, scheduledDelayMillis: o.scheduledDelayMs ?? 5_000, exportTimeoutMillis: timeoutMs })],
  });
  const tracer = provider.getTracer('broker');
  const peers = new Map<string, Peer>();

  function peerOf(origin: string): Peer {
    let p = peers.get(origin);
    if (p === undefined) {
      const u = new URL(origin);
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      p = { address: host, port: u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port) };
      peers.set(origin, p);
    }
    return p;
  }

  /** What the upstream's request line carried: the route's base path, then the path (minus the prefix when stripped). */
  function upstreamUrl(r: ProxiedRoute, ctx: RequestContext): string {
    const rest = r.stripPrefix === true && r.prefix !== undefined ? ctx.path.slice(r.prefix.length) : ctx.path;
    const path = (r.base ?? '') + rest;
    return r.origin + (path === '' ? '/' : path) + ctx.query;
  }

  return {
    start(t: TraceNote, at: number): void {
      // A partner that did not sample its trace: ParentBased samples none of it (its default for a
      // remote unsampled parent), so the SDK is not asked at all.
      if (t.parentId !== '' && !t.sampled) {
        t.spanId = newSpanId();
        return;
      }
      const req = (t as RequestContext).req;
      let parent = ROOT_CONTEXT;
      if (t.parentId === '') ids.next = t.traceId;
      else {
        const traceState = t.traceState === undefined ? undefined : createTraceState(t.traceState);
        parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: t.traceId, spanId: t.parentId, traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState });
      }
      const span = tracer.startSpan(req.method ?? 'HTTP', { kind: SpanKind.SERVER, startTime: ORIGIN + at }, parent);
      ids.next = '';
      const sc = span.spanContext();
      t.spanId = sc.spanId;
      t.sampled = (sc.traceFlags & TraceFlags.SAMPLED) !== 0;
      if (t.sampled) t.span = new Spans(span);
    },

    upstream(t: TraceNote, at: number): void {
      const s = t.span as Spans | undefined;
      // Unsampled: the upstream's traceparent names the server span (upstreamSpanId as it is).
      if (s === undefined || s.client !== undefined) return;
      const req = (t as RequestContext).req;
      const client = tracer.startSpan(req.method ?? 'HTTP', { kind: SpanKind.CLIENT, startTime: ORIGIN + at }, trace.setSpan(ROOT_CONTEXT, s.server));
      s.client = client;
      t.upstreamSpanId = client.spanContext().spanId;
    },

    end(t: TraceNote, status: number, at: number): void {
      const s = t.span as Spans | undefined;
      if (s === undefined) return;
      t.span = undefined;
      const ctx = t as RequestContext;
      const req = ctx.req;
      const method = req.method ?? 'HTTP';
      const server = s.server;
      const r = ctx.route as ProxiedRoute | undefined;
      const who = ctx.caller ?? ctx.principal;
      const denial = ctx.denial;
      const decision = decisionOf(denial);
      if (r !== undefined) server.updateName(`${method} ${r.name}`);
      server.setAttribute('http.request.method', method);
      server.setAttribute('url.scheme', 'https');
      if (ctx.path !== '') server.setAttribute('url.path', ctx.path);
      if (r !== undefined) server.setAttribute('broker.route', r.name);
      server.setAttribute('http.response.status_code', status);
      const socket = req.socket;
      if (socket?.remoteAddress !== undefined) server.setAttribute('client.address', socket.remoteAddress);
      if (socket?.remotePort !== undefined) server.setAttribute('client.port', socket.remotePort);
      const ua = req.headers['user-agent'];
      if (ua !== undefined) server.setAttribute('user_agent.original', ua);
      if (who !== undefined) {
        server.setAttribute('broker.identity', who.name);
        server.setAttribute('broker.roles', who.roles as string[]);
      }
      if (ctx.principal !== undefined) server.setAttribute('broker.cert.serial', ctx.principal.serial);
      server.setAttribute('broker.request_id', ctx.id);
      server.setAttribute('broker.decision', decision);
      server.setAttribute('http.request.body.size', ctx.bytesIn);
      if (ctx.bytesOut !== null) server.setAttribute('http.response.body.size', ctx.bytesOut);
      if (denial !== undefined) {
        server.setAttribute('broker.refusal.code', denial.code);
        if (decision === 'error') server.setAttribute('error.type', denial.code);
      }
      if (status >= 500) server.setStatus({ code: SpanStatusCode.ERROR, message: denial?.code });
      if (r !== undefined && decision !== 'deny') server.setAttribute('broker.upstream', r.origin);

      // A client span whose exchange never happened (refused after the upstream's headers were
      // built: the identity's share of the upstream pool) is never ended, so never exported.
      const client = decision === 'deny' ? undefined : s.client;
      if (client !== undefined && r !== undefined) {
        const peer = peerOf(r.origin);
        client.setAttribute('http.request.method', method);
        client.setAttribute('server.address', peer.address);
        client.setAttribute('server.port', peer.port);
        client.setAttribute('url.full', upstreamUrl(r, ctx));
        const addr = ctx.upstreamAddr;
        if (addr !== undefined) {
          // `address:port` of the pool connection ([v6]:port for IPv6)
          const colon = addr.lastIndexOf(':');
          client.setAttribute('network.peer.address', addr.charCodeAt(0) === 0x5b ? addr.slice(1, colon - 1) : addr.slice(0, colon));
          client.setAttribute('network.peer.port', Number(addr.slice(colon + 1)));
        }
        if (ctx.upstreamAt !== 0) client.setAttribute('http.response.status_code', status);
        if (decision === 'error') {
          client.setAttribute('error.type', (denial as { code: string }).code);
          client.setStatus({ code: SpanStatusCode.ERROR, message: (denial as { code: string }).code });
        } else if (ctx.upstreamAt !== 0 && status >= 400) client.setStatus({ code: SpanStatusCode.ERROR });
        client.end(ORIGIN + at);
      } else if (client !== undefined) client.end(ORIGIN + at);
      server.end(ORIGIN + at);
    },

    flush() {
      return provider.forceFlush().catch(() => {});
    },

    close() {
      // A batch the collector refused was reported (and is dropped): retiring the generation goes on.
      return provider.shutdown().catch(() => {});
    },
  };
}
