/**
 * The data behind the operator's console (ConsoleSource, src/console/model.ts), read when a view is
 * asked for: the PKI store (inventory, invitations, keys.json, audit log), the loaded TLS material
 * (CRL nextUpdate), this process's activity (src/console/activity.ts), the shared store (the
 * identity's rate-limit bucket, bans) and the listeners (open connections). Nothing is cached: a
 * view is what the files and the process say now.
 *
 * Actions change the store the way the CLI does (`broker pki revoke`, `broker keys revoke`) and
 * then reload, so the running broker applies them at once (the next handshake or request is
 * refused, open connections of the credential are cut, other replicas are told).
 */
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { BrokerError, isBrokerError, type ErrorCode } from '../errors.ts';
import type { BrokerConfig } from '../config/index.ts';
import { CaStore } from '../pki/store.ts';
import { statusOf, type CertRecord, type Inventory } from '../pki/inventory.ts';
import { storeLayout } from '../pki/layout.ts';
import { listInvitations } from '../pki/invitations.ts';
import { listKeys, revokeKey, type KeyInfo } from '../pki/credentials.ts';
import { revoke } from '../pki/revoke.ts';
import { readHead, readPending, verifyAudit } from '../pki/audit.ts';
import { compileLimits } from '../ratelimit/policy.ts';
import { refillPerMs } from '../ratelimit/bucket.ts';
import type { SharedStore } from '../ratelimit/index.ts';
import type { ConnectionGuard } from '../filter/connection-guard.ts';
import type { TlsMaterial } from '../tls/material.ts';
import type { Activity } from './activity.ts';
import { INTERVAL_MS } from './activity.ts';
import type {
  ActionResult,
  CertificatesView,
  ChangeView,
  ChangesView,
  ConsoleSource,
  CredentialView,
  LiveView,
  PartnerView,
  PartnersView,
  TimelineItem,
} from './model.ts';

/** What a reload answers (src/lifecycle/reload.ts ReloadResult, the fields the console reads). */
export interface ConsoleReload {
  ok: boolean;
  problems: string[];
  revoked: number;
  revokedKeys: number;
}

export interface ConsoleDeps {
  config(): BrokerConfig;
  material(): TlsMaterial;
  activity: Activity;
  store: SharedStore;
  guard: ConnectionGuard;
  /** Open TLS connections of a certificate serial, on every listener of this process. */
  openConnectionsOf(serial: string): number;
  reload(trigger: string): Promise<ConsoleReload>;
  /** The broker's audit log (log.audit): one line per action. */
  audit: Logger;
}

/** Audit lines shown at most (newest first). */
const MAX_CHANGES = 200;
/** How the store's audit line says an operation came from the console. */
const VIA = 'via=console';

const iso = (ms: number | Date) => new Date(ms).toISOString();

function readInventory(dir: string): Inventory | undefined {
  if (!existsSync(storeLayout(dir).inventory)) return undefined;
  try {
    return new CaStore(dir).readInventory();
  } catch {
    return undefined; // an unreadable inventory is `broker pki`'s to report; the views go on without it
  }
}

function safeKeys(dir: string): KeyInfo[] {
  try {
    return listKeys(storeLayout(dir));
  } catch {
    return [];
  }
}

