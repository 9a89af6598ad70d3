export { principalFromPeer, compileIdentityRules, parseSans, CLIENT_AUTH_OID, type Principal, type PeerCertLike, type IdentityResult } from './principal.ts';
