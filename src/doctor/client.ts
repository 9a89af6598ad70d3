/**
 * `broker doctor --client`: the partner's side. Walks the path to the broker step by step (local
 * certificate, DNS, TCP or the outbound proxy's CONNECT, TLS, then one HTTP request) and stops at
 * the first failure, named in plain words.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type PeerCertificate, type DetailedPeerCertificate } from 'node:tls';
import { lookup } from 'node:dns/promises';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fail, ok, type Finding } from './finding.ts';
import { ALERTS, certificateRefused, codeOf, exchange } from './answer.ts';

export interface ClientDoctorOptions {
  url: string;
  /** PEM certificate and key, or `p12` (PKCS#12) with `p12Password`. */
  cert?: string | undefined;
  key?: string | undefined;
  p12?: string | undefined;
  p12Password?: string | undefined;
  ca?: string | undefined;
  via?: string | undefined;
  /** The name to send as SNI and to check the server certificate against (default: the URL's host). */
  servername?: string | undefined;
  /** curl-style `HOST:PORT:ADDR`: dial ADDR instead of resolving HOST (for HOST:PORT only). */
  resolve?: string | undefined;
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

/** Names in an issuer that mark a TLS-inspecting product's CA (matched case-insensitively, whole words). */
const INSPECTION_VENDORS = ['Zscaler', 'Palo Alto', 'Fortinet', 'FortiGate', 'Netskope', 'Blue Coat', 'Symantec Web', 'Cisco Umbrella', 'Forcepoint', 'Sophos', 'Check Point', 'Barracuda', 'McAfee Web Gateway', 'Skyhigh', 'WatchGuard', 'Kaspersky', 'Avast', 'ESET', 'Bitdefender', 'mitmproxy', 'Fiddler', 'Charles Proxy', 'Burp'];

export function inspectionVendor(issuer: string): string | undefined {
  return INSPECTION_VENDORS.find((v) => new RegExp(`\\b${v.replace(/ /g, '\\s*')}\\b`, 'i').test(issuer));
}

const UNKNOWN_ISSUER = new Set(['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_SIGNATURE_FAILURE']);

function dn(name: PeerCertificate['subject'] | undefined): string {
  if (!name) return 'unknown';
  return Object.entries(name).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`).join(', ');
}

/** The presented chain, leaf first, as the server sent it (Node links issuerCertificate; a self-signed root links to itself). */
function chainOf(peer: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const out: DetailedPeerCertificate[] = [];
  let c: DetailedPeerCertificate | undefined = peer;
  while (c && c.raw && !out.includes(c) && out.length < 10) {
    out.push(c);
    c = c.issuerCertificate;
  }
  return out;
}

/** Whether some certificate in the presented chain is one of, or was signed by one of, the CA file's certificates. */
function endsInCa(chain: DetailedPeerCertificate[], caPem: string): boolean {
  const cas: X509Certificate[] = [];
  for (const block of caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      cas.push(new X509Certificate(block));
    } catch {
      // not a certificate: ignored here, Node already refused it
    }
  }
  for (const c of chain) {
    let x: X509Certificate;
    try {
      x = new X509Certificate(c.raw);
    } catch {
      continue;
    }
    for (const ca of cas) {
      if (ca.fingerprint256 === x.fingerprint256) return true;
      if (x.checkIssued(ca) && x.verify(ca.publicKey)) return true;
    }
  }
  return false;
}

/** The local identity: PEM files, or a PKCS#12 file read by OpenSSL (through a secure context). */
function loadIdentity(o: ClientDoctorOptions): { leaf: X509Certificate; tls: { cert: string; key: string } | { pfx: Buffer; passphrase: string } } | Finding {
  if (o.p12) {
    let pfx: Buffer;
    try {
      pfx = readFileSync(o.p12);
    } catch (e) {
      return fail('certificate', `cannot read ${o.p12} (${(e as NodeJS.ErrnoException).code ?? e})`, 'point --p12 at the .p12 file the broker operator handed over');
    }
    const passphrase = o.p12Password ?? '';
    let ctx;
    try {
      ctx = createSecureContext({ pfx, passphrase });
    } catch (e) {
      const m = (e as Error).message;
      return fail('certificate', /mac verify|password|decrypt/i.test(m) ? `${o.p12}: wrong PKCS#12 password` : `${o.p12} is not a usable PKCS#12 file (${m})`, 'give the password with --p12-password-file or BROKER_P12_PASSWORD');
    }
    // the leaf, as OpenSSL loaded it: a socket that is never connected shows its own certificate
    const probe = new TLSSocket(null as unknown as Socket, { secureContext: ctx });
    const raw = probe.getCertificate() as PeerCertificate | null;
    probe.destroy();
    if (!raw || !('raw' in raw) || !raw.raw) return fail('certificate', `${o.p12} holds no certificate`, 'ask the broker operator for the hand-out again');
    return { leaf: new X509Certificate(raw.raw), tls: { pfx, passphrase } };
  }
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(o.cert as string, 'utf8');
    keyPem = readFileSync(o.key as string, 'utf8');
  } catch (e) {
    return fail('certificate', `cannot read ${(e as NodeJS.ErrnoException).path ?? o.cert}`, 'point --cert and --key at the files the broker operator handed over');
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (e) {
    return fail('certificate', `${o.cert} is not a readable PEM certificate (${(e as Error).message})`, 'point --cert at the .crt file the broker operator handed over');
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return fail('certificate', `${o.key} does not belong to ${o.cert}`, 'use the key that came with the certificate');
  } catch (e) {
    return fail('certificate', `${o.key} is not a readable private key (${(e as Error).message})`);
  }
  return { leaf, tls: { cert: certPem, key: keyPem } };
}

