/**
 * `broker pki readiness`: who would break when an issuing CA in its overlap retires. The auth log
 * says which certificates connect (handshake lines with outcome ok, serial, fingerprint, time); the
 * inventory says which issuing CA signed each and which of those CAs a rotation is retiring
 * (`ca.previous` entries not yet retired). A certificate from a retiring CA seen in the log is a
 * partner still to move; its identity has "moved on" when it was seen later with a certificate from
 * a CA that stays.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { BrokerError } from '../errors.ts';
import type { CertRecord, Inventory } from './inventory.ts';

export interface RetiringCa {
  serial: string;
  retireAt: string;
}

export interface ReadinessRow {
  identity: string;
  serial: string;
  /** Serial of the retiring issuing CA that signed it, and when it retires. */
  issuer: string;
  retireAt: string;
  notAfter: string;
  /** Last successful handshake with this certificate in the logs read, and how many there were. */
  lastSeen: string;
  connections: number;
  /** The identity holds a valid certificate from an issuing CA that stays (renewed, or issued anew). */
  renewed: boolean;
  /** The identity was seen later with such a certificate: it has moved on, this row is history. */
  movedOn: boolean;
  contact: string | null;
}

export interface ReadinessReport {
  retiring: RetiringCa[];
  /** Certificates from a retiring CA seen in the logs, most recently seen first. */
  identities: ReadinessRow[];
  /** Lines read from the logs (all of them, not only handshakes). */
  linesRead: number;
}

/** What readiness needs of one auth-log line. */
export interface Sighting {
  serial?: string;
  fingerprint?: string;
  time: number;
}

const normHex = (s: string) => s.toLowerCase().replace(/:/g, '').replace(/^0+(?=.)/, '');

/** A successful certificate handshake in one auth-log line (pino JSON), or undefined. */
export function sightingOf(line: string): Sighting | undefined {
  if (!line.includes('"handshake"')) return undefined;
  let l: Record<string, unknown>;
  try {
    l = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (l.event !== 'handshake' || l.outcome !== 'ok' || (typeof l.serial !== 'string' && typeof l.fingerprint !== 'string')) return undefined;
  const time = typeof l.time === 'number' ? l.time : typeof l.time === 'string' ? Date.parse(l.time) : Number.NaN;
  if (Number.isNaN(time)) return undefined;
  return { ...(typeof l.serial === 'string' ? { serial: normHex(l.serial) } : {}), ...(typeof l.fingerprint === 'string' ? { fingerprint: l.fingerprint.toLowerCase() } : {}), time };
}

/** Reads every successful certificate handshake of the given auth-log files. */
export async function readSightings(files: readonly string[]): Promise<{ sightings: Sighting[]; lines: number }> {
  const sightings: Sighting[] = [];
  let lines = 0;
  for (const file of files) {
    // "-": standard input (e.g. journalctl -u broker -o cat | broker pki readiness --auth-log -)
    const input: NodeJS.ReadableStream & { destroy(): void } = file === '-' ? process.stdin.setEncoding('utf8') : createReadStream(file, { encoding: 'utf8' });
    const opened =
      file === '-'
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            input.once('open', () => resolve());
            input.once('error', reject);
          });
    try {
      await opened;
      for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
        lines++;
        const s = sightingOf(line);
        if (s) sightings.push(s);
      }
    } catch (cause) {
      throw new BrokerError('BRK_ERR_PKI_FILE_READ', `cannot read the auth log ${file} (${(cause as Error).message})`, { cause });
    } finally {
      if (file !== '-') input.destroy();
    }
  }
  return { sightings, lines };
}

/** The report: valid (unrevoked, unexpired) certificates from retiring issuing CAs that the logs saw connect. */
export function rotationReadiness(inv: Inventory, sightings: readonly Sighting[], o: { lines?: number; now?: number } = {}): ReadinessReport {
  const now = o.now ?? Date.now();
  const retiring = (inv.ca.previous ?? []).filter((p) => !p.retired).map((p) => ({ serial: p.serial, retireAt: p.retireAt }));
  const retiringBy = new Map(retiring.map((r) => [r.serial, r]));
  const bySerial = new Map<string, CertRecord>();
  const byFingerprint = new Map<string, CertRecord>();
  for (const c of inv.certs) {
    if (c.type !== 'client' || c.revokedAt || Date.parse(c.notAfter) <= now) continue; // those break already
    bySerial.set(normHex(c.serial), c);
    byFingerprint.set(c.fingerprint, c);
  }
  const seen = new Map<CertRecord, { last: number; n: number }>();
  /** Per identity: the last time it connected with a certificate from a CA that stays. */
  const lastOnStaying = new Map<string, number>();
  for (const s of sightings) {
    const rec = (s.serial !== undefined ? bySerial.get(s.serial) : undefined) ?? (s.fingerprint !== undefined ? byFingerprint.get(s.fingerprint) : undefined);
    if (!rec) continue;
    if (retiringBy.has(rec.issuer)) {
      const e = seen.get(rec);
      if (!e) seen.set(rec, { last: s.time, n: 1 });
      else {
        e.n++;
        if (s.time > e.last) e.last = s.time;
      }
    } else if ((lastOnStaying.get(rec.name) ?? -1) < s.time) {
      lastOnStaying.set(rec.name, s.time);
    }
  }
  const renewed = new Set(inv.certs.filter((c) => c.type === 'client' && !c.revokedAt && Date.parse(c.notAfter) > now && !retiringBy.has(c.issuer)).map((c) => c.name));
  const identities = [...seen]
    .map(([rec, e]) => {
      const ca = retiringBy.get(rec.issuer) as RetiringCa;
      return {
        identity: rec.name,
        serial: rec.serial,
        issuer: ca.serial,
        retireAt: ca.retireAt,
        notAfter: rec.notAfter,
        lastSeen: new Date(e.last).toISOString(),
        connections: e.n,
        renewed: renewed.has(rec.name),
        movedOn: (lastOnStaying.get(rec.name) ?? -1) > e.last,
        contact: rec.contact ?? null,
      };
    })
    .sort((a, b) => Number(a.movedOn) - Number(b.movedOn) || b.lastSeen.localeCompare(a.lastSeen) || a.identity.localeCompare(b.identity));
  return { retiring, identities, linesRead: o.lines ?? sightings.length };
}
