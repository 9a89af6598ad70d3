/**
 * `broker doctor` on the broker's host: is the config valid, can the listeners bind, does the
 * firewall let partners in (where it can be read), are the certificates, CA and CRLs usable, and do
 * the upstreams answer. Every finding says what to do.
 */
import { createServer, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { lookup } from 'node:dns/promises';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { isLoopbackHost, type BrokerConfig } from '../config/index.ts';
import { materialFiles, revokedSerials, subjectKey } from '../tls/material.ts';
import { tcpReachable } from '../admin/readiness.ts';
import { portOwner } from './port-owner.ts';
import { CaStore } from '../pki/store.ts';
import { statusOf } from '../pki/inventory.ts';
import { fail, ok, warn, type Finding } from './finding.ts';

const DAY = 86_400_000;
const days = (ms: number) => {
  const n = Math.ceil(ms / DAY);
  return `${n} day${n === 1 ? '' : 's'}`;
};

/** Whether host:port can be bound now; why not when it cannot. */
export function tryBind(host: string, port: number): Promise<{ ok: true } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code ?? String(e) }));
    s.listen(port, host, () => s.close(() => resolve({ ok: true })));
  });
}

async function portCheck(what: string, host: string, port: number): Promise<Finding> {
  if (port === 0) return ok(what, 'port 0: a free port is picked at start');
  const r = await tryBind(host, port);
  if (r.ok) return ok(what, `${host}:${port} is free and bindable`);
  if (r.code === 'EADDRINUSE') {
    const owner = portOwner(port);
    if (owner && /\b(broker|dist\/main\.js) serve\b/.test(owner.command)) return warn(what, `${host}:${port} is held by a running broker (pid ${owner.pid}): fine if that is this broker`);
    return fail(what, `${host}:${port} is already in use${owner ? ` by pid ${owner.pid} (${owner.command})` : ''}`, owner ? `stop that process, or choose another port` : 'find the process with "ss -ltnp" and stop it, or choose another port');
  }
  if (r.code === 'EACCES') return fail(what, `no permission to bind ${host}:${port} (a port below 1024 needs CAP_NET_BIND_SERVICE)`, 'run with AmbientCapabilities=CAP_NET_BIND_SERVICE (systemd), setcap cap_net_bind_service=+ep on the node binary, or use a port ≥ 1024 behind a port forward');
  if (r.code === 'EADDRNOTAVAIL') return fail(what, `${host} is not an address of this host`, 'use 0.0.0.0, :: or an address this host has');
  return fail(what, `cannot bind ${host}:${port}: ${r.code}`);
}

function firewallFindings(c: BrokerConfig): Finding[] {
  let rules = '';
  const readers: Array<[string, string[]]> = [['nft', ['list', 'ruleset']], ['iptables-save', []]];
  for (const [cmd, args] of readers) {
    try {
      rules = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 });
      if (rules) break;
    } catch {
      // not installed or not permitted
    }
  }
  if (!rules) return [warn('firewall', 'no nftables or iptables rules could be read (not installed, or not root)', 'check that the listen port is open to partners and the admin port is not; "broker doctor --firewall" prints an nftables snippet')];
  const out: Finding[] = [];
  const port = String(c.listen.port);
  const dropsByDefault = /policy drop|-P INPUT DROP/.test(rules);
  const allows = new RegExp(`dport\\s+(\\{[^}]*\\b${port}\\b[^}]*\\}|${port})\\b[^\\n]*accept|--dport ${port}\\b[^\\n]*-j ACCEPT`).test(rules);
  if (dropsByDefault && !allows) out.push(fail('firewall', `incoming traffic is dropped by default and no rule accepts port ${port}`, 'add the rule from "broker doctor --firewall"'));
  else out.push(ok('firewall', dropsByDefault ? `port ${port} is accepted` : 'no default-drop input policy found'));
  return out;
}

export function nftablesSnippet(c: BrokerConfig): string {
  return [
    '# broker: accept partners on the listen port, keep the admin port on loopback',
    'table inet broker {',
    '  chain input {',
    '    type filter hook input priority 0; policy drop;',
    '    ct state established,related accept',
    '    iif lo accept',
    `    tcp dport ${c.listen.port} ct state new limit rate over 50/second burst 100 packets drop`,
    `    tcp dport ${c.listen.port} accept`,
    ...(c.listenCertOptional ? [`    tcp dport ${c.listenCertOptional.port} ct state new limit rate over 50/second burst 100 packets drop`, `    tcp dport ${c.listenCertOptional.port} accept`] : []),
    `    tcp dport ${c.admin.port} drop`,
    '  }',
    '}',
  ].join('\n');
}

/**
 * How to get back the files of a store server certificate (missing or unreadable): "pki server"
 * refuses a name that still has a valid certificate in the inventory; "pki rotate server" rewrites
 * the files of that one.
 */
