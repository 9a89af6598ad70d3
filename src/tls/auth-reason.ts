/**
 * Why a handshake was refused, in the words the auth log and `broker doctor` use. Node reports the
 * verification failure on the socket (`authorizationError`), not on the error the client sees.
 */
const VERIFY_REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not yet valid',
  CERT_REVOKED: 'revoked',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown CA',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown CA',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown CA',
  CERT_SIGNATURE_FAILURE: 'unknown CA',
  INVALID_PURPOSE: 'wrong key usage',
  // The broker refuses to start without a CRL for each of its CA levels, so a missing CRL means the
  // chain leads to some other CA: OpenSSL keeps checking after the first failure and reports the last.
  UNABLE_TO_GET_CRL: 'unknown CA',
  CRL_HAS_EXPIRED: 'CRL expired',
  CRL_NOT_YET_VALID: 'CRL not yet valid',
  CERT_CHAIN_TOO_LONG: 'chain too long',
  INVALID_CA: 'invalid CA',
  PATH_LENGTH_EXCEEDED: 'chain too long',
};

export interface RefusalReason {
  /** Short stable words: "no certificate", "expired", "revoked", "unknown CA", "protocol", "cipher", "handshake timeout", … */
  reason: string;
  /** The underlying code (OpenSSL verify code or Node error code). */
  detail: string;
}

export function refusalReason(authorizationError: string | Error | undefined | null, err: (Error & { code?: string }) | undefined): RefusalReason {
  const verify = typeof authorizationError === 'string' ? authorizationError : (authorizationError as { code?: string } | null | undefined)?.code;
  if (verify) return { reason: VERIFY_REASONS[verify] ?? 'verification failed', detail: verify };
  const code = err?.code ?? '';
  const msg = err?.message ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { reason: 'handshake timeout', detail: code };
  if (/peer did not return a certificate|PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(`${code} ${msg}`)) return { reason: 'no certificate', detail: code || msg };
  if (/UNSUPPORTED_PROTOCOL|VERSION_TOO_LOW|WRONG_VERSION_NUMBER|unsupported protocol/i.test(`${code} ${msg}`)) return { reason: 'protocol', detail: code || msg };
  if (/NO_SHARED_CIPHER|NO_CIPHERS|no shared cipher/i.test(`${code} ${msg}`)) return { reason: 'cipher', detail: code || msg };
  if (/NO_SHARED_GROUP|no suitable key share|NO_SUITABLE_KEY_SHARE/i.test(`${code} ${msg}`)) return { reason: 'key exchange group', detail: code || msg };
  if (/HTTP_REQUEST|http request/i.test(`${code} ${msg}`)) return { reason: 'plain HTTP on the TLS port', detail: code || msg };
  if (code === 'ECONNRESET' || code === 'EPIPE') return { reason: 'connection closed during handshake', detail: code };
  return { reason: 'handshake failed', detail: code || msg };
}