/** `HOST:PORT:ADDR` (ADDR may be [v6]). */
export function parseResolve(value: string): { host: string; port: number; addr: string } | undefined {
  const m = /^([^:]+):(\d{1,5}):\[?([^\]]+)\]?$/.exec(value);
  if (!m || isIP(m[3] as string) === 0) return undefined;
  return { host: (m[1] as string).toLowerCase(), port: Number(m[2]), addr: m[3] as string };
}

/** The port in `url` as written (an explicit `:443` counts: WHATWG URL drops a scheme's default port). */
function portOf(url: string, fallback: number): number {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^/:?#]*):(\d{1,5})(?:[/?#]|$)/i.exec(url);
  return m ? Number(m[1]) : fallback;
}

/** Where the walk got to: the verified TLS connection, and the address as the findings name it. */
export interface Reached {
  socket: TLSSocket;
  /** The Host header: the URL's host, with the port when it is not the URL's own. */
  authority: string;
  host: string;
  port: number;
}

/**
 * Steps 1 to 4, shared by `doctor --client` and `doctor --client --forward`: the partner's own
 * certificate, DNS (or --resolve), TCP (or the proxy's CONNECT), TLS against the broker's CA.
 * Each step adds its finding to `out`; the first failure ends the walk (undefined).
 */
