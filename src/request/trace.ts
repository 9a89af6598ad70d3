/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for one request, and the request id
 * made from it. A partner's well-formed `traceparent` is continued (same trace id, its span as our
 * parent, its sampled flag); anything else is replaced by a trace the broker starts. The request
 * id is `<trace-id>-<span-id>` of the broker's own span: unique per request even when a partner
 * sends one traceparent for many requests, and readable back into the traceparent it came from.
 *
 * Ids come from a pool of random bytes refilled 4 KiB at a time (what `randomUUID` does too), so a
 * request costs two `toString('hex')` calls, not a call into the CSPRNG.
 */
import { randomFillSync } from 'node:crypto';

/** What the tracer (src/observability/tracing.ts) does per request; absent when tracing is off. */
export interface RequestTracer {
  /**
   * The request began: `traceId`, `parentId` and `sampled` are set from the partner's traceparent
   * (or a fresh trace). Sets `spanId` (the server span), may change `sampled`, and may keep a
   * handle in `span`.
   */
  start(t: TraceNote, at: number): void;
  /** The request goes upstream: sets `upstreamSpanId` (the client span the upstream's traceparent names). */
  upstream(t: TraceNote, at: number): void;
  /** The request is done (answered, refused or abandoned); `t` carries what the span reports. */
  end(t: TraceNote, status: number, at: number): void;
}

/** The trace facts of one request (a RequestContext is one). */
export interface TraceNote {
  traceId: string;
  /** The broker's span for this request (the server span). */
  spanId: string;
  /** The partner's span, when it sent a well-formed traceparent; '' otherwise. */
  parentId: string;
  sampled: boolean;
  /** The partner's tracestate, kept only with a well-formed traceparent. */
  traceState: string | undefined;
  /** The span the upstream's traceparent names as its parent (the client span, or the server span). */
  upstreamSpanId: string;
  /** The tracer's handle on this request's spans. */
  span: unknown;
}

const POOL = Buffer.allocUnsafe(4096);
let at = POOL.length;

function randomHex(bytes: number): string {
  if (at + bytes > POOL.length) {
    randomFillSync(POOL);
    at = 0;
  }
  const s = POOL.toString('hex', at, at + bytes);
  at += bytes;
  return s;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A random 16-byte trace id (never all zeros, which the spec forbids). */
export function newTraceId(): string {
  let id = randomHex(16);
  while (id === ZERO_TRACE) id = randomHex(16);
  return id;
}

/** A random 8-byte span id (never all zeros). */
export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

/** Lower-case hex only: the spec's HEXDIGLC. */
function isHexLc(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

export interface Traceparent {
  traceId: string;
  parentId: string;
  sampled: boolean;
}

/**
 * A traceparent header value, or undefined when it is not well-formed: version 00 exactly
 * `00-<32 hex>-<16 hex>-<2 hex>`; a later version at least that, followed by `-` if longer (its
 * extra fields ignored, as the spec says); version ff, upper case, all-zero ids and a repeated
 * header (Node joins those with ", ") are not well-formed.
 */
export function parseTraceparent(v: string | undefined): Traceparent | undefined {
  if (v === undefined || v.length < 55) return undefined;
  if (v.charCodeAt(2) !== 0x2d || v.charCodeAt(35) !== 0x2d || v.charCodeAt(52) !== 0x2d) return undefined;
  if (!isHexLc(v, 0, 2) || !isHexLc(v, 3, 35) || !isHexLc(v, 36, 52) || !isHexLc(v, 53, 55)) return undefined;
  const version = v.slice(0, 2);
  if (version === 'ff') return undefined;
  if (version === '00' ? v.length !== 55 : v.length > 55 && v.charCodeAt(55) !== 0x2d) return undefined;
  const traceId = v.slice(3, 35);
  const parentId = v.slice(36, 52);
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  return { traceId, parentId, sampled: (parseInt(v.slice(53, 55), 16) & 1) === 1 };
}

/**
 * A tracestate worth passing on: at most 512 characters (the spec's limit for propagation),
 * printable ASCII, no more than 32 list members. Its members are the partner's business; the
 * broker adds none.
 */
export function acceptableTracestate(v: string | undefined): string | undefined {
  if (v === undefined || v.length === 0 || v.length > 512) return undefined;
  let members = 1;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return undefined;
    if (c === 0x2c && ++members > 32) return undefined;
  }
  return v;
}

/** Sets the trace facts of a request from its headers: continued when the partner's traceparent is well-formed, started otherwise. */
export function beginTrace(t: TraceNote, traceparent: string | undefined, tracestate: string | undefined): void {
  const p = parseTraceparent(traceparent);
  if (p === undefined) {
    t.traceId = newTraceId();
    t.parentId = '';
    t.sampled = false;
    t.traceState = undefined;
  } else {
    t.traceId = p.traceId;
    t.parentId = p.parentId;
    t.sampled = p.sampled;
    t.traceState = acceptableTracestate(tracestate);
  }
}

/** The traceparent the upstream receives: this trace, the span it is the child of, the sampled flag. */
export function upstreamTraceparent(t: TraceNote): string {
  return `00-${t.traceId}-${t.upstreamSpanId}-${t.sampled ? '01' : '00'}`;
}
