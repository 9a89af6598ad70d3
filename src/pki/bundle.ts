/**
 * The onboarding kit: one folder per partner with its credentials (certificate, key, PKCS#12, or
 * an enrolment token), the CA, a README.md written for that partner (identity, roles, expiry,
 * contact, the routes and methods its roles reach, the broker's URL) and client snippets that run
 * as they are (snippets/): curl, Python requests (and urllib), Java (keytool + HttpClient), Node,
 * Go, plus the `broker doctor --client`, `broker connect` and `broker renew` commands.
 *
 * `writeBundle` does not issue anything: `pki issue --bundle` writes the credentials into the folder
 * first (the CA's write transaction) and then calls it; `pki invite --bundle` passes the token.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerError } from '../errors.ts';
import type { BrokerConfig } from '../config/index.ts';
import { bundleReadme, snippetFiles } from './bundle-templates.ts';

export { ENROLL_URL_PLACEHOLDER } from './bundle-templates.ts';

/** What the partner's roles reach: one route each. */
export interface ReachableRoute {
  name: string;
  path: string;
  /** Methods the route allows (GET implies HEAD); undefined: every method. */
  methods: string[] | undefined;
  /** Credentials the route requires besides (or instead of) the certificate. */
  auth: string[];
  websocket: boolean;
}

export interface BundleOptions {
  /** The kits folder: the kit is written to DIR/IDENTITY/. */
  dir: string;
  identity: string;
  roles: string[];
  contact?: string | null | undefined;
  /** `https://HOST:PORT` partners reach the broker at; a placeholder (and a warning in the README) when absent. */
  url?: string | undefined;
  /** From the broker config (`reachableRoutes`); undefined when no config was given: the README says so. */
  routes?: ReachableRoute[] | undefined;
  credentials:
    | {
        kind: 'certificate';
        serial: string;
        notAfter: string;
        /** File names inside the kit folder (the issuer wrote them there). */
        cert: string;
        key: string;
        ca: string;
        p12?: string | undefined;
        /** The generated PKCS#12 password's file, when the broker generated one. */
        p12Password?: string | undefined;
      }
    | {
        kind: 'token';
        token: string;
        /** When the token stops working, and the lifetime of the certificate it enrols. */
        expires: string;
        certTtl?: string | undefined;
        /** The CA bundle (PEM) written as ca.crt. */
        caPem: string;
        /** `https://HOST:PORT` of the certificate-optional listener, where `broker enroll` goes; a placeholder when absent. */
        enrollUrl?: string | undefined;
      };
  /** Replace an existing README.md / snippets / token file. */
  force?: boolean;
}

export const URL_PLACEHOLDER = 'https://BROKER_HOST:8443';

/** The broker URL as the kit writes it: https, a host, a port or none, no path, nothing that needs quoting. */
export function checkBundleUrl(url: string, flag = '--url'): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new BrokerError('BRK_ERR_USAGE_BUNDLE_URL', `${flag} ${JSON.stringify(url)} is not a URL`, { cause });
  }
  if (u.protocol !== 'https:' || !u.hostname || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new BrokerError('BRK_ERR_USAGE_BUNDLE_URL', `${flag} ${JSON.stringify(url)} must be https://HOST[:PORT] and nothing else`);
  }
  return `https://${u.host}`;
}

/**
 * The enrolment URL of an invitation kit: `--enroll-url` when given; else the host of `--url` with
 * the port of the config's `listenCertOptional` (a fixed port: 0 tells nothing); else undefined
 * (the kit then says it is a placeholder).
 */
export function enrollUrlOf(o: { enrollUrl?: string | undefined; url?: string | undefined; optionalPort?: number | undefined }): string | undefined {
  if (o.enrollUrl !== undefined) return checkBundleUrl(o.enrollUrl, '--enroll-url');
  if (o.url === undefined || !o.optionalPort) return undefined;
  const u = new URL(checkBundleUrl(o.url));
  u.port = String(o.optionalPort);
  return `https://${u.host}`;
}

