/** The one way the broker answers an HTTP client with an error: generic body, details to the log. */
import type { FastifyReply } from 'fastify';
import { ERRORS, httpErrorBody, type HttpErrorCode } from '../errors.ts';

export const kDenial = Symbol('broker.denial');

export interface DenialNote {
  code: HttpErrorCode;
  detail?: string;
}

/** Failures of the upstream or of the broker itself, as opposed to refusals of the request. */
const FAILURES: ReadonlySet<HttpErrorCode> = new Set(['BRK_ERR_UPSTREAM_UNAVAILABLE', 'BRK_ERR_UPSTREAM_TIMEOUT', 'BRK_ERR_HTTP_INTERNAL']);

/** The access log's `decision`: allow (forwarded), deny (refused by a check), error (allowed, but failed). */
export function decisionOf(note: DenialNote | undefined): 'allow' | 'deny' | 'error' {
  return note === undefined ? 'allow' : FAILURES.has(note.code) ? 'error' : 'deny';
}

export function replyError(reply: FastifyReply, code: HttpErrorCode, detail?: string): FastifyReply {
  (reply.request as unknown as Record<symbol, DenialNote>)[kDenial] = detail === undefined ? { code } : { code, detail };
  return reply.code(ERRORS[code].status).header('content-type', 'application/json; charset=utf-8').send(httpErrorBody(code, reply.request.id));
}

export function denialOf(request: unknown): DenialNote | undefined {
  return (request as Record<symbol, DenialNote | undefined>)[kDenial];
}
