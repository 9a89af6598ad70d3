/**
 * `broker connect`: a plain-HTTP listener on loopback that forwards each request to the broker
 * over mutual TLS, through a keep-alive pool (and, with --via, CONNECT tunnels through a proxy).
 * The certificate files are watched: on a change they are read and checked again and a new pool
 * takes over; the old one finishes its requests and closes. A failed reload keeps the old
 * certificate (and says so); the next change tries again. With `renewAt`, the certificate is
 * renewed over mTLS inside its window (connect/auto-renew.ts) and swapped the same way.
 * With `forward`, the listener is a local HTTP proxy to the broker's forward listener instead
 * (connect/proxy.ts); tunnels opened after a reload use the new certificate.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import type { Dispatcher } from 'undici';
import type { Loggers } from '../observability/loggers.ts';
import { BrokerError, isBrokerError } from '../errors.ts';
import { watchFiles } from '../tls/watch.ts';
import { loadClientTls, type ClientTls, type ClientTlsFiles } from './client-tls.ts';
import { buildDispatcher } from './dispatcher.ts';
import { forwarder } from './forward.ts';
import { localProxy, type LocalProxy } from './proxy.ts';
import { autoRenew, type AutoRenew } from './auto-renew.ts';
import type { ListenAddress, Target, Via } from './options.ts';

export { parseListen, parseTarget, parseVia, isLoopback } from './options.ts';

export interface ConnectOptions {
  target: Target;
  listen: ListenAddress;
  via?: Via | undefined;
  /** An API key sent with every request, replacing any the local client sent. */
  apiKey?: { header: string; value: string } | undefined;
  files: ClientTlsFiles;
  /** Debounce of certificate file changes (ms). */
  debounceMs?: number;
  /** Renew the certificate over mTLS once this fraction of its lifetime has passed (undefined: never). */
  renewAt?: number | undefined;
  /** Where to renew when `target` is not the broker's main listener (with `forward`); default the target. */
  renewOrigin?: string | undefined;
  /**
   * A local HTTP proxy (CONNECT and absolute-form) to the broker's forward listener at `target`,
   * instead of a gateway for origin-form requests (connect/proxy.ts).
   */
  forward?: boolean | undefined;
}

export interface Connector {
  host: string;
  port: number;
  /** Logs where it listens (once the caller is ready for signals: whoever waits for the line may send one). */
  announce(): void;
  /** Reads the files again now (as a file change does). */
  reload(trigger: string): void;
  /** Stops accepting, lets running requests finish for up to `graceMs`, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

function identity(tls: ClientTls): Record<string, unknown> {
  return { principal: tls.principal, serial: tls.serial, notAfter: tls.notAfter.toISOString() };
}

export async function startConnect(o: ConnectOptions, loggers: Loggers): Promise<Connector> {
  const files: ClientTlsFiles = { cert: resolve(o.files.cert), key: resolve(o.files.key), ...(o.files.ca ? { ca: resolve(o.files.ca) } : {}) };
  let tls = loadClientTls(files);
  let current = buildDispatcher(tls, o.via);
  const warnExpiry = (t: ClientTls) => {
    if (t.notAfter.getTime() <= Date.now()) loggers.error.warn({ event: 'certificate', ...identity(t) }, 'the client certificate has expired: the broker will refuse it');
  };
  warnExpiry(tls);

  let closing: Promise<void> | undefined;
  const draining = () => closing !== undefined;
  const proxy: LocalProxy | undefined = o.forward ? localProxy({ target: o.target, via: o.via, dispatcher: () => current, tls: () => tls, access: loggers.access, draining }) : undefined;
  const server: Server = createServer(proxy ? proxy.request : forwarder({ target: o.target, via: o.via, apiKey: o.apiKey, dispatcher: () => current, access: loggers.access, draining }));
  // Without --forward, a CONNECT gets no listener: Node closes the connection.
  if (proxy) server.on('connect', proxy.connect);
  await new Promise<void>((done, fail) => {
    server.once('error', (cause: NodeJS.ErrnoException) =>
      fail(new BrokerError('BRK_ERR_LISTEN', `cannot listen on ${o.listen.host}:${o.listen.port}: ${cause.code ?? cause.message}`, { cause, hint: 'the address is taken or not allowed; pick another --listen' })),
    );
    server.listen(o.listen.port, o.listen.host, () => done());
  }).catch(async (err: unknown) => {
    await current.close();
    throw err;
  });
  const addr = server.address() as AddressInfo;
  server.on('error', (err: NodeJS.ErrnoException) => loggers.error.error({ event: 'listener', code: err.code, detail: err.message }, 'local listener error'));

  const reload = (trigger: string) => {
    let next: ClientTls;
    try {
      next = loadClientTls(files);
    } catch (err) {
      const e = isBrokerError(err) ? { code: err.code, detail: err.message } : { code: 'BRK_ERR_INTERNAL', detail: String(err) };
      loggers.audit.warn({ event: 'reload', outcome: 'error', trigger, ...e, kept: identity(tls) }, 'certificate reload failed: keeping the current certificate');
      return;
    }
    if (next.digest === tls.digest) return;
    const old = current;
    const previous = tls;
    tls = next;
    current = buildDispatcher(next, o.via);
    // Requests already sent finish on the old pool; new ones open connections with the new certificate.
    void old.close().catch(() => {});
    loggers.audit.info({ event: 'reload', outcome: 'ok', trigger, ...identity(next), previous: identity(previous) }, 'client certificate reloaded');
    warnExpiry(next);
  };
  const watcher = watchFiles(Object.values(files), o.debounceMs ?? 300, (what) => reload(`file change: ${what}`));
  // Renewal goes straight to the broker's origin (not through --via, which only carries the forwarded traffic).
  const renewer: AutoRenew | undefined =
    o.renewAt === undefined ? undefined : autoRenew({ origin: o.renewOrigin ?? o.target.origin, files, at: o.renewAt, current: () => tls, renewed: (serial) => reload(`renewed: ${serial}`), log: loggers.audit });

  return {
    host: addr.address,
    port: addr.port,
    reload,
    announce() {
      const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
      loggers.error.info(
        { event: 'listening', host: addr.address, port: addr.port, url, mode: o.forward ? 'forward' : 'gateway', broker: o.target.origin + o.target.basePath, via: o.via?.uri ?? null, ...identity(tls), pid: process.pid },
        o.forward
          ? `HTTP proxy on ${url} (HTTPS_PROXY=${url}) through the broker's forward listener at ${o.target.origin} as ${tls.principal}`
          : `forwarding ${url} to ${o.target.origin}${o.target.basePath}${o.via ? ` via ${o.via.uri}` : ''} as ${tls.principal}`,
      );
      if (!o.listen.loopback) {
        loggers.error.warn({ event: 'listening', host: addr.address, port: addr.port }, 'listening beyond loopback (--allow-remote): anyone who reaches this port acts as this identity at the broker');
      }
    },
    close(graceMs = 10_000) {
      closing ??= (async () => {
        watcher.close();
        renewer?.close();
        const stopped = new Promise<void>((done) => server.close(() => done()));
        server.closeIdleConnections();
        // tunnels are cut with the rest once the grace period is over
        const timer = setTimeout(() => (server.closeAllConnections(), proxy?.closeTunnels()), graceMs);
        await stopped;
        clearTimeout(timer);
        const pool: Dispatcher = current;
        await Promise.race([pool.close(), new Promise((done) => setTimeout(done, graceMs).unref())]);
        await pool.destroy().catch(() => {});
      })();
      return closing;
    },
  };
}
