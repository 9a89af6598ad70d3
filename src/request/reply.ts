/** The one way the broker answers an HTTP client with an error: generic body, details to the log. */
import { ERRORS, httpErrorBody, type HttpErrorCode } from '../errors.ts';
import type { RequestContext } from './context.ts';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Answers `code` with the generic JSON body and the headers stages noted on the request; the code
 * and the detail stay on the request for the access log. When the answer has already started (an
 * upstream failing mid-body) the connection is cut instead: the client must not take a truncated
 * body for a whole one.
 */
export function replyError(ctx: RequestContext, code: HttpErrorCode, detail?: string): void {
  ctx.denial = detail === undefined ? { code } : { code, detail };
  const res = ctx.res;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(httpErrorBody(code, ctx.id));
  const headers: Record<string, string | number> = ctx.headers ?? {};
  headers['content-type'] = JSON_TYPE;
  headers['x-request-id'] = ctx.id;
  headers['content-length'] = ctx.bytesOut = Buffer.byteLength(body);
  res.writeHead(ERRORS[code].status, headers);
  res.end(body);
}
