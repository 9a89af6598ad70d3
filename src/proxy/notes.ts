/** What the request path notes on a request for the access log and metrics, beyond denials. */
export const kGrant = Symbol('broker.grantingRole');
export const kProxyStart = Symbol('broker.proxyStart');
export const kProxyHeaders = Symbol('broker.upstreamHeadersAt');

export interface Notes {
  [kGrant]?: string;
  [kProxyStart]?: number;
  [kProxyHeaders]?: number;
}

export function notesOf(request: unknown): Notes {
  return request as Notes;
}
