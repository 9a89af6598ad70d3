/** A local alert webhook: records every JSON body POSTed to it and answers 204. */
import type { TestContext } from 'node:test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export type AlertBody = Record<string, unknown> & { alert: string; severity: string; key: string; message: string; details: Record<string, unknown> };

export async function startWebhook(t: TestContext): Promise<{ url: string; bodies: AlertBody[] }> {
  const bodies: AlertBody[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.headers['content-type'] === 'application/json') bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertBody);
      res.statusCode = 204;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies };
}
