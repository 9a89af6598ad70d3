/**
 * `broker doctor --client`: the partner's side. Walks the path to the broker step by step (local
 * certificate, DNS, TCP or the outbound proxy's CONNECT, TLS, then one HTTP request) and stops at
 * the first failure, named in plain words.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { lookup } from 'node:dns/promises';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fail, ok, type Finding } from './finding.ts';

export interface ClientDoctorOptions {
  url: string;
  cert: string;
  key: string;
  ca?: string | undefined;
  via?: string | undefined;
  path?: string;
  timeoutMs?: number;
}

function tcp(host: string, port: number, ms: number): Promise<{ socket?: Socket; error?: 'refused' | 'timeout' | string }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ error: 'timeout' });
    }, ms);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ socket });
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: e.code === 'ECONNREFUSED' ? 'refused' : (e.code ?? e.message) });
    });
  });
}

/** Sends CONNECT over `socket`; resolves with the proxy's status line. */
function connectThrough(socket: Socket, target: string, auth: string | undefined, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let head = '';
    const timer = setTimeout(() => resolve('timeout'), ms);
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve(head.split('\r\n')[0] ?? '');
      }
    };
    socket.on('data', onData);
    socket.once('close', () => resolve(head.split('\r\n')[0] || 'closed'));
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: Basic ${Buffer.from(auth).toString('base64')}\r\n` : ''}\r\n`);
  });
}

const ALERTS: Array<[RegExp, string]> = [
  [/CERTIFICATE_REQUIRED|certificate required/i, 'the broker requires a client certificate and none was sent'],
  [/ALERT_UNKNOWN_CA|unknown ca/i, 'the broker does not know the CA of your certificate'],
  [/CERTIFICATE_EXPIRED|certificate expired/i, 'the broker says your certificate has expired'],
  [/CERTIFICATE_REVOKED|certificate revoked/i, 'the broker says your certificate is revoked'],
  [/WRONG_VERSION_NUMBER|packet length too long|http request/i, 'the other side does not speak TLS on this port (plain HTTP, or another service)'],
  [/PROTOCOL_VERSION|unsupported protocol|version too low/i, 'no TLS version in common (the broker accepts TLS 1.2 and 1.3)'],
  [/HANDSHAKE_FAILURE|no shared cipher|sslv3 alert handshake failure/i, 'the handshake failed: no cipher or group in common, or the certificate was refused'],
];