/** The routes a holder of `roles` reaches in this config, with their methods, in config order. */
export function reachableRoutes(c: Pick<BrokerConfig, 'routes'>, roles: readonly string[]): ReachableRoute[] {
  return c.routes
    .filter((r) => r.roles.some((role) => roles.includes(role)))
    .map((r) => {
      const methods = r.methods ? [...new Set(r.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])))] : undefined;
      return { name: r.name, path: r.path, methods, auth: [...r.auth], websocket: r.websocket };
    });
}

/** The path the snippets call: the first reachable certificate-only route that answers GET; else "/". */
export function samplePath(routes: readonly ReachableRoute[] | undefined): string {
  const r = routes?.find((x) => x.auth.length === 1 && x.auth[0] === 'mtls' && (!x.methods || x.methods.includes('GET')));
  return r ? r.path : '/';
}

export interface WrittenBundle {
  dir: string;
  readme: string;
  snippets: Record<string, string>;
  token?: string;
  placeholderUrl: boolean;
  /** An invitation kit whose enrolment URL is the placeholder. */
  placeholderEnrollUrl?: boolean;
}

const PUBLIC = 0o644;
const SCRIPT = 0o755;
const SECRET = 0o600;

/** Files of a kit that already exist in DIR/IDENTITY/ (checked before issuing, so a refusal changes nothing). */
export function bundleConflicts(dir: string, identity: string, o: { token?: boolean } = {}): string[] {
  const kit = join(dir, identity);
  return [join(kit, 'README.md'), join(kit, 'snippets'), ...(o.token ? [join(kit, `${identity}.token`)] : [])].filter((f) => existsSync(f));
}

/** Writes README.md, snippets/ and (for an invitation) the token and ca.crt into DIR/IDENTITY/. */
export function writeBundle(o: BundleOptions): WrittenBundle {
  const dir = join(o.dir, o.identity);
  const url = o.url === undefined ? URL_PLACEHOLDER : checkBundleUrl(o.url);
  const placeholderEnrollUrl = o.credentials.kind === 'token' && o.credentials.enrollUrl === undefined;
  const files = snippetFiles({ ...o, url, path: samplePath(o.routes) });
  const readme = join(dir, 'README.md');
  const tokenFile = o.credentials.kind === 'token' ? join(dir, `${o.identity}.token`) : undefined;
  if (!o.force) {
    const clash = [readme, tokenFile, ...Object.keys(files).map((f) => join(dir, f))].filter((f): f is string => f !== undefined && existsSync(f));
    if (clash.length) throw new BrokerError('BRK_ERR_PKI_OUTPUT_EXISTS', `would overwrite ${clash.join(', ')}`);
  }
  const write = (file: string, text: string, mode: number) => {
    try {
      writeFileSync(file, text, { mode });
    } catch (cause) {
      throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot write ${file} (${(cause as NodeJS.ErrnoException).code ?? cause})`, { cause });
    }
  };
  try {
    mkdirSync(join(dir, 'snippets'), { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new BrokerError('BRK_ERR_PKI_FILE_WRITE', `cannot create ${dir} (${(cause as NodeJS.ErrnoException).code ?? cause})`, { cause });
  }
  if (o.credentials.kind === 'token' && tokenFile) {
    write(tokenFile, `${o.credentials.token}\n`, SECRET);
    write(join(dir, 'ca.crt'), o.credentials.caPem, PUBLIC);
  }
  const snippets: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    const file = join(dir, name);
    write(file, text, name.endsWith('.sh') ? SCRIPT : PUBLIC);
    snippets[name] = file;
  }
  write(readme, bundleReadme({ ...o, url, path: samplePath(o.routes), placeholderUrl: o.url === undefined, snippets: files }), PUBLIC);
  return { dir, readme, snippets, ...(tokenFile ? { token: tokenFile, placeholderEnrollUrl } : {}), placeholderUrl: o.url === undefined };
}
