/**
 * The listener's TLS settings. TLS 1.3, and TLS 1.2 with ECDHE + AEAD only; server preference; no
 * renegotiation, no compression, no session tickets (a revoked client could resume otherwise);
 * the post-quantum hybrid group first. Client certificates required and verified against the CA
 * chain and the CRLs of every level.
 */
import { constants } from 'node:crypto';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import type { BrokerConfig } from '../config/index.ts';
import type { TlsMaterial } from './material.ts';

/** TLS 1.2 suites: ECDHE key exchange, AEAD ciphers only. */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export const TLS13_SUITES = ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'].join(':');

export function secureContextOptions(m: TlsMaterial, t: BrokerConfig['tls']): SecureContextOptions {
  let secureOptions = constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION | constants.SSL_OP_CIPHER_SERVER_PREFERENCE;
  if (!t.sessionTickets) secureOptions |= constants.SSL_OP_NO_TICKET;
  return {
    cert: m.cert,
    key: m.key,
    ca: m.ca,
    // One PEM per array element: given one string, Node reads only its first CRL, and OpenSSL then
    // refuses every client for want of a CRL at the other level (UNABLE_TO_GET_CRL).
    crl: m.crl.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [],
    minVersion: t.minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: `${TLS13_SUITES}:${TLS12_CIPHERS}`,
    ecdhCurve: t.groups.join(':'),
    honorCipherOrder: true,
    secureOptions,
  };
}

/** HTTP/1.1 only, said out loud in ALPN: a client offering h2 agrees on http/1.1 instead of guessing. */
export const ALPN = ['http/1.1'];

/** `handshakeTimeoutMs`: from the compiled settings (settingsOf(config).handshakeTimeoutMs). */
export function serverTlsOptions(m: TlsMaterial, t: BrokerConfig['tls'], handshakeTimeoutMs: number): TlsOptions {
  return {
    ...secureContextOptions(m, t),
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ALPN,
    handshakeTimeout: handshakeTimeoutMs,
  };
}
