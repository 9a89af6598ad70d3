/**
 * Identity assertions: a short-lived JWT signed by the broker for routes whose identity includes
 * jwt. (Interface only; the signer is built on branch `assert`.)
 */
import type { IdentityHeaders } from './headers.ts';

export interface AssertionSigner {
  /** Compact JWS for this identity with aud = audience. */
  token(id: IdentityHeaders, audience: string): string;
  readonly kid: string;
}
