/**
 * One request's notes, shared by every stage of the pipeline: who asked, where it goes, what was
 * decided, and the timings the access log reports. One object of a fixed shape per request (the
 * stages pass it along instead of allocating closures), created by src/pipeline.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Caller, Principal } from '../identity/index.ts';
import type { Refusal } from './refusal.ts';
import { beginTrace, newSpanId, newTraceId, type RequestTracer, type TraceNote } from './trace.ts';

/** What the limits stage reports on the answer (RateLimit-* headers, access log). */
export interface LimitNote {
  limit: number;
  remaining: number;
  resetMs: number;
}

/** The route facts the access log and metrics need (the pipeline's compiled route has more). */
export interface RouteNote {
  readonly name: string;
  readonly origin: string;
  /** What the upstream's path is made of (tracing's url.full): the route prefix, the upstream URL's own path, whether the prefix is stripped. */
  readonly prefix?: string;
  readonly base?: string;
  readonly stripPrefix?: boolean;
}

const kContext = Symbol('broker.request');

export class RequestContext implements TraceNote {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The request id: `<trace-id>-<span-id>` of the broker's span (src/request/trace.ts). */
  readonly id: string;
  traceId = '';
  spanId = '';
  parentId = '';
  sampled = false;
  traceState: string | undefined = undefined;
  upstreamSpanId = '';
  span: unknown = undefined;
  /** Where the upstream exchange went (`address:port` of the pool connection), when the access log asks. */
  upstreamAddr: string | undefined = undefined;
  /** performance.now() when the request head arrived. */
  readonly start: number;
  /** The canonical path the ACL judged and the upstream receives (query kept apart). */
  path = '';
  query = '';
  /** The connection's verified certificate identity, if any. */
  principal: Principal | undefined = undefined;
  /** Who the request was authenticated as, once the route's credentials were checked. */
  caller: Caller | undefined = undefined;
  route: RouteNote | undefined = undefined;
  /** The caller's role that the ACL granted access with (metrics). */
  grant = '';
  limit: LimitNote | undefined = undefined;
  /** Frees the caller's in-flight slot (set by the limits stage). */
  release: (() => void) | undefined = undefined;
  /** Set by a refusal or a failure; absent when the request was forwarded and answered. */
  denial: Refusal | undefined = undefined;
  /** Headers the broker adds to whatever answer goes out (challenges, RateLimit-*, Connection). */
  headers: Record<string, string | number> | undefined = undefined;
  /** Request body bytes seen (the body counter sets it). */
  bytesIn = 0;
  /** The answer's Content-Length, when it has one. */
  bytesOut: number | null = null;
  /**
   * The upstream exchange under way: told when the client's connection closes, and stopped when
   * the request misses a deadline (its pool connection freed, its failure answering nothing).
   */
  exchange: { clientClosed(): void; abort(): void } | undefined = undefined;
  proxyStart = 0;
  upstreamAt = 0;
  /** An upgrade (WebSocket) request: answered on the raw socket, logged when it closes. */
  upgrade = false;
  /** An upgrade's headers for the upstream, decided before the WebSocket relay asks for them. */
  upstreamHeaders: string[] | Record<string, string> | undefined = undefined;
  /** The bytes that came after an upgrade request's head. */
  upgradeHead: Buffer | undefined = undefined;

  /** `tracer` null: no trace context at all (benchmark ablation traceContext): the id is a random 32-hex. */
  constructor(req: IncomingMessage, res: ServerResponse, start: number, tracer?: RequestTracer | null) {
    this.req = req;
    this.res = res;
    this.start = start;
    if (tracer === null) {
      this.id = newTraceId();
      return;
    }
    const h = req.headers;
    beginTrace(this, h.traceparent as string | undefined, h.tracestate as string | undefined);
    if (tracer === undefined) this.spanId = newSpanId();
    else tracer.start(this, start);
    this.upstreamSpanId = this.spanId;
    this.id = `${this.traceId}-${this.spanId}`;
  }

  /** The request a response belongs to (set when the pipeline starts it), for handlers that get only the socket. */
  static of(res: ServerResponse | null | undefined): RequestContext | undefined {
    return res == null ? undefined : (res as unknown as Record<symbol, RequestContext | undefined>)[kContext];
  }

  /** Ties this request to its response (RequestContext.of finds it again). */
  attach(): void {
    (this.res as unknown as Record<symbol, RequestContext>)[kContext] = this;
  }

  setHeader(name: string, value: string | number): void {
    (this.headers ??= {})[name] = value;
  }
}
