export { upstreamHeaders, upstreamHeaderList, downstreamHeaders, xfccValue, isDroppedHeader, BROKER_HEADERS } from './headers.ts';
export type { IdentityHeaders, ForwardInfo } from './headers.ts';
