/**
 * Node's TLS layer alone, with the broker's own listener options (src/tls/options.ts: the same
 * suites, groups, no tickets, client certificate required, CA chain and CRL bundle), answering
 * 64 bytes directly. Used to measure what a large CRL costs OpenSSL in the handshake when the
 * broker itself cannot load that CRL. Prints {"port":N}; exits on SIGTERM or when stdin closes.
 *
 *   node scripts/bench/tls-server.ts CERT KEY CLIENT_CA CRL_BUNDLE
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { serverTlsOptions } from '../../src/tls/options.ts';
import type { TlsMaterial } from '../../src/tls/material.ts';

const [cert, key, ca, crl] = process.argv.slice(2).map((f) => readFileSync(f as string, 'utf8')) as [string, string, string, string];
const material = { cert, key, ca, crl } as TlsMaterial;
const tls = { server: 'localhost', handshakeTimeout: '10s', sessionTickets: false, minVersion: 'TLSv1.2', groups: ['X25519MLKEM768', 'X25519', 'P-256', 'P-384'] };
const body = Buffer.alloc(64, 'a');
const server = createServer(serverTlsOptions(material, tls as never), (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
