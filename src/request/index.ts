export { RequestContext, type LimitNote, type RouteNote } from './context.ts';
export { decisionOf, type Refusal } from './refusal.ts';
export { replyError } from './reply.ts';
export { matchRoute, routeTable, type Routed } from './route-table.ts';
export { beginTrace, newSpanId, newTraceId, parseTraceparent, upstreamTraceparent, type RequestTracer, type TraceNote } from './trace.ts';
export { connectionId } from './connection.ts';
