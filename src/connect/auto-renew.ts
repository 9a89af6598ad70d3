/**
 * `broker connect` renewing its own certificate: once `at` of the current certificate's lifetime
 * has passed, a new key and certificate are requested over mTLS (connect/lifecycle-client.ts,
 * the same exchange as `broker renew`) and written in place of the files; the connector then
 * reloads them, and a new pool takes over while the old one finishes its requests, so no request
 * is dropped. A refusal or failure is logged and retried (every 5 % of the lifetime, between 1 s
 * and 10 min); the current certificate keeps serving meanwhile.
 */
import type { Logger } from 'pino';
import { isBrokerError } from '../errors.ts';
import type { ClientTls, ClientTlsFiles } from './client-tls.ts';
import { renew } from './lifecycle-client.ts';

export interface AutoRenewOptions {
  /** The broker's origin (https://HOST:PORT): /.well-known/broker/renew is there. */
  origin: string;
  files: ClientTlsFiles;
  /** Fraction of the lifetime after which to renew (the broker's enrollment.renewAfter must allow it). */
  at: number;
  current(): ClientTls;
  /** The files were replaced: read them again now. */
  renewed(serial: string): void;
  log: Logger;
}

export interface AutoRenew {
  close(): void;
}

const MIN_RETRY_MS = 1_000;
const MAX_RETRY_MS = 600_000;

export function autoRenew(o: AutoRenewOptions): AutoRenew {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const lifetime = (t: ClientTls) => Math.max(0, t.notAfter.getTime() - t.notBefore.getTime());
  const schedule = (ms: number) => {
    if (closed) return;
    clearTimeout(timer);
    // setTimeout's limit is about 24.8 days: longer waits are taken in steps
    timer = setTimeout(tick, Math.min(Math.max(0, ms), 0x7fffffff));
    timer.unref();
  };
  const due = () => {
    const t = o.current();
    return t.notBefore.getTime() + o.at * lifetime(t) - Date.now();
  };
  const retryMs = () => Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, 0.05 * lifetime(o.current())));

  async function tick(): Promise<void> {
    const wait = due();
    if (wait > 0) return schedule(wait);
    const before = o.current();
    try {
      const r = await renew({ url: o.origin, cert: o.files.cert, key: o.files.key, ...(o.files.ca ? { ca: o.files.ca } : {}) });
      if (closed) return;
      o.log.info({ event: 'renew', outcome: 'ok', principal: r.issued.name, serial: r.issued.serial, notAfter: r.issued.notAfter, previous: before.serial }, 'client certificate renewed over mTLS');
      o.renewed(r.issued.serial);
      schedule(due() > 0 ? due() : retryMs());
    } catch (err) {
      if (closed) return;
      const e = isBrokerError(err) ? { code: err.code, detail: err.message } : { code: 'BRK_ERR_INTERNAL', detail: String(err) };
      o.log.warn({ event: 'renew', outcome: 'error', ...e, serial: before.serial, notAfter: before.notAfter.toISOString(), retryInMs: retryMs() }, 'client certificate renewal failed: keeping the current certificate, retrying');
      schedule(retryMs());
    }
  }

  schedule(due());
  return {
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}