/** The CA passphrase for revocations from the console: admin.consolePassphraseFile, else enrollment.passphraseFile. */
function consolePassphrase(c: BrokerConfig): string | undefined {
  const file = c.admin.consolePassphraseFile ?? c.enrollment.passphraseFile;
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `cannot read the CA passphrase file ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  return text.split(/\r?\n/, 1)[0] || undefined;
}

/** The coded failure of an action: what went wrong in the store's words, with the console's code. */
function failure(action: ActionResult['action'], target: string, err: unknown): ActionResult {
  let code: ErrorCode = 'BRK_ERR_CONSOLE_ACTION_FAILED';
  if (isBrokerError(err, 'BRK_ERR_PKI_IDENTITY_NOT_FOUND') || isBrokerError(err, 'BRK_ERR_PKI_ALREADY_REVOKED') || isBrokerError(err, 'BRK_ERR_KEYS_NOT_FOUND') || isBrokerError(err, 'BRK_ERR_KEYS_ALREADY_REVOKED')) {
    code = 'BRK_ERR_CONSOLE_NOT_FOUND';
  } else if (isBrokerError(err, 'BRK_ERR_USAGE_PASSPHRASE_REQUIRED')) code = 'BRK_ERR_CONSOLE_REVOKE_DISABLED';
  else if (err instanceof BrokerError && err.code.startsWith('BRK_ERR_CONSOLE_')) code = err.code;
  return { ok: false, action, target, code, message: err instanceof Error ? err.message : String(err) };
}

function caTimeline(inv: Inventory, now: number): TimelineItem[] {
  const ca = inv.ca;
  const items: TimelineItem[] = [
    { kind: 'root', name: `${ca.name} root`, serial: ca.root.serial, notAfter: ca.root.notAfter, retiring: false },
    { kind: 'intermediate', name: `${ca.name} issuing CA`, serial: ca.intermediate.serial, notAfter: ca.intermediate.notAfter, retiring: false },
  ];
  // A replaced CA still trusted during its overlap: what matters is when it goes (retireAt).
  const until = (p: { notAfter: string; retireAt: string }) => (Date.parse(p.retireAt) < Date.parse(p.notAfter) ? p.retireAt : p.notAfter);
  for (const p of ca.previousRoots ?? []) if (!p.retired) items.push({ kind: 'root', name: `${ca.name} previous root`, serial: p.serial, notAfter: until(p), retiring: true });
  for (const p of ca.previous ?? []) if (!p.retired) items.push({ kind: 'intermediate', name: `${ca.name} previous issuing CA`, serial: p.serial, notAfter: until(p), retiring: true });
  const retiringIssuers = new Set((ca.previous ?? []).filter((p) => !p.retired).map((p) => p.serial));
  for (const cert of inv.certs) {
    if (statusOf(cert, now) !== 'valid') continue;
    items.push({ kind: cert.type, name: cert.name, serial: cert.serial, notAfter: cert.notAfter, retiring: retiringIssuers.has(cert.issuer) });
  }
  return items;
}

/** Without a store inventory (explicit tls.clientCa): the CA certificates of the loaded bundle. */
function bundleTimeline(m: TlsMaterial): TimelineItem[] {
  const items: TimelineItem[] = [];
  for (const block of m.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    const cert = new X509Certificate(block);
    items.push({ kind: cert.subject === cert.issuer ? 'root' : 'intermediate', name: cert.subject.replace(/\n/g, ', '), serial: cert.serialNumber.toLowerCase(), notAfter: iso(new Date(cert.validTo)), retiring: false });
  }
  return items;
}

export function createConsoleSource(d: ConsoleDeps): ConsoleSource {
  const act = (action: ActionResult['action'], target: string, r: ActionResult): ActionResult => {
    d.audit.info({ event: 'console', action, target, outcome: r.ok ? 'ok' : 'failed', ...(r.code ? { code: r.code } : {}) }, `console action ${action}: ${r.message}`);
    return r;
  };
  const afterReload = async (what: string): Promise<string> => {
    const r = await d.reload('console');
    return r.ok ? `${what}; reloaded` : `${what}; the reload was refused (${r.problems.join('; ')}), revocations applied anyway`;
  };

  return {
    async partners(): Promise<PartnersView> {
      const c = d.config();
      const now = Date.now();
      const inv = readInventory(c.pki.dir);
      const keys = safeKeys(c.pki.dir);
      const limits = compileLimits(c);
      const byName = new Map<string, { certs: CertRecord[]; keys: KeyInfo[] }>();
      const entry = (name: string) => {
        let e = byName.get(name);
        if (!e) byName.set(name, (e = { certs: [], keys: [] }));
        return e;
      };
      for (const cert of inv?.certs ?? []) if (cert.type === 'client') entry(cert.name).certs.push(cert);
      for (const k of keys) entry(k.name).keys.push(k);
      // One store read per partner (a round trip with Redis or --workers): all at once.
      const view = async ([name, e]: [string, { certs: CertRecord[]; keys: KeyInfo[] }]): Promise<PartnerView> => {
        const credentials: CredentialView[] = [
          ...e.certs.map((cert): CredentialView => ({ kind: 'certificate', id: cert.serial, status: statusOf(cert, now), notAfter: cert.notAfter, fingerprint: cert.fingerprint })),
          ...e.keys.map((k): CredentialView => ({ kind: k.kind, id: k.id, status: k.status, notAfter: k.expires ?? null })),
        ];
        const validCerts = e.certs.filter((cert) => statusOf(cert, now) === 'valid');
        const roles = [...new Set([...validCerts.flatMap((cert) => cert.roles), ...e.keys.filter((k) => k.status === 'valid').flatMap((k) => k.roles)])].sort();
        const newest = [...e.certs].sort((a, b) => Date.parse(b.notBefore) - Date.parse(a.notBefore));
        const contact = newest.find((cert) => cert.contact)?.contact ?? null;
        const counts = d.activity.of(name, e.certs.map((cert) => cert.serial));
        const check = limits.plan(name, roles, undefined).checks[0];
        const state = check ? await d.store.peekBucket?.(check.key) : undefined;
        const rateLimit =
          check && state
            ? { limit: check.spec.burst, remaining: Math.floor(Math.min(check.spec.burst, state.tokens + Math.max(0, now - state.at) * refillPerMs(check.spec))) }
            : null;
        let openConnections = 0;
        for (const cert of validCerts) openConnections += d.openConnectionsOf(cert.serial);
        return { name, roles, contact, credentials, lastSeen: counts.lastSeen, requests: counts.requests, refusals: counts.refusals, rateLimit, openConnections };
      };
      const partners = await Promise.all([...byName].sort(([a], [b]) => a.localeCompare(b)).map(view));
      return { generatedAt: iso(now), partners };
    },

    async certificates(): Promise<CertificatesView> {
      const c = d.config();
      const m = d.material();
      const now = Date.now();
      const inv = c.tls.clientCa ? undefined : readInventory(c.pki.dir);
      const timeline = inv ? caTimeline(inv, now) : bundleTimeline(m);
      // The server certificate from explicit files is not in the inventory.
      if (!inv || c.tls.server === undefined) timeline.push({ kind: 'server', name: m.server.subject, serial: null, notAfter: iso(m.server.notAfter), retiring: false });
      if (m.crlNextUpdate) timeline.push({ kind: 'crl', name: 'CRL next update', serial: null, notAfter: iso(m.crlNextUpdate), retiring: false });
      timeline.sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter));
      let invitations: CertificatesView['invitations'] = [];
      if (inv) {
        try {
          invitations = listInvitations(new CaStore(c.pki.dir), now)
            .filter((i) => i.status === 'open')
            .map((i) => ({ id: i.id, name: i.name, roles: [...i.roles], status: i.status, expiresAt: i.expires, contact: i.contact ?? null }));
        } catch {
          invitations = [];
        }
      }
      return { generatedAt: iso(now), timeline, invitations };
    },

    async live(): Promise<LiveView> {
      return {
        generatedAt: iso(Date.now()),
        intervalSeconds: INTERVAL_MS / 1000,
        series: d.activity.series(),
        refusals: d.activity.refusals(),
        bans: d.guard
          .bans()
          .sort((a, b) => a[1] - b[1])
          .map(([key, until]) => ({ key, until: iso(until) })),
      };
    },

    async changes(): Promise<ChangesView> {
      const l = storeLayout(d.config().pki.dir);
      const changes: ChangeView[] = d.activity.reloads().map((r) => ({ time: r.time, kind: 'reload', actor: r.trigger ?? null, detail: r.outcome === 'ok' ? 'ok' : `failed: ${r.problems.join('; ')}` }));
      let chain: ChangesView['chain'] = { ok: true, lines: 0, problem: null };
      if (existsSync(l.auditLog)) {
        const text = readFileSync(l.auditLog, 'utf8');
        try {
          const r = verifyAudit(text, readHead(l.auditHead), readPending(l.pending));
          chain = { ok: r.ok, lines: r.lines, problem: r.problem ?? null };
        } catch (err) {
          chain = { ok: false, lines: 0, problem: (err as Error).message };
        }
        const lines = text.split('\n').filter(Boolean).slice(-MAX_CHANGES);
        for (const line of lines) {
          try {
            const e = JSON.parse(line) as { time: string; op: string; outcome: string; name: string | null; serial: string | null; detail?: string; user?: string; code?: string };
            const detail = [e.outcome === 'ok' ? '' : `${e.outcome}${e.code ? ` ${e.code}` : ''}`, e.name ? `name=${e.name}` : '', e.serial ? `serial=${e.serial}` : '', e.detail ?? ''].filter(Boolean).join(' ');
            changes.push({ time: e.time, kind: e.op, actor: e.detail?.includes(VIA) ? 'console' : (e.user ?? null), detail });
          } catch {
            // a line that is not JSON: the chain status says so
          }
        }
      }
      changes.sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
      return { generatedAt: iso(Date.now()), chain, changes: changes.slice(0, MAX_CHANGES) };
    },

    async revokeCertificate(serial) {
      const action = 'revoke-certificate';
      const target = String(serial).toLowerCase();
      try {
        const c = d.config();
        const inv = readInventory(c.pki.dir);
        // Only one certificate by its serial: the store's revoke also takes a name (every certificate of it).
        const cert = inv?.certs.find((x) => x.serial === target);
        if (!cert) throw new BrokerError('BRK_ERR_CONSOLE_NOT_FOUND', `no certificate with serial "${target}" in the store`);
        if (cert.revokedAt) throw new BrokerError('BRK_ERR_CONSOLE_NOT_FOUND', `certificate ${target} (${cert.name}) is already revoked`);
        const passphrase = consolePassphrase(c);
        if (inv?.ca.encrypted && passphrase === undefined) {
          throw new BrokerError('BRK_ERR_CONSOLE_REVOKE_DISABLED', 'the CA key is encrypted and admin.consolePassphraseFile (or enrollment.passphraseFile) is not set');
        }
        await revoke(new CaStore(c.pki.dir), { target, reason: 'unspecified', ...(passphrase !== undefined ? { passphrase } : {}), via: 'console' });
        // An explicit CRL file is not the store's: the broker cannot know of this revocation until it is copied there.
        const explicit = c.tls.crl ? ` (the broker reads its CRL from tls.crl ${c.tls.crl}: copy the store's crl.pem there, then reload)` : '';
        return act(action, target, { ok: true, action, target, message: await afterReload(`certificate ${target} of ${cert.name} revoked${explicit}`) });
      } catch (err) {
        return act(action, target, failure(action, target, err));
      }
    },

    async revokeCredential(id) {
      const action = 'revoke-credential';
      const target = String(id);
      try {
        const dir = d.config().pki.dir;
        // Only one credential by its id: the store's revoke also takes a name (every credential of it).
        const key = safeKeys(dir).find((k) => k.id === target);
        if (!key) throw new BrokerError('BRK_ERR_CONSOLE_NOT_FOUND', `no credential with id "${target}" in keys.json`);
        if (key.status === 'revoked') throw new BrokerError('BRK_ERR_CONSOLE_NOT_FOUND', `credential ${target} (${key.name}) is already revoked`);
        await revokeKey(storeLayout(dir), target, { via: 'console' });
        return act(action, target, { ok: true, action, target, message: await afterReload(`${key.kind === 'basic' ? 'Basic credential' : 'API key'} ${target} of ${key.name} revoked`) });
      } catch (err) {
        return act(action, target, failure(action, target, err));
      }
    },

    async liftBan(key) {
      const action = 'lift-ban';
      const target = String(key);
      try {
        if (!d.guard.bans().some(([k]) => k === target)) throw new BrokerError('BRK_ERR_CONSOLE_NOT_FOUND', `no ban in force on "${target}"`);
        await d.guard.unban(target);
        return act(action, target, { ok: true, action, target, message: `ban on ${target} lifted` });
      } catch (err) {
        return act(action, target, failure(action, target, err));
      }
    },

    async reload() {
      const action = 'reload';
      try {
        const r = await d.reload('console');
        if (!r.ok) return act(action, '', { ok: false, action, target: '', code: 'BRK_ERR_CONSOLE_ACTION_FAILED', message: `reload refused, still serving the previous configuration: ${r.problems.join('; ')}` });
        return act(action, '', { ok: true, action, target: '', message: `reloaded (${r.revoked} certificates and ${r.revokedKeys} credentials newly revoked)` });
      } catch (err) {
        return act(action, '', failure(action, '', err));
      }
    },
  };
}
