/** What the request path notes on a request for the access log and metrics, beyond denials. */
import type { Caller } from '../identity/index.ts';

export const kGrant = Symbol('broker.grantingRole');
export const kProxyStart = Symbol('broker.proxyStart');
export const kProxyHeaders = Symbol('broker.upstreamHeadersAt');
export const kCaller = Symbol('broker.caller');

export interface Notes {
  [kGrant]?: string;
  [kProxyStart]?: number;
  [kProxyHeaders]?: number;
  /** Who the request was authenticated as (set once the route's credentials were checked). */
  [kCaller]?: Caller;
}

export function notesOf(request: unknown): Notes {
  return request as Notes;
}
