/**
 * Revocation fan-out between replicas: what this replica's CRL says, plus what other replicas
 * announced through the shared store (certificate serials, and `key:<id>` for API keys and Basic
 * credentials). Heard revocations close the open connections and WebSockets of those credentials at once.
 */
import type { Logger } from 'pino';
import { REVOKED_KEY_PREFIX } from '../auth/index.ts';
import type { SharedStore } from '../ratelimit/index.ts';

export interface Revocations {
  /** Heard from other replicas only (the handshake's CRL may not know them yet). */
  heard(serial: string): boolean;
  /** Tells the other replicas. */
  announce(ids: readonly string[]): Promise<void>;
}

export async function revocationFanOut(store: SharedStore, audit: Logger, closeConnectionsOf: (serials: Iterable<string>) => number): Promise<Revocations> {
  const remote = new Set<string>();
  store.onRevoked?.((heard) => {
    for (const s of heard) remote.add(s);
    const serials = heard.filter((s) => !s.startsWith(REVOKED_KEY_PREFIX));
    const keys = heard.filter((s) => s.startsWith(REVOKED_KEY_PREFIX)).map((s) => s.slice(REVOKED_KEY_PREFIX.length));
    const closed = closeConnectionsOf(heard);
    audit.info({ event: 'revocation', source: 'replica', serials, ...(keys.length ? { keys } : {}), closedConnections: closed }, 'revocations heard from another replica');
  });
  for (const s of (await store.revokedSerials?.()) ?? []) remote.add(s);
  return {
    heard: (serial) => remote.has(serial),
    announce: async (ids) => {
      if (ids.length) await store.publishRevoked?.([...ids]);
    },
  };
}
