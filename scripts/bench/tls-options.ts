/**
 * The broker's listener TLS options (src/tls/options.ts `serverTlsOptions`: the same suites, groups,
 * no tickets, client certificate required and verified against the CA chain and the CRL bundle),
 * for the benchmark's own servers: the bare Node server (tls-server.ts) and the stock Fastify proxy
 * (fastify-proxy.ts). One place, so both stay exactly the broker's settings.
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import { serverTlsOptions } from '../../src/tls/options.ts';
import type { TlsMaterial } from '../../src/tls/material.ts';

/** Files: server certificate, server key, client CA chain, CRL bundle (PEM). */
export function benchTlsOptions(files: { cert: string; key: string; ca: string; crl: string }): TlsOptions {
  const [cert, key, ca, crl] = [files.cert, files.key, files.ca, files.crl].map((f) => readFileSync(f, 'utf8')) as [string, string, string, string];
  const material = { cert, key, ca, crl } as TlsMaterial;
  // the broker's defaults (src/config): tls.server, a 10 s handshake deadline, no tickets, TLS 1.2+, its groups
  const tls = { server: 'localhost', handshakeTimeout: '10s', sessionTickets: false, minVersion: 'TLSv1.2', groups: ['X25519MLKEM768', 'X25519', 'P-256', 'P-384'] };
  return serverTlsOptions(material, tls as never, 10_000);
}
