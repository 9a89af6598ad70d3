/**
 * Reload: build the next generation off to the side (TLS material, credential verifiers, the
 * compiled pipeline), then swap everything at once; on any problem keep serving the current one and
 * say why. Reloads run one at a time.
 */
import type { Logger } from 'pino';
import type { BrokerConfig } from '../config/index.ts';
import { channels } from '../channels.ts';
import { REVOKED_KEY_PREFIX, buildVerifiers, type Verifiers } from '../auth/index.ts';
import { loadTlsMaterial, type TlsMaterial } from '../tls/material.ts';
import { secureContextOptions } from '../tls/options.ts';
import type { Generation } from '../pipeline.ts';

export interface ReloadResult {
  ok: boolean;
  problems: string[];
  /** Settings that changed but only take effect after a restart. */
  restartNeeded: string[];
  revoked: number;
}

/** Top-level settings a reload cannot change in a running process. */
const RESTART_ONLY = ['listen', 'listenCertOptional', 'admin', 'log', 'workers', 'redis'] as const;

function restartNeeded(a: BrokerConfig, b: BrokerConfig): string[] {
  const changed: string[] = RESTART_ONLY.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (a.rateLimit.store !== b.rateLimit.store || a.rateLimit.failOpen !== b.rateLimit.failOpen) changed.push('rateLimit.store');
  if (a.limits.headerSize !== b.limits.headerSize) changed.push('limits.headerSize');
  return changed;
}

/** The state a reload replaces as one. */
export interface Current {
  config: BrokerConfig;
  material: TlsMaterial;
  verifiers: Verifiers;
}

export interface ReloadDeps {
  current(): Current;
  /** Re-reads the config file when the reload names no config. */
  source?: (() => BrokerConfig) | undefined;
  compile(c: BrokerConfig, verifiers: Verifiers): Promise<Generation>;
  /** Puts the new TLS material into the listeners (throws if OpenSSL refuses it). */
  setSecureContext(options: ReturnType<typeof secureContextOptions>): void;
  /** Swaps everything in: generation, state, listener limits, guard settings, identity rules. */
  commit(next: Current, generation: Generation): void;
  closeConnectionsOf(serials: Iterable<string>): number;
  announce(ids: readonly string[]): Promise<void>;
  audit: Logger;
  error: Logger;
}

export function reloader(d: ReloadDeps): (next?: BrokerConfig, trigger?: string) => Promise<ReloadResult> {
  const reload = async (next: BrokerConfig | undefined, trigger: string): Promise<ReloadResult> => {
    const now = d.current();
    let target = next ?? now.config;
    let restart: string[] = [];
    try {
      if (!next && d.source) target = d.source();
      restart = restartNeeded(now.config, target);
      const material = loadTlsMaterial(target);
      const verifiers = buildVerifiers(target, { config: now.config, verifiers: now.verifiers });
      const generation = await d.compile(target, verifiers);
      try {
        // setSecureContext replaces every option: hand it the full set.
        d.setSecureContext(secureContextOptions(material, target.tls));
      } catch (err) {
        await generation.close().catch(() => {});
        throw err;
      }
      const newlyRevoked = [...material.revoked].filter((s) => !now.material.revoked.has(s));
      const wasRevoked = new Set(now.verifiers.keys.revokedIds());
      const newlyRevokedKeys = verifiers.keys.revokedIds().filter((id) => !wasRevoked.has(id));
      d.commit({ config: target, material, verifiers }, generation);
      const closed = d.closeConnectionsOf([...newlyRevoked, ...newlyRevokedKeys.map((id) => REVOKED_KEY_PREFIX + id)]);
      await d.announce([...newlyRevoked, ...newlyRevokedKeys.map((id) => REVOKED_KEY_PREFIX + id)]);
      d.audit.info({ event: 'reload', outcome: 'ok', trigger, routes: target.routes.length, revoked: newlyRevoked, revokedKeys: newlyRevokedKeys, closedConnections: closed, restartNeeded: restart }, 'configuration and certificates reloaded');
      if (restart.length) d.error.warn({ event: 'reload', restartNeeded: restart }, `changes to ${restart.join(', ')} take effect after a restart`);
      channels.reload.publish({ outcome: 'ok' });
      return { ok: true, problems: [], restartNeeded: restart, revoked: newlyRevoked.length };
    } catch (err) {
      const problems = ((err as Error).message ?? String(err)).split('\n').map((l) => l.trim()).filter(Boolean);
      d.error.error({ event: 'reload', outcome: 'failed', trigger, problems }, 'reload refused; still serving the previous configuration');
      d.audit.info({ event: 'reload', outcome: 'failed', trigger, problems }, 'reload refused');
      channels.reload.publish({ outcome: 'failed' });
      return { ok: false, problems, restartNeeded: restart, revoked: 0 };
    }
  };
  let reloading: Promise<ReloadResult> | undefined;
  return (next, trigger = 'api') => {
    const run = (reloading ?? Promise.resolve()).then(() => reload(next, trigger));
    reloading = run.finally(() => {
      if (reloading === run) reloading = undefined;
    }) as Promise<ReloadResult>;
    return run;
  };
}
