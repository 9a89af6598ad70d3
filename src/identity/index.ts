export { principalFromPeer, compileIdentityRules, parseSans, CLIENT_AUTH_OID, type Principal, type PeerCertLike, type IdentityResult } from './principal.ts';
export { certCaller, combine, type Caller, type Vouch } from './caller.ts';