function missingFix(c: BrokerConfig, name: string): string {
  try {
    const listed = CaStore.open(c.pki.dir).readInventory().certs.some((r) => r.name === name && r.type === 'server' && statusOf(r) === 'valid');
    if (listed) return `broker pki rotate server ${name} --dir ${c.pki.dir}`;
  } catch {
    // no readable store here (only its public files, or none): issuing is the way
  }
  return `broker pki server ${name} --dns HOST`;
}

/**
 * How to add HOST to the server certificate's names. For a store certificate: rotate it with every
 * name it has plus HOST (--dns/--ip replace the names as a whole, so the old ones are repeated).
 */
function addNameFix(c: BrokerConfig, leaf: X509Certificate, host: string): string {
  const flag = (h: string) => `${isIP(h) ? '--ip' : '--dns'} ${h}`;
  if (!c.tls.server) return `replace ${c.tls.cert ?? 'tls.cert'} with a certificate that also names ${host} (${flag(host)})`;
  const names = (leaf.subjectAltName ?? '')
    .split(', ')
    .map((n) => /^(?:DNS:|IP Address:)(.+)$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined && n.length > 0);
  return `broker pki rotate server ${c.tls.server} --dir ${c.pki.dir} ${[...new Set([...names, host])].map(flag).join(' ')}`;
}

function certFindings(c: BrokerConfig, warnDays: number, hostnames: readonly string[]): Finding[] {
  const f = materialFiles(c);
  const out: Finding[] = [];
  const now = Date.now();
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : undefined);
  const certPem = read(f.cert);
  const keyPem = read(f.key);
  if (!certPem || !keyPem) {
    out.push(fail('server certificate', `missing ${!certPem ? f.cert : f.key}`, c.tls.server ? missingFix(c, c.tls.server) : 'point tls.cert / tls.key at existing files'));
    return out;
  }
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0] ?? certPem);
  } catch (e) {
    out.push(fail('server certificate', `${f.cert} is not a readable PEM certificate (${(e as Error).message})`, c.tls.server ? missingFix(c, c.tls.server) : 'point tls.cert at the PEM certificate chain'));
    return out;
  }
  try {
    out.push(leaf.checkPrivateKey(createPrivateKey(keyPem)) ? ok('server key', 'matches the certificate') : fail('server key', `${f.key} does not match ${f.cert}`, 'renew the server certificate (broker pki rotate server NAME)'));
  } catch (e) {
    out.push(fail('server key', `${f.key} is not a readable private key (${(e as Error).message})`));
  }
  const left = new Date(leaf.validTo).getTime() - now;
  out.push(left <= 0 ? fail('server certificate', `expired on ${leaf.validTo}`, 'broker pki rotate server NAME, then reload') : left < warnDays * DAY ? warn('server certificate', `expires in ${days(left)}`, 'broker pki rotate server NAME') : ok('server certificate', `valid until ${leaf.validTo}`));
  for (const h of hostnames) {
    // checkIP throws on anything but an IP address, and checkHost does not match IP SANs
    const covered = isIP(h) ? leaf.checkIP(h) : leaf.checkHost(h);
    out.push(covered ? ok('server certificate', `covers ${h}`) : fail('server certificate', `does not cover ${h} (SANs: ${leaf.subjectAltName ?? 'none'})`, addNameFix(c, leaf, h)));
  }
  // the chain: every certificate after the leaf signs the one before, up to a CA of the client CA bundle
  const caPem = read(f.ca) ?? '';
  const cas = (caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));
  const chain = blocks.map((b) => new X509Certificate(b));
  let complete = false;
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    if (cas.some((ca) => ca.subject === cert.issuer && cert.verify(ca.publicKey))) complete = true;
    if (i + 1 < chain.length && !cert.verify((chain[i + 1] as X509Certificate).publicKey)) break;
  }
  out.push(complete ? ok('certificate chain', 'the server chain leads to a CA the broker trusts') : warn('certificate chain', `${f.cert} does not chain to a CA in ${f.ca}`, 'serve leaf + issuing CA (broker pki server writes that), and check the CA bundle'));
  for (const ca of cas) {
    const caLeft = new Date(ca.validTo).getTime() - now;
    if (caLeft <= 0) out.push(fail('CA certificate', `${ca.subject.replace(/\n/g, ',')} expired on ${ca.validTo}`, 'broker pki rotate intermediate / root'));
    else if (caLeft < warnDays * DAY) out.push(warn('CA certificate', `${ca.subject.replace(/\n/g, ',')} expires in ${days(caLeft)}`, 'broker pki rotate intermediate / root'));
  }
  if (cas.length) out.push(ok('CA certificates', `${cas.length} in ${f.ca}`));
  const crlPem = read(f.crl);
  let crls: ReturnType<typeof revokedSerials> | undefined;
  if (!crlPem) out.push(fail('CRL', `missing ${f.crl}: with CRL checking on, every client would be refused`, 'broker pki crl'));
  else {
    try {
      crls = revokedSerials(crlPem);
    } catch (e) {
      out.push(fail('CRL', `${f.crl} holds a CRL that cannot be read (${(e as Error).message}): every client would be refused`, 'broker pki crl'));
    }
  }
  if (crls) {
    const r = crls;
    const missing = cas.filter((ca) => !r.issuers.has(subjectKey(ca.raw)));
    if (missing.length) out.push(fail('CRL', `no CRL for ${missing.map((m) => m.subject.replace(/\n/g, ',')).join('; ')}: OpenSSL would refuse every client`, 'publish every level: broker pki crl (crl.pem holds them all)'));
    else out.push(ok('CRL', `a CRL for each of the ${cas.length} CA levels`));
    if (r.nextUpdate && r.nextUpdate.getTime() <= now) out.push(fail('CRL', `expired on ${r.nextUpdate.toISOString()}: every client is refused`, 'broker pki crl (and run it from a timer)'));
    else if (r.nextUpdate && r.nextUpdate.getTime() - now < 3 * DAY) out.push(warn('CRL', `next update due ${r.nextUpdate.toISOString()}`, 'broker pki crl (and run it from a timer)'));
  }
  for (const key of [f.key]) {
    try {
      const mode = statSync(key).mode & 0o777;
      if (mode & 0o077) out.push(fail('key permissions', `${key} is readable by group or others (mode ${mode.toString(8)})`, `chmod 600 ${key}`));
      else out.push(ok('key permissions', `${key} is private (mode ${mode.toString(8)})`));
    } catch {
      // reported as missing above
    }
  }
  return out;
}


