/**
 * `broker connect --forward`, CONNECT: the local tool's `CONNECT host:port` is asked again of the
 * broker's forward listener over mutual TLS, with the certificate of the moment (a reload or a
 * renewal reaches the next tunnel). On 200 the tool gets `200 Connection Established` and bytes
 * are piped both ways with backpressure; the end of one side is passed on, and when one side is
 * closed the other follows. A refusal is relayed as the broker wrote it (status and JSON body with
 * its code), so the tool shows why; a broker that cannot be reached answers 502
 * BRK_ERR_CONNECT_UPSTREAM. With --via, the TLS connection to the broker runs inside a CONNECT
 * tunnel through that proxy. One access line per tunnel.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from 'pino';
import type { ClientTls } from './client-tls.ts';
import { describe } from './forward.ts';
import type { Via } from './options.ts';
import type { BrokerAddress } from './proxy.ts';

/** How long the broker may take to answer a CONNECT (its own check includes a DNS lookup). */
const ANSWER_MS = 30_000;
/** A refusal body larger than this is not relayed whole (the broker's are a few hundred bytes). */
const MAX_REFUSAL_BYTES = 64 * 1024;

type Opened =
  | { ok: true; socket: Socket; head: Buffer }
  | { ok: false; status: number; statusText: string; contentType: string; body: Buffer };

/** Reads a refusal's body: what came with the head, then the socket, up to Content-Length or its end. */
function readBody(res: IncomingMessage, socket: Socket, head: Buffer): Promise<Buffer> {
  const length = Number(res.headers['content-length'] ?? Number.NaN);
  const want = Number.isInteger(length) ? Math.min(length, MAX_REFUSAL_BYTES) : MAX_REFUSAL_BYTES;
  return new Promise((resolve) => {
    const chunks = [head];
    let got = head.length;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).subarray(0, want));
    };
    const timer = setTimeout(done, 5_000);
    if (got >= want) return done();
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= want) done();
    });
    socket.once('end', done);
    socket.once('close', done);
    socket.on('error', done);
  });
}

/** A TCP connection to the broker through the --via proxy (its own CONNECT), for the TLS on top. */
function throughVia(via: Via, broker: BrokerAddress): Promise<Socket> {
  const u = new URL(via.uri);
  const authority = `${isIP(broker.host) === 6 ? `[${broker.host}]` : broker.host}:${broker.port}`;
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port),
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, ...(via.token ? { 'proxy-authorization': via.token } : {}) },
      agent: false,
      timeout: ANSWER_MS,
    });
    req.once('timeout', () => req.destroy(new Error(`the proxy ${via.uri} did not answer CONNECT within ${ANSWER_MS / 1000} s`)));
    req.once('error', reject);
    req.once('connect', (res: IncomingMessage, socket: Socket) => {
      socket.setTimeout(0);
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      reject(new Error(`the proxy ${via.uri} refused the CONNECT tunnel with status ${res.statusCode}${res.statusCode === 407 ? ' (proxy authentication required or wrong)' : ''}`));
    });
    req.end();
  });
}

/** `CONNECT authority` at the broker's forward listener, over mTLS with `tls` (through `via` if given). */
export async function openAtBroker(broker: BrokerAddress, tls: ClientTls, authority: string, via?: Via): Promise<Opened> {
  const carrier = via === undefined ? undefined : await throughVia(via, broker);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      method: 'CONNECT',
      path: authority,
      headers: { host: authority },
      // no agent (agent: false would make one): the connection is the one createConnection gives
      timeout: ANSWER_MS,
      // the mutual TLS to the broker, on a fresh TCP connection or inside the proxy's tunnel
      createConnection: () =>
        tlsConnect({
          // with a carrier, host only names whom the certificate must be for (when there is no servername)
          host: broker.host,
          ...(carrier === undefined ? { port: broker.port } : { socket: carrier }),
          ...(broker.servername === undefined ? {} : { servername: broker.servername }),
          cert: tls.cert,
          key: tls.key,
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        }),
    });
    req.once('timeout', () => req.destroy(new Error(`no answer to CONNECT within ${ANSWER_MS / 1000} s`)));
    req.once('error', (err) => (carrier?.destroy(), reject(err)));
    // Node hands every answer to a CONNECT over here, with the raw socket: a refusal's body is still on it.
    req.once('connect', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      socket.setTimeout(0);
      if (res.statusCode === 200) return resolve({ ok: true, socket, head });
      void readBody(res, socket, head).then((body) =>
        resolve({ ok: false, status: res.statusCode ?? 502, statusText: res.statusMessage ?? '', contentType: String(res.headers['content-type'] ?? 'application/json; charset=utf-8'), body }),
      );
    });
    req.end();
  });
}

