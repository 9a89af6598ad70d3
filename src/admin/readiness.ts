/**
 * /readyz: certificates and CRL current, every route's upstream accepts TCP, the shared store answers.
 */
import { connect } from 'node:net';
import type { ReadinessCheck } from './plugin.ts';

/** Whether `host:port` accepts a TCP connection within `ms`. */
export function tcpReachable(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(ms, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export interface ReadinessDeps {
  serverNotAfter: () => Date;
  crlNextUpdate: () => Date | undefined;
  upstreams: () => Array<{ route: string; url: string }>;
  upstreamTimeoutMs: number;
  store: { kind: string; ping?(): Promise<boolean> };
}

/** /readyz: certificates and CRL current, every route's upstream accepts TCP, the shared store answers. */
export function readiness(d: ReadinessDeps): () => Promise<ReadinessCheck[]> {
  return async () => {
    const now = Date.now();
    const checks: ReadinessCheck[] = [{ name: 'config', ok: true }];
    const notAfter = d.serverNotAfter();
    checks.push({ name: 'server certificate', ok: notAfter.getTime() > now, detail: `expires ${notAfter.toISOString()}` });
    const next = d.crlNextUpdate();
    checks.push({ name: 'crl', ok: next === undefined || next.getTime() > now, detail: next ? `next update due ${next.toISOString()}` : 'no nextUpdate' });
    const seen = new Map<string, Promise<boolean>>();
    const results = await Promise.all(
      d.upstreams().map(async (u) => {
        const url = new URL(u.url);
        const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
        const key = `${url.hostname}:${port}`;
        if (!seen.has(key)) seen.set(key, tcpReachable(url.hostname, port, d.upstreamTimeoutMs));
        const ok = await (seen.get(key) as Promise<boolean>);
        return { name: `upstream ${u.route}`, ok, detail: ok ? key : `${key} does not accept connections` } satisfies ReadinessCheck;
      }),
    );
    checks.push(...results);
    if (d.store.kind === 'redis') {
      const ok = (await d.store.ping?.()) ?? false;
      checks.push({ name: 'redis', ok, ...(ok ? {} : { detail: 'the shared store does not answer' }) });
    }
    return checks;
  };
}
