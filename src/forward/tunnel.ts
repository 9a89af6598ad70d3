/**
 * A CONNECT tunnel: a TCP connection to the address the SSRF guard checked (never a second lookup),
 * `200 Connection Established` once it is up, then bytes both ways with backpressure (pipe). Either
 * side's error closes both; either side's end is passed on, then both close. Idle and maximum
 * durations cut it.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Exchange } from './exchange.ts';

export interface TunnelTiming {
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxDurationMs: number;
}

type ClientSocket = Duplex & { destroySoon?(): void; setTimeout(ms: number): unknown };

export interface TunnelHooks {
  /** The destination could not be reached: the client is answered 502 (it has seen nothing yet). */
  failed(reason: string): void;
  /** The tunnel is over (both sides closed): log it. */
  done(): void;
}

export function openTunnel(x: Exchange, client: ClientSocket, head: Buffer, address: string, family: 4 | 6, port: number, t: TunnelTiming, h: TunnelHooks): void {
  const upstream: Socket = connect({ host: address, port, family });
  let established = false;
  let closed = 0;
  let maxTimer: NodeJS.Timeout | undefined;
  const connectTimer = setTimeout(() => upstream.destroy(new Error(`no connection within ${t.connectTimeoutMs} ms`)), t.connectTimeoutMs);
  const count = () => {
    x.bytesUp = upstream.bytesWritten;
    x.bytesDown = upstream.bytesRead;
  };
  const closeBoth = (why: string) => {
    x.end ??= why;
    client.destroy();
    upstream.destroy();
  };
  const onClientGone = () => {
    if (established) return;
    clearTimeout(connectTimer);
    upstream.destroy();
    x.outcome = 'failed';
    x.end = 'client closed before the destination answered';
    h.done();
  };
  client.once('close', onClientGone);
  upstream.once('connect', () => {
    clearTimeout(connectTimer);
    if (client.destroyed) return void upstream.destroy();
    established = true;
    x.status = 200;
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    const meter = x.meter;
    if (meter !== undefined && meter.plan.quotas.length > 0) {
      client.on('data', (c: Buffer) => meter.add(c.length, 0));
      upstream.on('data', (c: Buffer) => meter.add(0, c.length));
      meter.add(head.length, 0);
      meter.onCut((why) => closeBoth(why));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.setTimeout(t.idleTimeoutMs);
    upstream.setTimeout(t.idleTimeoutMs);
    client.on('timeout', () => closeBoth('idle'));
    upstream.on('timeout', () => closeBoth('idle'));
    maxTimer = setTimeout(() => closeBoth('max duration'), t.maxDurationMs);
    const side = (other: ClientSocket | Socket) => () => {
      // a clean close passes the end on (what was written still flushes), an error cuts both
      if (other.destroyed) return;
      if (other.destroySoon) other.destroySoon();
      else other.destroy();
    };
    client.on('close', side(upstream));
    upstream.on('close', side(client));
    const finished = () => {
      if (++closed < 2) return;
      clearTimeout(maxTimer);
      count();
      x.end ??= 'closed';
      h.done();
    };
    client.on('close', finished);
    upstream.on('close', finished);
    client.on('error', () => closeBoth('error'));
  });
  upstream.on('error', (err: Error & { code?: string }) => {
    clearTimeout(connectTimer);
    if (!established) {
      client.off('close', onClientGone);
      h.failed(`connecting to ${address}:${port}: ${err.code ?? err.message}`);
      return;
    }
    closeBoth('error');
  });
}