function rawAnswer(status: number, statusText: string, contentType: string, body: Buffer | string): string | Buffer {
  const head = `HTTP/1.1 ${status} ${statusText.replace(/[\r\n]/g, '')}\r\nContent-Type: ${contentType.replace(/[\r\n]/g, '')}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')]);
}

/** The `code` of a JSON error body, for the access line. */
function codeOf(body: Buffer): string | undefined {
  try {
    const code = (JSON.parse(body.toString('utf8')) as { code?: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

export interface TunnelDeps {
  broker: BrokerAddress;
  via?: Via | undefined;
  /** The certificate of the moment. */
  tls(): ClientTls;
  access: Logger;
  /** Open tunnels, so that shutdown can cut them. */
  open: Set<Socket>;
}

/** The server's 'connect' handler. */
export function tunnel(deps: TunnelDeps): (req: IncomingMessage, socket: Socket, head: Buffer) => void {
  return (req, local, head) => {
    const started = performance.now();
    const authority = req.url ?? '';
    const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(authority);
    const host = m?.[1] ?? authority;
    const port = m ? Number(m[2]) : null;
    let bytesUp = 0;
    let bytesDown = 0;
    const log = (status: number, extra: Record<string, unknown> = {}) =>
      deps.access.info({ method: 'CONNECT', host, port, status, bytesUp, bytesDown, durationMs: Math.round((performance.now() - started) * 1000) / 1000, ...extra }, 'tunnel');
    local.on('error', () => local.destroy());
    deps.open.add(local);
    local.once('close', () => deps.open.delete(local));

    openAtBroker(deps.broker, deps.tls(), authority, deps.via).then(
      (r) => {
        if (!r.ok) {
          if (local.writable) local.end(rawAnswer(r.status, r.statusText, r.contentType, r.body));
          const code = codeOf(r.body);
          return log(r.status, code === undefined ? {} : { code });
        }
        const up = r.socket;
        if (local.destroyed) {
          up.destroy();
          return log(499, { detail: 'the local client went away' });
        }
        deps.open.add(up);
        let failure: string | undefined;
        up.on('error', (err) => ((failure ??= `the tunnel to the broker failed: ${describe(err)}`), local.destroy()));
        local.on('error', (err) => ((failure ??= `the local connection failed: ${err.message}`), up.destroy()));
        // One side gone: the other finishes writing what it holds, then closes.
        local.once('close', () => up.destroySoon());
        let closed = 0;
        const both = () => {
          if (++closed === 2) log(200, failure === undefined ? {} : { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: failure });
        };
        local.once('close', both);
        up.once('close', () => (deps.open.delete(up), local.destroySoon(), both()));
        local.on('data', (c: Buffer) => (bytesUp += c.length));
        up.on('data', (c: Buffer) => (bytesDown += c.length));
        local.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (r.head.length > 0) {
          bytesDown += r.head.length;
          local.write(r.head);
        }
        if (head.length > 0) {
          bytesUp += head.length;
          up.write(head);
        }
        local.pipe(up);
        up.pipe(local);
      },
      (err: unknown) => {
        const message = `cannot open a tunnel through the broker at ${deps.broker.origin}${deps.via ? ` via the proxy ${deps.via.uri}` : ''}: ${describe(err)}`;
        if (local.writable) local.end(rawAnswer(502, 'Bad Gateway', 'application/json; charset=utf-8', JSON.stringify({ code: 'BRK_ERR_CONNECT_UPSTREAM', message })));
        log(502, { code: 'BRK_ERR_CONNECT_UPSTREAM', detail: message });
      },
    );
  };
}
