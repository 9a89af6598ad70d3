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

/** What a client whose certificate was refused is told (tls.refusal: http): the reason in words, and what to do. */
const CLIENT_WORDS: Record<string, { reason: string; hint: string }> = {
  revoked: { reason: 'certificate revoked', hint: 'this certificate was revoked; ask the broker operator for a new one' },
  'unknown CA': { reason: 'unknown CA', hint: 'the certificate was not issued by a CA this broker trusts; use the certificate the broker operator issued to you (check the file and that the whole chain is sent)' },
  expired: { reason: 'certificate expired', hint: 'the certificate is past its notAfter date; ask the broker operator for a new one' },
  'not yet valid': { reason: 'certificate not yet valid', hint: 'the certificate\'s notBefore date is in the future; check this machine\'s and the issuer\'s clocks, or wait' },
  'wrong key usage': { reason: 'wrong key usage', hint: 'the certificate is not a client-authentication certificate (extended key usage clientAuth); ask for a client certificate' },
  'CRL expired': { reason: 'the broker\'s CRL has expired (not your fault)', hint: 'the broker cannot check revocations until its operator publishes a fresh CRL ("broker pki crl"); tell the broker operator' },
  'CRL not yet valid': { reason: 'the broker\'s CRL is not yet valid (not your fault)', hint: 'the broker\'s CRL was issued with a future date (clock skew); tell the broker operator' },
};

export function clientRefusalWords(reason: string): { reason: string; hint: string } {
  return CLIENT_WORDS[reason] ?? { reason: 'certificate verification failed', hint: 'the certificate did not verify; ask the broker operator, quoting the time of this answer' };
}
