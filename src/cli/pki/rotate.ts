import type { Command } from 'commander';
import { caPassphrase, collect, examples, openStore, rootPassphrase, storeOptions, ttl, type StoreOptions } from './common.ts';
import { printIssued } from './handout.ts';

interface Opts extends StoreOptions {
  ttl?: string;
  dryRun?: boolean;
  overlap?: string;
  publishAhead?: string;
  alg?: string;
  dns?: string[];
  ip?: string[];
}

/** "DNS:a, IP:b" as the plan prints a certificate's names. */
function sanList(dns: readonly string[] = [], ip: readonly string[] = []): string {
  return [...dns.map((d) => `DNS:${d}`), ...ip.map((a) => `IP:${a}`)].join(', ');
}

/** Where a plan is printed: stdout, or stderr with --json so that stdout stays one JSON document. */
function planPrinter(opts: Opts, printLines: (...l: string[]) => void): (...l: string[]) => void {
  return opts.json ? (...l: string[]) => void process.stderr.write(`${l.join('\n')}\n`) : printLines;
}

export function register(pki: Command): void {
  const rotate = pki.command('rotate').summary('planned key rotation').description('Rotate keys with a plan printed before acting; --dry-run prints the plan only.');
  storeOptions(rotate.command('server'), { json: true })
    .summary('new key and certificate for a broker server certificate (optionally with new names)')
    .description('Issue a new key and certificate for server certificate NAME and replace servers/NAME.{crt,key} in the store. Without --dns/--ip it keeps its names and the old certificate stays valid until it expires. With --dns/--ip the new certificate has exactly the names given (repeat the ones to keep), and the old certificate is revoked (superseded) once the new files are in place. A running broker picks it up by itself (file watching), or on SIGHUP / POST /reload; connections already open keep their old session.')
    .argument('<name>', 'server certificate name (tls.server in the config)')
    .option('--dns <host>', 'DNS name of the new certificate (repeat for more); with --ip, replaces all its names', collect)
    .option('--ip <addr>', 'IP address of the new certificate (repeat for more); with --dns, replaces all its names', collect)
    .option('--ttl <duration>', 'lifetime of the new certificate', '90d')
    .option('--dry-run', 'print the plan and change nothing')
    .addHelpText('after', examples('broker pki rotate server broker --dry-run', 'broker pki rotate server broker --ttl 60d', 'broker pki rotate server broker --dns broker.acme.example --dns broker.internal --ip 10.0.0.5'))
    .action(async (name: string, opts: Opts) => {
      const [{ renew }, { revoke }, { statusOf }, { BrokerError }, out] = await Promise.all([import('../../pki/issue.ts'), import('../../pki/revoke.ts'), import('../../pki/inventory.ts'), import('../../errors.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const current = store
        .readInventory()
        .certs.filter((c) => c.name === name && c.type === 'server' && statusOf(c) === 'valid')
        .sort((a, b) => Date.parse(b.notAfter) - Date.parse(a.notAfter))[0];
      if (!current) throw new BrokerError('BRK_ERR_PKI_IDENTITY_NOT_FOUND', `no valid server certificate named ${name}`);
      const ttlMs = await ttl(opts.ttl, 90 * 86_400_000);
      // new names replace the old ones as a whole: a name left out must stop being served
      const sans = opts.dns || opts.ip ? { dns: opts.dns ?? [], ip: opts.ip ?? [] } : undefined;
      const say = planPrinter(opts, out.printLines);
      say(
        `plan: rotate server certificate ${name}`,
        `  1. new key and certificate for ${sans ? sanList(sans.dns, sans.ip) : sanList(current.dns, current.ip)}, valid ${out.days(ttlMs)}${sans ? ` (now ${sanList(current.dns, current.ip)})` : ''}`,
        `  2. replace ${store.layout.serverCert(name)} and ${store.layout.serverKey(name)} (atomically)`,
        sans
          ? `  3. running brokers reload it (file watching, SIGHUP or POST /reload); then the old certificate (serial ${current.serial}) is revoked (superseded) and the CRLs are republished`
          : `  3. running brokers reload it (file watching, SIGHUP or POST /reload); the old certificate (serial ${current.serial}) stays valid until ${current.notAfter} and is not revoked`,
      );
      if (opts.dryRun) return say('dry run: nothing changed');
      const passphrase = await caPassphrase(store, opts);
      const secret = passphrase === undefined ? {} : { passphrase };
      const r = await renew(store, { name, ttlMs, ...(sans ? { sans } : {}), ...secret });
      // after the swap: the store already serves the new names, so revoking cannot leave the broker without a certificate
      if (sans) await revoke(store, { target: current.serial, reason: 'superseded', ...secret });
      await printIssued(r, opts);
    });

  storeOptions(rotate.command('intermediate'), { json: true, root: true })
    .summary('a new issuing CA, with an overlap during which the old one is still trusted')
    .description('Create a new issuing CA signed by the root. New certificates come from it at once; during the overlap the broker trusts certificates from the old one too (chain.pem and the CRL bundle carry both), so they keep working while "broker pki renew" replaces them ("broker pki list" shows ISSUER previous). When the overlap ends, the next CRL publication ("broker pki crl", run it from a timer) retires the old one: out of the chain, revoked in the root\'s CRL.')
    .option('--overlap <duration>', 'how long the old issuing CA stays trusted', '7d')
    .option('--dry-run', 'print the plan and change nothing')
    .addHelpText('after', examples('broker pki rotate intermediate --overlap 14d --dry-run', 'broker pki rotate intermediate --overlap 7d && broker pki renew --expiring 10000d'))
    .action(async (opts: Opts) => {
      const [{ planIntermediateRotation, rotateIntermediate }, { parseDuration }, out] = await Promise.all([import('../../pki/rotate.ts'), import('../../config/duration.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const overlapMs = parseDuration(opts.overlap ?? '7d', '--overlap');
      const plan = planIntermediateRotation(store, overlapMs);
      const say = planPrinter(opts, out.printLines);
      say(
        `plan: rotate the issuing CA (now serial ${plan.from.serial})`,
        '  1. a new issuing CA signed by the root; new certificates come from it at once',
        `  2. the old one stays trusted until ${plan.retireAt}; chain.pem and crl.pem carry both (brokers reload them)`,
        `  3. ${plan.affected.length} valid certificate${plan.affected.length === 1 ? '' : 's'} from the old one must be renewed before then${plan.affected.length ? `: ${plan.affected.map((a) => a.name).join(', ')}` : ''}`,
        '  4. after the overlap, "broker pki crl" retires the old one (out of the chain, revoked in the root CRL)',
      );
      if (opts.dryRun) return say('dry run: nothing changed');
      const passphrase = await caPassphrase(store, opts);
      const rootPass = await rootPassphrase(store, opts);
      const r = await rotateIntermediate(store, { overlapMs, ...(passphrase === undefined ? {} : { passphrase }), ...(rootPass === undefined ? {} : { rootPassphrase: rootPass }) });
      if (opts.json) return out.printJson(r);
      out.printLines(`new issuing CA serial ${r.serial} (until ${r.notAfter}); ${r.previous} trusted until ${r.retireAt}`);
    });

  storeOptions(rotate.command('root'), { json: true, root: true })
    .summary('root rollover: a new root and issuing CA, cross-signed, with an overlap')
    .description('Create a new root, a new issuing CA under it, and a cross certificate (the new issuing CA signed by the old root). During the overlap ca.crt and chain.pem carry both roots (each with its CRL), new certificates come from the new issuing CA, and server chains include the cross certificate so clients that trust only the old root keep working. Hand the new ca.crt to partners and rotate the server certificate (broker pki rotate server) during the overlap. After it, "broker pki crl" retires the old root and the issuing CA under it.')
    .option('--overlap <duration>', 'how long the old root stays trusted', '30d')
    .option('--dry-run', 'print the plan and change nothing')
    .addHelpText('after', examples('broker pki rotate root --overlap 30d --dry-run', 'broker pki rotate root --overlap 60d && broker pki rotate server broker'))
    .action(async (opts: Opts) => {
      const [{ planIntermediateRotation, rotateRoot }, { parseDuration }, out] = await Promise.all([import('../../pki/rotate.ts'), import('../../config/duration.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const overlapMs = parseDuration(opts.overlap ?? '30d', '--overlap');
      const plan = planIntermediateRotation(store, overlapMs);
      const say = planPrinter(opts, out.printLines);
      say(
        `plan: root rollover (the issuing CA now is serial ${plan.from.serial})`,
        '  1. a new root and a new issuing CA under it; new certificates come from the new issuing CA at once',
        '  2. a cross certificate (the new issuing CA signed by the old root) goes into server chains, so clients trusting only the old root keep working',
        `  3. until ${plan.retireAt}: ca.crt and chain.pem carry both roots; hand the new ca.crt to partners, then "broker pki rotate server NAME"`,
        `  4. ${plan.affected.length} valid certificate${plan.affected.length === 1 ? '' : 's'} from the old issuing CA must be renewed before then${plan.affected.length ? `: ${plan.affected.map((a) => a.name).join(', ')}` : ''}`,
        '  5. after the overlap, "broker pki crl" retires the old root and the issuing CA under it',
      );
      if (opts.dryRun) return say('dry run: nothing changed');
      const passphrase = await caPassphrase(store, opts);
      const rootPass = await rootPassphrase(store, opts);
      const r = await rotateRoot(store, { overlapMs, ...(passphrase === undefined ? {} : { passphrase }), ...(rootPass === undefined ? {} : { rootPassphrase: rootPass }) });
      if (opts.json) return out.printJson(r);
      out.printLines(`new root serial ${r.root} with issuing CA ${r.intermediate} (cross certificate ${r.cross}); the old root ${r.previousRoot} is trusted until ${r.retireAt}`);
    });

  storeOptions(rotate.command('assertion-key'), { json: true, passphrase: false })
    .summary('a new signing key for identity assertions (the jwt identity format), with an overlap')
    .description('Create a new identity assertion signing key in the store (assertion/). It is published at once (running brokers reload it: file watching, SIGHUP or POST /reload) and signs from --publish-ahead later (10m by default: longer than the JWKS endpoint\'s max-age of 300 s, so upstreams that cache the JWKS know the key before they see a token signed with it); the key it replaces signs until then. The replaced key stays published in the JWKS (/.well-known/jwks.json on the admin listener, assertion.jwksFile) until the overlap after activation ends, so upstreams keep verifying tokens it signed; keys past their overlap are removed at the next rotation. The overlap must exceed assertion.ttl plus how long upstreams cache the JWKS. --overlap 0 (a compromised key) also makes the new key sign at once unless --publish-ahead is given, and retires the replaced key at once: tokens it signed stop verifying as soon as upstreams refetch the JWKS. No CA passphrase is needed: no CA key is used.')
    .option('--alg <alg>', 'ES256 | EdDSA (Ed25519)', 'ES256')
    .option('--overlap <duration>', 'how long the replaced key stays published after the new one starts signing (0: retired at once)', '1h')
    .option('--publish-ahead <duration>', 'how long the new key is published before it signs (default 10m; 0 with --overlap 0)')
    .option('--dry-run', 'print the plan and change nothing')
    .addHelpText('after', examples('broker pki rotate assertion-key', 'broker pki rotate assertion-key --alg EdDSA --overlap 2h', 'broker pki rotate assertion-key --overlap 0   # the current key leaked: the new one signs at once', 'broker pki rotate assertion-key --publish-ahead 0   # sign with the new key at once (upstreams refetch on an unknown kid)'))
    .action(async (opts: Opts) => {
      const [{ assertAssertionAlg, readAssertionKeys, rotateAssertionKey, DEFAULT_ASSERTION_AHEAD_MS }, { parseDuration }, out] = await Promise.all([import('../../pki/assertion.ts'), import('../../config/duration.ts'), import('../output.ts')]);
      const store = await openStore(opts);
      const alg = assertAssertionAlg(opts.alg ?? 'ES256');
      const zero = (v: string | undefined) => /^0+(ms|[smhdwy])?$/.test(v ?? '');
      const overlapMs = zero(opts.overlap) ? 0 : parseDuration(opts.overlap ?? '1h', '--overlap');
      const ahead = opts.publishAhead;
      const before = readAssertionKeys(store.layout);
      const aheadMs = before === undefined ? 0 : ahead !== undefined ? (zero(ahead) ? 0 : parseDuration(ahead, '--publish-ahead')) : overlapMs === 0 ? 0 : DEFAULT_ASSERTION_AHEAD_MS;
      const activateAt = new Date(Date.now() + aheadMs).toISOString();
      const retireAt = new Date(Date.now() + aheadMs + overlapMs).toISOString();
      const say = planPrinter(opts, out.printLines);
      say(
        `plan: rotate the identity assertion key${before ? ` (now ${before.current})` : ' (the store has none yet: create the first)'}`,
        aheadMs === 0 ? `  1. a new ${alg} key becomes current; running brokers reload it and sign new assertions with it` : `  1. a new ${alg} key is published now and signs from ${activateAt}; ${before?.current} signs until then`,
        !before ? '  2. nothing to retire' : overlapMs === 0 ? `  2. ${before.current} is retired ${aheadMs === 0 ? 'at once' : `at ${activateAt}`}: out of the JWKS and the store; upstreams refuse its tokens once they refetch the JWKS` : `  2. ${before.current} stays published in the JWKS until ${retireAt}, so tokens it signed keep verifying`,
        '  3. keys whose overlap has ended are removed from the store and the JWKS',
      );
      if (opts.dryRun) return say('dry run: nothing changed');
      const r = await rotateAssertionKey(store, { alg, overlapMs, aheadMs });
      if (opts.json) return out.printJson(r);
      out.printLines(`new assertion key ${r.kid} (${r.alg}), signing from ${r.activateAt}${r.previous ? `; ${r.previous.kid} published until ${r.previous.retireAt}` : ''}${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}`);
    });
}