async function upstreamFindings(c: BrokerConfig): Promise<Finding[]> {
  return Promise.all(
    c.routes.map(async (r): Promise<Finding> => {
      const url = new URL(r.upstream);
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const what = `upstream ${r.name}`;
      try {
        await lookup(url.hostname);
      } catch {
        return fail(what, `${url.hostname} does not resolve`, 'fix the name or DNS');
      }
      if (!(await tcpReachable(url.hostname, port, 3_000))) return fail(what, `${url.hostname}:${port} does not accept connections`, 'start the upstream, or fix the route\'s upstream URL');
      if (url.protocol !== 'https:') return ok(what, `${url.host} accepts TCP`);
      const ca = r.upstreamTls?.ca ? readFileSync(r.upstreamTls.ca, 'utf8') : undefined;
      return new Promise<Finding>((resolve) => {
        const s = tlsConnect({ host: url.hostname, port, servername: r.upstreamTls?.servername ?? url.hostname, ...(ca ? { ca } : {}), rejectUnauthorized: true, timeout: 5_000 }, () => {
          s.destroy();
          resolve(ok(what, `${url.host} presents a certificate the broker trusts`));
        });
        s.once('error', (e: NodeJS.ErrnoException) => resolve(fail(what, `TLS to ${url.host} fails: ${e.code ?? e.message}`, 'set routes[].upstreamTls.ca to the CA that issued the upstream\'s certificate (and servername if it differs)')));
        s.once('timeout', () => {
          s.destroy();
          resolve(fail(what, `no TLS answer from ${url.host}`));
        });
      });
    }),
  );
}

export async function doctorServer(c: BrokerConfig, o: { warnDays?: number; hostnames?: readonly string[] } = {}): Promise<Finding[]> {
  const findings: Finding[] = [ok('config', `${c.routes.length} routes`)];
  findings.push(await portCheck('listen port', c.listen.host, c.listen.port));
  if (c.listenCertOptional) {
    findings.push(await portCheck('certificate-optional port', c.listenCertOptional.host, c.listenCertOptional.port));
    const open = c.routes.filter((r) => !r.auth.includes('mtls')).map((r) => r.name);
    findings.push(warn('certificate-optional listener', `port ${c.listenCertOptional.port} admits clients without a certificate; routes without mtls: ${open.join(', ') || 'none'}`, 'expose it only if those routes must be reached without a certificate; keep their API keys and tokens short-lived'));
  }
  if (c.admin.enabled) {
    findings.push(await portCheck('admin port', c.admin.host, c.admin.port));
    const loopback = isLoopbackHost(c.admin.host);
    findings.push(loopback ? ok('admin exposure', `admin listener on ${c.admin.host} only`) : c.admin.tokenFile ? warn('admin exposure', `admin listener on ${c.admin.host}, protected by a token`, 'keep it behind a firewall too') : fail('admin exposure', `admin listener on ${c.admin.host} without a token`, 'bind it to 127.0.0.1 or set admin.tokenFile'));
  }
  findings.push(...firewallFindings(c));
  findings.push(...certFindings(c, o.warnDays ?? 14, o.hostnames ?? []));
  findings.push(...(await upstreamFindings(c)));
  return findings;
}