export async function reachBroker(o: ClientDoctorOptions, defaultPort: number, out: Finding[]): Promise<Reached | undefined> {
  const ms = o.timeoutMs ?? 5_000;
  const url = new URL(o.url);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = portOf(o.url, defaultPort);
  const authority = `${url.hostname}:${port}`;

  // 1. the partner's own certificate
  const id = loadIdentity(o);
  if ('status' in id) return void out.push(id);
  const { leaf } = id;
  const now = Date.now();
  if (new Date(leaf.validTo).getTime() <= now) return void out.push(fail('certificate', `your certificate expired on ${leaf.validTo}`, 'ask the broker operator for a renewed one (broker pki renew)'));
  if (new Date(leaf.validFrom).getTime() > now) return void out.push(fail('certificate', `your certificate is not valid before ${leaf.validFrom} (check this machine's clock)`));
  out.push(ok('certificate', `${leaf.subject.replace(/\n/g, ', ')}, valid until ${leaf.validTo}`));

  // 2. DNS (or --resolve), 3. TCP or the proxy's CONNECT
  const via = o.via ? new URL(o.via) : undefined;
  const pinned = o.resolve ? parseResolve(o.resolve) : undefined;
  const usePin = !via && pinned !== undefined && pinned.host === host.toLowerCase() && pinned.port === port;
  let dialHost = via ? via.hostname : host;
  const dialPort = via ? Number(via.port || 3128) : port;
  if (usePin) {
    dialHost = pinned.addr;
    out.push(ok('dns', `${host} is ${pinned.addr} (from --resolve; DNS not asked)`));
  } else {
    try {
      const addr = await lookup(dialHost);
      out.push(ok('dns', `${dialHost} is ${addr.address}`));
    } catch {
      return void out.push(fail('dns', `${dialHost} does not resolve`, 'check the name, or this machine\'s DNS; to test before DNS exists, add --resolve HOST:PORT:ADDRESS'));
    }
  }
  const t = await tcp(dialHost, dialPort, ms);
  if (!t.socket) {
    const what = via ? 'proxy' : 'tcp';
    const shown = usePin ? `${host}:${port} (${dialHost})` : `${dialHost}:${dialPort}`;
    if (t.error === 'refused') return void out.push(fail(what, `${shown} refused the connection: the port is closed or nothing listens there`, via ? 'check the proxy address' : 'check the URL and port; ask the operator whether the broker runs'));
    if (t.error === 'timeout') return void out.push(fail(what, `no answer from ${shown} within ${ms} ms: the traffic is dropped, most likely by a firewall`, 'ask your network team to allow outbound TCP to this address and port (or use --via with your proxy)'));
    return void out.push(fail(what, `cannot connect to ${shown}: ${t.error}`));
  }
  const socket: Socket = t.socket;
  if (via) {
    const auth = via.username ? `${decodeURIComponent(via.username)}:${decodeURIComponent(via.password)}` : process.env.BROKER_PROXY_AUTH;
    const status = await connectThrough(socket, authority, auth, ms);
    if (!/^HTTP\/1\.[01] 200/.test(status)) {
      socket.destroy();
      return void out.push(fail('proxy', `the proxy refused CONNECT to ${authority} (${status})`, status.includes('407') ? 'give proxy credentials (user:pass@ in --via, or BROKER_PROXY_AUTH)' : 'ask your network team to allow CONNECT to the broker\'s host and port'));
    }
    out.push(ok('proxy', `CONNECT to ${authority} through ${via.host} accepted`));
  } else {
    out.push(ok('tcp', `${host}:${port} accepts connections`));
  }

  // 4. TLS: is this the broker (its CA, or the system roots without --ca), does it name the host, and does it take our certificate?
  const ca = o.ca ? readFileSync(o.ca, 'utf8') : undefined;
  const name = o.servername ?? host;
  const tls = await new Promise<{ socket?: TLSSocket; error?: Error & { code?: string } }>((resolve) => {
    // host is what Node checks the certificate's names against; SNI only for a DNS name (RFC 6066)
    const s = tlsConnect({ socket, host: name, ...(isIP(name) ? {} : { servername: name }), ...id.tls, ...(ca ? { ca } : {}), rejectUnauthorized: false });
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
    if (e.code === 'TIMEOUT') return void out.push(fail('tls', `the server at ${host}:${port} accepted TCP but never answered the TLS handshake`, 'something other than the broker listens there, or a middlebox holds the traffic'));
    const known = ALERTS.find(([re]) => re.test(`${e.code ?? ''} ${e.message}`));
    return void out.push(fail('tls', known ? known[1] : `the TLS handshake failed: ${e.code ?? e.message}`, known?.[2]));
  }
  const s = tls.socket;
  if (!s.authorized) {
    out.push(serverProblem(s, name, ca, o.ca));
    s.destroy();
    return undefined;
  }
  out.push(ok('tls', `${s.getProtocol()} ${s.getCipher().name}, the server certificate names ${name} and comes from ${ca ? 'the broker\'s CA (--ca)' : 'a CA this system trusts'}`));
  return { socket: s, authority: port === Number(url.port || 443) ? url.host : authority, host, port };
}

export async function doctorClient(o: ClientDoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const reached = await reachBroker(o, 443, out);
  if (!reached) return out;

  // 5. one request: the broker says whether it took the certificate and what the ACL decides
  const path = o.path ?? '/';
  const answer = await exchange(reached.socket, `GET ${path} HTTP/1.1\r\nHost: ${reached.authority}\r\nConnection: close\r\n\r\n`, o.timeoutMs ?? 5_000);
  const refused = certificateRefused(answer);
  if (refused) return [...out, refused];
  const st = answer.status as number;
  const code = codeOf(answer);
  if (st < 400) out.push(ok('http', `GET ${path}: ${st}`));
  else if (st === 403) out.push(fail('http', `GET ${path}: 403 (${code ?? 'denied'}): your identity holds no role this route allows (or your address is not allowed for it)`, 'ask the broker operator which roles the route needs'));
  else if (st === 404) out.push(fail('http', `GET ${path}: 404: the broker has no route for this path`, 'check the path'));
  else if (st === 429) out.push(fail('http', `GET ${path}: 429: rate limit reached`, 'slow down; the Retry-After header says when to retry'));
  else if (st === 401) out.push(fail('http', `GET ${path}: 401 (${code ?? ''}): your certificate was revoked`, 'ask the broker operator for a new one'));
  else if (st >= 500) out.push(fail('http', `GET ${path}: ${st} (${code ?? ''}): the broker took your request but its upstream failed`, 'nothing to fix on your side; tell the broker operator'));
  else out.push(fail('http', `GET ${path}: ${st} (${code ?? ''})`));
  return out;
}

/** Why the server certificate was not verified, in the partner's words: each cause its own sentence and fix. */
function serverProblem(s: TLSSocket, name: string, ca: string | undefined, caFile: string | undefined): Finding {
  const err = String(s.authorizationError ?? '');
  const peer = s.getPeerCertificate(true);
  const chain = peer && peer.raw ? chainOf(peer) : [];
  const top = chain.at(-1);
  const issuer = dn(peer?.issuer);
  if (err === 'ERR_TLS_CERT_ALTNAME_INVALID' || /altname|Hostname\/IP does not match/i.test(err)) {
    const names = peer?.subjectaltname ? peer.subjectaltname.split(', ').map((n) => n.replace(/^IP Address:/, 'IP:')).join(', ') : `no subjectAltName (subject ${dn(peer?.subject)})`;
    const first = /(?:DNS|IP):([^,\s]+)/.exec(names)?.[1];
    return fail('tls', `host-name mismatch: the server certificate comes from ${ca ? 'the broker\'s CA (--ca)' : 'a CA this system trusts'} but does not name ${name}; it names ${names}`,
      `connect with a name the certificate has (in --url, or --servername ${first ?? 'NAME'} with --resolve for testing), or ask the broker operator for a server certificate that covers ${name} (broker doctor --hostname ${name} on the broker's host)`);
  }
  if (err === 'CERT_HAS_EXPIRED') {
    return fail('tls', `the broker's server certificate expired on ${peer?.valid_to ?? '?'} (subject ${dn(peer?.subject)}, issuer ${issuer})`, 'nothing to fix on your side unless this machine\'s clock is wrong; tell the broker operator to renew the server certificate');
  }
  if (err === 'CERT_NOT_YET_VALID') {
    return fail('tls', `the broker's server certificate is not valid before ${peer?.valid_from ?? '?'}: this machine's clock is behind, or the certificate was issued for later`, 'check this machine\'s clock (NTP); if it is right, tell the broker operator');
  }
  if (UNKNOWN_ISSUER.has(err)) {
    const root = top ? dn(top.issuer) : issuer;
    const vendor = inspectionVendor(`${issuer} ${root}`);
    const org = peer?.issuer?.O ? ` (organisation ${String(peer.issuer.O)})` : '';
    if (ca && !endsInCa(chain, ca)) {
      // a lone leaf cannot be linked to anything: a broker that omits its intermediate looks the same
      const lone = chain.length <= 1 && !vendor ? ' (the server sent only its own certificate: a broker whose server certificate file lacks the intermediate looks the same)' : '';
      return fail('tls', `the server certificate was issued by "${issuer}"${org}, not by the broker's CA (${err}): ${vendor ? `a TLS-inspecting middlebox (${vendor}) is in the path` : 'a TLS-inspecting middlebox (proxy, firewall) is in the path, or --ca is not this broker\'s CA'}${lone}`,
        'ask your network team to exempt the broker\'s host from TLS inspection: client certificates cannot pass through it');
    }
    if (ca) {
      return fail('tls', `the server's chain leads to the broker's CA in ${caFile} but does not verify against it (${err}): the broker sends an incomplete chain, or ${caFile} lacks a level`, 'ask the broker operator for the current ca.crt (it must hold the root)');
    }
    if (vendor) {
      return fail('tls', `the server certificate was issued by "${issuer}"${org}: a TLS-inspecting middlebox (${vendor}) is in the path (${err})`, 'ask your network team to exempt the broker\'s host from TLS inspection: client certificates cannot pass through it');
    }
    return fail('tls', `the server certificate was issued by "${issuer}"${org}, a CA this system does not trust (${err}): the broker uses its own private CA, so the system roots cannot verify it`,
      'run again with --ca ca.crt (the CA file the broker operator handed over); if it still fails, a TLS-inspecting middlebox is in the path');
  }
  return fail('tls', `the server certificate does not verify (${err}; subject ${dn(peer?.subject)}, issuer ${issuer})`, ca ? 'ask the broker operator to check the server certificate (broker doctor on the broker\'s host)' : 'run again with --ca ca.crt (the CA file the broker operator handed over)');
}
