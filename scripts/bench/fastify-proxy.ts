/**
 * The "fastify-stock" row of the ladder: stock Fastify 5 + @fastify/http-proxy 11 on the same Node,
 * with the broker's listener TLS options (tls-options.ts: client certificate required), proxying
 * every path to the bench upstream and doing nothing else: default options, no logger, no hooks.
 * What a plain Fastify proxy costs, so the broker's own per-request work can be told apart.
 * Prints {"port":N}; exits on SIGTERM or when stdin closes.
 *
 *   node scripts/bench/fastify-proxy.ts CERT KEY CLIENT_CA CRL_BUNDLE UPSTREAM_URL
 */
import httpProxy from '@fastify/http-proxy';
import Fastify from 'fastify';
import { benchTlsOptions } from './tls-options.ts';

const [cert, key, ca, crl, upstream] = process.argv.slice(2) as [string, string, string, string, string];
if (!upstream) throw new Error('usage: fastify-proxy.ts CERT KEY CLIENT_CA CRL_BUNDLE UPSTREAM_URL');
const app = Fastify({ https: benchTlsOptions({ cert, key, ca, crl }) });
await app.register(httpProxy, { upstream });
await app.listen({ host: '127.0.0.1', port: 0 });
const a = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);

const stop = () => {
  app.server.closeAllConnections();
  void app.close().then(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