export async function doctorClient(o: ClientDoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const ms = o.timeoutMs ?? 5_000;
  const url = new URL(o.url);
  const host = url.hostname;
  const port = Number(url.port || 443);

  // 1. the partner's own certificate
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(o.cert, 'utf8');
    keyPem = readFileSync(o.key, 'utf8');
  } catch (e) {
    return [fail('certificate', `cannot read ${(e as NodeJS.ErrnoException).path ?? o.cert}`, 'point --cert and --key at the files the broker operator handed over')];
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (e) {
    return [fail('certificate', `${o.cert} is not a readable PEM certificate (${(e as Error).message})`, 'point --cert at the .crt file the broker operator handed over')];
  }
  const now = Date.now();
  if (new Date(leaf.validTo).getTime() <= now) return [...out, fail('certificate', `your certificate expired on ${leaf.validTo}`, 'ask the broker operator for a renewed one (broker pki renew)')];
  if (new Date(leaf.validFrom).getTime() > now) return [...out, fail('certificate', `your certificate is not valid before ${leaf.validFrom} (check this machine's clock)`)];
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return [...out, fail('certificate', `${o.key} does not belong to ${o.cert}`, 'use the key that came with the certificate')];
  } catch (e) {
    return [...out, fail('certificate', `${o.key} is not a readable private key (${(e as Error).message})`)];
  }
  out.push(ok('certificate', `${leaf.subject.replace(/\n/g, ', ')}, valid until ${leaf.validTo}`));

  // 2. DNS, 3. TCP or the proxy's CONNECT
  const via = o.via ? new URL(o.via) : undefined;
  const dialHost = via ? via.hostname : host;
  const dialPort = via ? Number(via.port || 3128) : port;
  try {
    const addr = await lookup(dialHost);
    out.push(ok('dns', `${dialHost} is ${addr.address}`));
  } catch {
    return [...out, fail('dns', `${dialHost} does not resolve`, 'check the name, or this machine\'s DNS')];
  }
  const t = await tcp(dialHost, dialPort, ms);
  if (!t.socket) {
    const what = via ? 'proxy' : 'tcp';
    if (t.error === 'refused') return [...out, fail(what, `${dialHost}:${dialPort} refused the connection: the port is closed or nothing listens there`, via ? 'check the proxy address' : 'check the URL and port; ask the operator whether the broker runs')];
    if (t.error === 'timeout') return [...out, fail(what, `no answer from ${dialHost}:${dialPort} within ${ms} ms: the traffic is dropped, most likely by a firewall`, 'ask your network team to allow outbound TCP to this address and port (or use --via with your proxy)')];
    return [...out, fail(what, `cannot connect to ${dialHost}:${dialPort}: ${t.error}`)];
  }
  let socket: Socket = t.socket;
  if (via) {
    const auth = via.username ? `${decodeURIComponent(via.username)}:${decodeURIComponent(via.password)}` : process.env.BROKER_PROXY_AUTH;
    const status = await connectThrough(socket, `${host}:${port}`, auth, ms);
    if (!/^HTTP\/1\.[01] 200/.test(status)) {
      socket.destroy();
      return [...out, fail('proxy', `the proxy refused CONNECT to ${host}:${port} (${status})`, status.includes('407') ? 'give proxy credentials (user:pass@ in --via, or BROKER_PROXY_AUTH)' : 'ask your network team to allow CONNECT to the broker\'s host and port')];
    }
    out.push(ok('proxy', `CONNECT to ${host}:${port} through ${via.host} accepted`));
  } else {
    out.push(ok('tcp', `${host}:${port} accepts connections`));
  }

  // 4. TLS: is this the broker (its CA), and does it take our certificate?
  const ca = o.ca ? readFileSync(o.ca, 'utf8') : undefined;
  const tls = await new Promise<{ socket?: TLSSocket; error?: Error & { code?: string } }>((resolve) => {
    const s = tlsConnect({ socket, servername: host, cert: certPem, key: keyPem, ...(ca ? { ca } : {}), rejectUnauthorized: false });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ error: Object.assign(new Error('no TLS answer'), { code: 'TIMEOUT' }) });
    }, ms);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      resolve({ socket: s });
    });
    s.once('error', (e: Error & { code?: string }) => {
      clearTimeout(timer);
      resolve({ error: e });
    });
  });
  if (!tls.socket) {
    const e = tls.error as Error & { code?: string };
    if (e.code === 'TIMEOUT') return [...out, fail('tls', `the server at ${host}:${port} accepted TCP but never answered the TLS handshake`, 'something other than the broker listens there, or a middlebox holds the traffic')];
    const known = ALERTS.find(([re]) => re.test(`${e.code ?? ''} ${e.message}`));
    return [...out, fail('tls', known ? known[1] : `the TLS handshake failed: ${e.code ?? e.message}`, known?.[1].includes('certificate') ? 'ask the broker operator to check your certificate (broker pki inspect)' : undefined)];
  }
  const s = tls.socket;
  const peer = s.getPeerCertificate();
  if (ca && !s.authorized) {
    const issuer = peer?.issuer ? Object.entries(peer.issuer).map(([k, v]) => `${k}=${String(v)}`).join(', ') : 'unknown';
    s.destroy();
    return [...out, fail('tls', `the server certificate was issued by "${issuer}", not by the broker's CA (${s.authorizationError}): a TLS-inspecting middlebox (proxy, firewall) is in the path, or --ca is wrong`, 'ask your network team to exempt the broker\'s host from TLS inspection: client certificates cannot pass through it')];
  }
  out.push(ok('tls', `${s.getProtocol()} ${s.getCipher().name}${ca ? ', the server certificate comes from the broker\'s CA' : ''}`));

  // 5. one request: the broker says whether it took the certificate and what the ACL decides
  const path = o.path ?? '/';
  const answer = await new Promise<{ status?: number; body?: string; error?: string }>((resolve) => {
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ error: 'timeout' });
    }, ms);
    s.on('data', (d: Buffer) => {
      data += d.toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m && data.includes('\r\n\r\n')) {
        clearTimeout(timer);
        s.destroy();
        resolve({ status: Number(m[1]), body: data.split('\r\n\r\n')[1] ?? '' });
      }
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: e.code ?? e.message });
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ error: 'closed' });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
  });
  if (answer.status === undefined) {
    const alert = ALERTS.find(([re]) => re.test(answer.error ?? ''));
    return [...out, fail('certificate accepted', alert ? alert[1] : `the broker closed the connection after the handshake (${answer.error}): it refused your certificate (unknown CA, expired, revoked or wrong key usage)`, 'ask the broker operator to look up your certificate in the auth log, or to run broker pki inspect on it')];
  }
  const code = /"code":"([A-Z_]+)"/.exec(answer.body ?? '')?.[1];
  const st = answer.status;
  if (st < 400) out.push(ok('http', `GET ${path}: ${st}`));
  else if (st === 403) out.push(fail('http', `GET ${path}: 403 (${code ?? 'denied'}): your identity holds no role this route allows (or your address is not allowed for it)`, 'ask the broker operator which roles the route needs'));
  else if (st === 404) out.push(fail('http', `GET ${path}: 404: the broker has no route for this path`, 'check the path'));
  else if (st === 429) out.push(fail('http', `GET ${path}: 429: rate limit reached`, 'slow down; the Retry-After header says when to retry'));
  else if (st === 401) out.push(fail('http', `GET ${path}: 401 (${code ?? ''}): your certificate was revoked`, 'ask the broker operator for a new one'));
  else if (st >= 500) out.push(fail('http', `GET ${path}: ${st} (${code ?? ''}): the broker took your request but its upstream failed`, 'nothing to fix on your side; tell the broker operator'));
  else out.push(fail('http', `GET ${path}: ${st} (${code ?? ''})`));
  return out;
}
