/**
 * A ConsoleSource with fixed data for the console page tests, until (and besides) the broker's own
 * source: it answers the views it was given and records every action call. Actions can be given
 * real effects (`effects`, e.g. revoke in the CA store and reload the broker) so a test sees them
 * on the next handshake; the recorded views are updated as the real source's would be.
 */
import type { ActionResult, CertificatesView, ChangesView, ConsoleSource, LiveView, PartnersView } from '../../src/console/model.ts';

export interface ConsoleData {
  partners: PartnersView;
  certificates: CertificatesView;
  live: LiveView;
  changes: ChangesView;
}

export interface FakeConsole extends ConsoleSource {
  data: ConsoleData;
  calls: Array<{ action: ActionResult['action']; target: string }>;
}

type Effects = Partial<Record<ActionResult['action'], (target: string) => Promise<void>>>;

export function fakeConsoleSource(data: ConsoleData, effects: Effects = {}): FakeConsole {
  const calls: FakeConsole['calls'] = [];
  const act = async (action: ActionResult['action'], target: string, apply: () => boolean): Promise<ActionResult> => {
    calls.push({ action, target });
    if (!apply()) return { ok: false, action, target, message: `${target} not found` };
    await effects[action]?.(target);
    return { ok: true, action, target, message: `${action} ${target}: done` };
  };
  const revoke = (kind: (k: string) => boolean) => (id: string) => () => {
    const c = data.partners.partners.flatMap((p) => p.credentials).find((x) => x.id === id && kind(x.kind) && x.status === 'valid');
    if (c) c.status = 'revoked';
    return c !== undefined;
  };
  const copy = <T>(v: T): Promise<T> => Promise.resolve(structuredClone(v));
  return {
    data,
    calls,
    partners: () => copy(data.partners),
    certificates: () => copy(data.certificates),
    live: () => copy(data.live),
    changes: () => copy(data.changes),
    revokeCertificate: (serial) => act('revoke-certificate', serial, revoke((k) => k === 'certificate')(serial)),
    revokeCredential: (id) => act('revoke-credential', id, revoke((k) => k !== 'certificate')(id)),
    liftBan: (key) =>
      act('lift-ban', key, () => {
        const before = data.live.bans.length;
        data.live.bans = data.live.bans.filter((b) => b.key !== key);
        return data.live.bans.length < before;
      }),
    reload: () => act('reload', '', () => true),
  };
}

/** A plausible set of views around the given identities (name, roles, serial, notAfter). */
export function consoleData(ids: Array<{ name: string; roles: string[]; serial: string; notAfter: string; requests: number; refusals: number }>, now = new Date()): ConsoleData {
  const at = now.toISOString();
  const minus = (s: number) => new Date(now.getTime() - s * 1000).toISOString();
  const series = Array.from({ length: 30 }, (_, i) => ({
    t: minus((30 - i) * 10),
    requestsPerSecond: [0.2, 0.5, 1.1, 1.4, 0.9][i % 5] as number,
    errorsPerSecond: i % 7 === 3 ? 0.2 : 0,
    p50Ms: i % 11 === 5 ? null : 3 + (i % 4),
    p99Ms: i % 11 === 5 ? null : 12 + ((i * 7) % 20),
    handshakesPerSecond: i % 3 === 0 ? 0.1 : 0,
  }));
  return {
    partners: {
      generatedAt: at,
      partners: ids.map((p, i) => ({
        name: p.name,
        roles: p.roles,
        contact: `ops@${p.name}.example`,
        credentials: [
          { kind: 'certificate', id: p.serial, status: 'valid', notAfter: p.notAfter, fingerprint: 'ab'.repeat(32) },
          ...(i === 0 ? [{ kind: 'apiKey' as const, id: `k_${p.name}1`, status: 'valid' as const, notAfter: null }] : []),
        ],
        lastSeen: p.requests > 0 ? minus(5) : null,
        requests: { hour: p.requests, day: p.requests },
        refusals: { hour: p.refusals, day: p.refusals },
        rateLimit: p.requests > 0 ? { limit: 100, remaining: 100 - p.requests } : null,
        openConnections: i === 0 ? 1 : 0,
      })),
    },
    certificates: {
      generatedAt: at,
      timeline: [
        ...ids.map((p) => ({ kind: 'client' as const, name: p.name, serial: p.serial, notAfter: p.notAfter, retiring: false })),
        { kind: 'crl' as const, name: 'crl', serial: null, notAfter: new Date(now.getTime() + 7 * 86_400_000).toISOString(), retiring: false },
        { kind: 'intermediate' as const, name: 'Test CA Issuing', serial: '0a1b2c', notAfter: new Date(now.getTime() + 900 * 86_400_000).toISOString(), retiring: false },
      ].sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter)),
      invitations: [{ id: 'inv_7f3a', name: 'carol', roles: ['user'], status: 'pending', expiresAt: new Date(now.getTime() + 3 * 86_400_000).toISOString(), contact: 'it@carol.example' }],
    },
    live: {
      generatedAt: at,
      intervalSeconds: 10,
      series,
      refusals: [{ time: minus(20), reqId: 'r-1', principal: null, remoteIp: '127.0.0.1', code: 'BRK_ERR_TLS_CLIENT_CERT_REFUSED', reason: 'unknown CA', certificate: { subject: 'CN=mallory', serial: '0badc0de', fingerprint: null } }],
      bans: [{ key: 'ip:192.0.2.7', until: new Date(now.getTime() + 600_000).toISOString() }],
    },
    changes: {
      generatedAt: at,
      chain: { ok: true, lines: 2 + ids.length, problem: null },
      changes: ids.map((p) => ({ time: minus(60), kind: 'issue', actor: 'ops', detail: `issued ${p.name} (${p.serial})` })),
    },
  };
}
