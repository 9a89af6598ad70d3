/**
 * A minimal outbound HTTP proxy for tests: it answers CONNECT only, records every CONNECT line
 * and Proxy-Authorization it sees, optionally demands credentials (407) or refuses outright
 * (403), and otherwise pipes bytes both ways. On 127.0.0.1:0; closed in t.after.
 */
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface SeenConnect {
  target: string;
  proxyAuthorization: string | undefined;
}

export interface TestProxy {
  port: number;
  url: string;
  seen: SeenConnect[];
}

export async function startConnectProxy(t: TestContext, o: { auth?: string; refuse?: 403 } = {}): Promise<TestProxy> {
  const seen: SeenConnect[] = [];
  const sockets = new Set<Socket>();
  const expected = o.auth === undefined ? undefined : `Basic ${Buffer.from(o.auth).toString('base64')}`;
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const [requestLine = '', ...headerLines] = head.subarray(0, end).toString('latin1').split('\r\n');
      const rest = head.subarray(end + 4);
      const headers = new Map(headerLines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const [method, target = ''] = requestLine.split(' ');
      seen.push({ target, proxyAuthorization: headers.get('proxy-authorization') });
      if (method !== 'CONNECT') return void client.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n');
      if (o.refuse) return void client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      if (expected !== undefined && headers.get('proxy-authorization') !== expected) {
        return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm="test"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      }
      const colon = target.lastIndexOf(':');
      const upstream = connect({ host: target.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(target.slice(colon + 1)) }, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (rest.length) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on('close', () => (sockets.delete(upstream), client.destroy()));
      client.on('close', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return { port, url: `http://127.0.0.1:${port}`, seen };
}
