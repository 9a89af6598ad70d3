/**
 * Node's TLS layer alone, with the broker's own listener options (src/tls/options.ts: the same
 * suites, groups, no tickets, client certificate required, CA chain and CRL bundle), answering by
 * itself like the bench upstream (scripts/bench/upstream.ts): GET /16k → 16 KiB, anything else →
 * 64 bytes. The "node-bare" row of the ladder (what Node 24's HTTPS server costs with no proxying),
 * and, in the crl scenario, what a large CRL costs OpenSSL in the handshake when the broker itself
 * cannot load that CRL. Prints {"port":N}; exits on SIGTERM or when stdin closes.
 *
 *   node scripts/bench/tls-server.ts CERT KEY CLIENT_CA CRL_BUNDLE
 */
import { createServer } from 'node:https';
import { benchTlsOptions } from './tls-options.ts';

const [cert, key, ca, crl] = process.argv.slice(2) as [string, string, string, string];
const small = Buffer.alloc(64, 'a');
const large = Buffer.alloc(16 * 1024, 'b');
const server = createServer(benchTlsOptions({ cert, key, ca, crl }), (req, res) => {
  req.resume();
  const body = req.url === '/16k' ? large : small;
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
