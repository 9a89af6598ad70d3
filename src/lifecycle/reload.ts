/**
 * Reload: build the next generation off to the side (TLS material, credential verifiers, the
 * compiled pipeline), then swap everything at once; on any problem keep serving the current one and
 * say why. Revocation never waits for the rest: when a reload is refused (a broken config file, a
 * bad certificate), the revocation sources the current config names (the CRL bundle, the revoked
 * ids of keys.json) are still read and applied on their own. A CRL older than the loaded one is
 * refused (crl-order.ts). Reloads run one at a time.
 */
import type { Logger } from 'pino';
import { settingsOf, type BrokerConfig } from '../config/index.ts';
import { channels, type ReloadEvent } from '../channels.ts';
import { BrokerError } from '../errors.ts';
import { REVOKED_KEY_PREFIX, buildVerifiers, keysFile, usesKeys, type Verifiers } from '../auth/index.ts';
import { KeyRing } from '../auth/keyring.ts';
import { loadTlsMaterial, readCrlBundle, withCrl, type TlsMaterial } from '../tls/material.ts';
import { crlOrder } from '../tls/crl-order.ts';
import { secureContextOptions } from '../tls/options.ts';
import type { Generation } from '../pipeline.ts';

export interface ReloadResult {
  ok: boolean;
  problems: string[];
  /** Settings that changed but only take effect after a restart. */
  restartNeeded: string[];
  /** Certificates newly revoked by this reload (also when the rest of it was refused). */
  revoked: number;
  /** API keys and Basic credentials newly revoked by this reload (also when the rest was refused). */
  revokedKeys: number;
}

/** Top-level settings a reload cannot change in a running process. */
const RESTART_ONLY = ['listen', 'listenCertOptional', 'admin', 'log', 'workers', 'redis'] as const;

function restartNeeded(a: BrokerConfig, b: BrokerConfig): string[] {
  const changed: string[] = RESTART_ONLY.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (a.rateLimit.store !== b.rateLimit.store || a.rateLimit.failOpen !== b.rateLimit.failOpen) changed.push('rateLimit.store');
  if (a.limits.headerSize !== b.limits.headerSize) changed.push('limits.headerSize');
  if (JSON.stringify(a.forward?.listen) !== JSON.stringify(b.forward?.listen)) changed.push('forward.listen');
  // whether the forward listener requires a certificate is a server option, fixed at start
  if (settingsOf(a).forward?.certOptional !== settingsOf(b).forward?.certOptional) changed.push('forward.rules[].auth');
  return changed;
}

/** The state a reload replaces as one. */
export interface Current {
  config: BrokerConfig;
  material: TlsMaterial;
  verifiers: Verifiers;
  /**
   * `key:<id>` of every API key / Basic credential seen revoked in this process: the ring's, and
   * those applied while the rest of a reload was refused (the generation's ring does not know
   * them). Only grows: a key id is never reused, so a keys.json put back cannot revive one.
   */
  revokedKeys: ReadonlySet<string>;
}

/** The revoked-key set of `now` with `ids` (bare key ids) added, and which of them are new. */
function addKeys(now: ReadonlySet<string>, ids: readonly string[]): { set: ReadonlySet<string>; added: string[] } {
  const added = ids.filter((id) => !now.has(REVOKED_KEY_PREFIX + id));
  if (!added.length) return { set: now, added };
  const set = new Set(now);
  for (const id of added) set.add(REVOKED_KEY_PREFIX + id);
  return { set, added };
}

/** An error's message as problem lines. */
const linesOf = (err: unknown): string[] => ((err as Error).message ?? String(err)).split('\n').map((l) => l.trim()).filter(Boolean);

export interface ReloadDeps {
  current(): Current;
  /** Re-reads the config file when the reload names no config. */
  source?: (() => BrokerConfig) | undefined;
  compile(c: BrokerConfig, verifiers: Verifiers): Promise<Generation>;
  /** Puts the new TLS material into the listeners (throws if OpenSSL refuses it). */
  setSecureContext(options: ReturnType<typeof secureContextOptions>): void;
  /** Swaps everything in: generation, state, listener limits, guard settings, identity rules. */
  commit(next: Current, generation: Generation): void;
  /** Swaps in revocations only (new CRL material, revoked keys): same generation, same config. */
  applyRevocations(next: Current): void;
  /** Closes the open connections of these certificate serials and `key:<id>` credential ids. */
  closeConnectionsOf(ids: Iterable<string>): number;
  announce(ids: readonly string[]): Promise<void>;
  audit: Logger;
  error: Logger;
}

