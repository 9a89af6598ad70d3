/** Why a request was not forwarded, or why forwarding failed: a code for the client, details for the log. */
import type { HttpErrorCode } from '../errors.ts';

export interface Refusal {
  code: HttpErrorCode;
  detail?: string;
}

/** Failures of the upstream or of the broker itself, as opposed to refusals of the request. */
const FAILURES: ReadonlySet<HttpErrorCode> = new Set(['BRK_ERR_UPSTREAM_UNAVAILABLE', 'BRK_ERR_UPSTREAM_TIMEOUT', 'BRK_ERR_HTTP_INTERNAL', 'BRK_ERR_HTTP_RESPONSE_WRITE_TIMEOUT']);

/** The access log's `decision`: allow (forwarded), deny (refused by a check), error (allowed, but failed). */
export function decisionOf(note: Refusal | undefined): 'allow' | 'deny' | 'error' {
  return note === undefined ? 'allow' : FAILURES.has(note.code) ? 'error' : 'deny';
}
