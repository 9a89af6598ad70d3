/**
 * Request-level checks that run before routing, as pure functions of the request head: header
 * count, a single Host, no transfer coding but chunked, and the declared body size. Node's parser
 * already refuses CL+TE, duplicate Content-Length, obs-fold and bare LF; these cover what it lets by.
 */
import type { HttpErrorCode } from '../errors.ts';

export interface HeadLimits {
  headerCount: number;
  bodySize: number;
}

export type HeadVerdict = { ok: true } | { ok: false; code: HttpErrorCode; detail: string };

const OK: HeadVerdict = Object.freeze({ ok: true });

export function checkHead(rawHeaders: readonly string[], limits: HeadLimits): HeadVerdict {
  if (rawHeaders.length / 2 > limits.headerCount) {
    return { ok: false, code: 'BRK_ERR_HTTP_HEADERS_TOO_LARGE', detail: `more than ${limits.headerCount} headers` };
  }
  let hosts = 0;
  let te: string | undefined;
  let cl: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
    else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') te = te === undefined ? (rawHeaders[i + 1] as string) : `${te},${rawHeaders[i + 1]}`;
    else if (name.length === 14 && name.toLowerCase() === 'content-length') cl = rawHeaders[i + 1] as string;
  }
  if (hosts !== 1) return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: `${hosts} Host headers` };
  if (te !== undefined) {
    if (te.trim().toLowerCase() !== 'chunked') return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: `Transfer-Encoding "${te}"` };
    if (cl !== undefined) return { ok: false, code: 'BRK_ERR_HTTP_BAD_REQUEST', detail: 'both Content-Length and Transfer-Encoding' };
  }
  if (cl !== undefined && Number(cl) > limits.bodySize) {
    return { ok: false, code: 'BRK_ERR_HTTP_BODY_TOO_LARGE', detail: `Content-Length ${cl} over ${limits.bodySize}` };
  }
  return OK;
}