export function reloader(d: ReloadDeps): (next?: BrokerConfig, trigger?: string) => Promise<ReloadResult> {
  /** Tells the other replicas; a failure is logged, never turns an applied reload into a refused one. */
  const announce = async (ids: string[]): Promise<void> => {
    try {
      await d.announce(ids);
    } catch (err) {
      d.error.error({ event: 'revocation', err: { message: (err as Error).message } }, 'could not announce the revocations to other replicas');
    }
  };
  /**
   * The revocation sources of the current config, read and applied on their own: the CRL bundle
   * (checked as at start, against the loaded client CA bundle, and for rollback) and keys.json's
   * revoked ids. Says what it could not apply.
   */
  const revocationsOnly = async (trigger: string): Promise<{ serials: string[]; keys: string[]; problems: string[] }> => {
    const now = d.current();
    const problems: string[] = [];
    let material = now.material;
    const files = now.material.files;
    const { bundle, problems: crlProblems } = readCrlBundle(files.crl, { pem: now.material.ca, file: files.ca });
    if (crlProblems.length) problems.push(...crlProblems);
    else if (bundle.crl !== now.material.crl) {
      const order = crlOrder(now.material.crls, bundle.crls, files.crl);
      if (order.refused.length) problems.push(...order.refused);
      else {
        const next = withCrl(now.material, bundle);
        try {
          d.setSecureContext(secureContextOptions(next, now.config.tls));
          material = next;
          for (const r of order.renumbered) d.error.warn({ event: 'crl', file: files.crl }, r);
        } catch (err) {
          problems.push(`CRL: ${files.crl} was refused by OpenSSL (${(err as Error).message})`);
        }
      }
    }
    let keys: { set: ReadonlySet<string>; added: string[] } = { set: now.revokedKeys, added: [] };
    if (usesKeys(now.config)) {
      try {
        keys = addKeys(now.revokedKeys, KeyRing.revokedIn(keysFile(now.config)));
      } catch (err) {
        problems.push(...linesOf(err).map((l) => `keys: ${l}`));
      }
    }
    const serials = [...material.revoked].filter((s) => !now.material.revoked.has(s));
    if (material === now.material && !keys.added.length) return { serials, keys: [], problems };
    d.applyRevocations({ ...now, material, revokedKeys: keys.set });
    const closed = d.closeConnectionsOf([...serials, ...keys.added.map((id) => REVOKED_KEY_PREFIX + id)]);
    d.audit.info({ event: 'revocation', source: 'reload', outcome: 'applied', trigger, revoked: serials, revokedKeys: keys.added, closedConnections: closed }, 'revocations applied although the reload was refused');
    await announce([...serials, ...keys.added.map((id) => REVOKED_KEY_PREFIX + id)]);
    return { serials, keys: keys.added, problems };
  };

  const reload = async (next: BrokerConfig | undefined, trigger: string): Promise<ReloadResult> => {
    const now = d.current();
    let target = next ?? now.config;
    let restart: string[] = [];
    try {
      if (!next && d.source) target = d.source();
      restart = restartNeeded(now.config, target);
      const material = loadTlsMaterial(target);
      const order = crlOrder(now.material.crls, material.crls, material.files.crl);
      if (order.refused.length) throw new BrokerError('BRK_ERR_TLS_CRL_ROLLBACK', order.refused.join('\n'));
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
      const keys = addKeys(now.revokedKeys, verifiers.keys.revokedIds());
      d.commit({ config: target, material, verifiers, revokedKeys: keys.set }, generation);
      const prefixedKeys = keys.added.map((id) => REVOKED_KEY_PREFIX + id);
      const closed = d.closeConnectionsOf([...newlyRevoked, ...prefixedKeys]);
      await announce([...newlyRevoked, ...prefixedKeys]);
      d.audit.info({ event: 'reload', outcome: 'ok', trigger, routes: target.routes.length, revoked: newlyRevoked, revokedKeys: keys.added, closedConnections: closed, restartNeeded: restart }, 'configuration and certificates reloaded');
      for (const r of order.renumbered) d.error.warn({ event: 'crl', file: material.files.crl }, r);
      if (restart.length) d.error.warn({ event: 'reload', restartNeeded: restart }, `changes to ${restart.join(', ')} take effect after a restart`);
      channels.reload.publish({ outcome: 'ok', trigger } satisfies ReloadEvent);
      return { ok: true, problems: [], restartNeeded: restart, revoked: newlyRevoked.length, revokedKeys: keys.added.length };
    } catch (err) {
      const problems = linesOf(err);
      const code = (err as { code?: unknown }).code;
      d.error.error({ event: 'reload', outcome: 'failed', trigger, ...(typeof code === 'string' ? { code } : {}), problems }, 'reload refused; still serving the previous configuration');
      d.audit.info({ event: 'reload', outcome: 'failed', trigger, problems }, 'reload refused');
      channels.reload.publish({ outcome: 'failed', trigger, code: typeof code === 'string' ? code : undefined, problems } satisfies ReloadEvent);
      // Revocation never waits for config: apply what the current config's revocation sources say.
      const applied = await revocationsOnly(trigger).catch((e: unknown) => ({ serials: [], keys: [], problems: linesOf(e).map((l) => `revocations: ${l}`) }));
      const more = applied.problems.filter((p) => !problems.includes(p));
      if (more.length) d.error.error({ event: 'revocation', outcome: 'failed', trigger, problems: more }, 'revocation sources not applied; still serving the loaded ones');
      problems.push(...more);
      return { ok: false, problems, restartNeeded: restart, revoked: applied.serials.length, revokedKeys: applied.keys.length };
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
