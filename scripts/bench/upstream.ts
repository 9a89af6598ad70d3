/**
 * The benchmark's upstream: a plain HTTP/1.1 server on 127.0.0.1 answering fixed bodies.
 * GET /64 → 64 bytes, GET /16k → 16 KiB, anything else → 64 bytes. Prints {"port":N} once listening.
 * Run as a child of run.ts; exits on SIGTERM or when its parent goes away.
 */
import { createServer } from 'node:http';

const small = Buffer.alloc(64, 'a');
const large = Buffer.alloc(16 * 1024, 'b');
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const body = req.url === '/16k' ? large : small;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
});
// longer than both proxies' idle upstream connections: the upstream never closes a pooled connection first
server.keepAliveTimeout = 300_000;
server.headersTimeout = 310_000;
server.maxRequestsPerSocket = 0;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop); // parent gone
process.stdin.resume();
