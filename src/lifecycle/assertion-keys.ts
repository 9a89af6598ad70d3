/**
 * The identity assertion keys of a running broker: which key the generation signs with (a new
 * signer per generation, so a rotated store key takes effect at the next reload) and which public
 * keys are published (the admin JWKS endpoint, `assertion.jwksFile`). The published set also
 * changes by itself when a replaced key passes its retireAt (an unref'd timer re-reads the store).
 */
import type { Logger } from 'pino';
import { settingsOf, type BrokerConfig } from '../config/index.ts';
import { BrokerError, isBrokerError } from '../errors.ts';
import { jwksText, loadAssertionKeys, usesAssertions, type AssertionKeys, type PublishedJwk } from '../pki/assertion.ts';
import { PUBLIC_MODE, replaceFile } from '../pki/files.ts';
import { assertionSigner, type AssertionSigner } from '../proxy/assertion.ts';

/** What one config generation needs: the signer (when a route sends jwt) and the keys to publish. */
export interface PreparedAssertions {
  keys: AssertionKeys | undefined;
  signer: AssertionSigner | undefined;
}

export interface AssertionKeeper {
  /** Loads the store's keys for `c`; throws BRK_ERR_ASSERTION_KEY_MISSING / _KEYS_CORRUPT when a jwt route cannot be served. */
  prepare(c: BrokerConfig): PreparedAssertions;
  /** Publishes a prepared set (it belongs to the generation just swapped in). `strict`: a jwksFile write failure throws (start). */
  apply(c: BrokerConfig, p: PreparedAssertions, o?: { strict?: boolean }): void;
  /** The JWKS published now. */
  jwks(): { keys: readonly PublishedJwk[] };
  close(): void;
}

/** setTimeout's longest delay; a later retireAt is reached in steps. */
const MAX_DELAY = 2_147_000_000;

export function assertionKeeper(log: Logger): AssertionKeeper {
  let published: { keys: readonly PublishedJwk[] } = { keys: [] };
  let timer: NodeJS.Timeout | undefined;
  let config: BrokerConfig | undefined;

  const writeFile = (c: BrokerConfig, strict: boolean) => {
    const file = c.assertion.jwksFile;
    if (file === undefined) return;
    try {
      replaceFile(file, jwksText(published), PUBLIC_MODE);
    } catch (err) {
      if (strict) throw err;
      log.error({ event: 'assertion', file, err: { message: (err as Error).message } }, 'could not write assertion.jwksFile; upstreams reading it see the previous keys');
    }
  };

  const schedule = (nextRetireAt: number | undefined) => {
    clearTimeout(timer);
    timer = undefined;
    if (nextRetireAt === undefined) return;
    timer = setTimeout(retire, Math.min(Math.max(nextRetireAt - Date.now(), 0) + 50, MAX_DELAY));
    timer.unref();
  };

  /** A replaced key reached its retireAt (or a long wait's step ended): publish what the store says now. */
  function retire(): void {
    timer = undefined;
    const c = config;
    if (!c) return;
    let keys: AssertionKeys;
    try {
      keys = loadAssertionKeys(c.pki.dir);
    } catch (err) {
      log.error({ event: 'assertion', err: { message: (err as Error).message } }, 'could not re-read the assertion keys to retire a replaced one; still publishing it');
      return;
    }
    published = keys.jwks;
    writeFile(c, false);
    schedule(keys.nextRetireAt);
    log.info({ event: 'assertion', action: 'retire', published: published.keys.map((k) => k.kid) }, 'a replaced identity assertion key was retired from the JWKS');
  }

  return {
    prepare(c) {
      const needed = usesAssertions(c);
      let keys: AssertionKeys | undefined;
      try {
        keys = loadAssertionKeys(c.pki.dir);
      } catch (err) {
        if (!needed) return { keys: undefined, signer: undefined };
        const routes = c.routes.filter((r) => r.identity?.includes('jwt')).map((r) => r.name);
        if (isBrokerError(err, 'BRK_ERR_ASSERTION_KEY_MISSING')) throw new BrokerError('BRK_ERR_ASSERTION_KEY_MISSING', `route${routes.length === 1 ? '' : 's'} ${routes.join(', ')} send the jwt identity format, but ${err.message}`);
        throw err;
      }
      const signer = needed ? assertionSigner(keys.current, { issuer: c.assertion.issuer, ttlMs: settingsOf(c).assertionTtlMs }, keys.next) : undefined;
      return { keys, signer };
    },
    apply(c, p, o = {}) {
      config = c;
      published = p.keys?.jwks ?? { keys: [] };
      writeFile(c, o.strict === true);
      schedule(p.keys?.nextRetireAt);
    },
    jwks: () => published,
    close() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
