/**
 * Loading a config file: parse (YAML or JSON), apply defaults, validate against the schema, then
 * check what a schema cannot (upstream URLs, canonical route paths, unique names). Every problem is
 * reported at once as `path: problem`; the result is frozen. Whether the certificate files exist and
 * fit together is checked where they are loaded (src/tls), and `broker config check` runs both.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { BrokerError } from '../errors.ts';
import { ConfigSchema, type BrokerConfig } from './schema.ts';
import { cidrProblem } from './cidr.ts';
import { isIP } from 'node:net';
import { isLoopbackHost } from './loopback.ts';
import { parseSource, pathSegments, type PathSegments, type Position } from './locate.ts';
import { schemaMessage } from './messages.ts';

export interface LoadedConfig {
  file: string;
  config: BrokerConfig;
}

/** One problem of a config: where (the config path, and the line and column when the text is known) and what. */
export interface Problem {
  path: string;
  line: number | null;
  column: number | null;
  message: string;
}

/** Finds a config path in the text the config came from; see src/config/locate.ts. */
export type Locator = (path: PathSegments, at?: 'key' | 'value') => Position | undefined;

const pointerSegments = (pointer: string): PathSegments =>
  pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));

const pathText = (segs: PathSegments): string => segs.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '');

/** `path: message`, the form of Validation.problems (and of `config check` without --json). */
export const problemText = (p: Problem): string => `${p.path}: ${p.message}`;

export function parseConfigText(text: string, file: string): unknown {
  try {
    return file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONFIG_INVALID', `${file}: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
}

const SAFE_PREFIX = /^\/([A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*)?$/;

/** A route's upstream URL: http or https, no credentials, query or fragment, a canonical base path. */
function upstreamProblems(r: BrokerConfig['routes'][number], at: string): string[] {
  const problems: string[] = [];
  let url: URL | undefined;
  try {
    url = new URL(r.upstream);
  } catch {
    problems.push(`${at}.upstream: "${r.upstream}" is not a URL (like http://127.0.0.1:9001)`);
  }
  if (url) {
    const scheme = url.protocol.slice(0, -1);
    if (scheme !== 'http' && scheme !== 'https') {
      // htp://, ftp://: say the scheme, with the likely intent; the rest of such a URL means nothing
      const guess = /^h?t+p?s?$/.test(scheme) ? ` (did you mean ${scheme.endsWith('s') ? 'https' : 'http'}://?)` : '';
      problems.push(`${at}.upstream: scheme "${scheme}" is not supported: the upstream is an http:// or https:// URL, like http://127.0.0.1:9001${guess}`);
      url = undefined;
    }
  }
  if (url) {
    if (url.username || url.password) problems.push(`${at}.upstream: credentials in the URL are not allowed`);
    if (url.search || url.hash) problems.push(`${at}.upstream: no query or fragment allowed`);
    if (url.pathname !== '/' && !SAFE_PREFIX.test(url.pathname)) problems.push(`${at}.upstream: path "${url.pathname}" must be canonical like /v2/api`);
    if (r.upstreamTls && url.protocol !== 'https:') problems.push(`${at}.upstreamTls: only for https upstreams`);
  }
  return problems;
}

/**
 * Checks beyond the schema. They also run on a config that failed the schema (each one guarded),
 * so that one pass reports every problem. Paths are already resolved against the config's folder.
 */
function semanticProblems(c: BrokerConfig): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const paths = new Map<string, number>();
  const routes = Array.isArray(c.routes) ? c.routes : [];
  routes.forEach((r, i) => {
    const at = `routes[${i}]`;
    if (!r || typeof r !== 'object') return;
    if (typeof r.upstream === 'string') problems.push(...upstreamProblems(r, at));
    if (typeof r.path !== 'string' || !Array.isArray(r.roles)) return;
    if (names.has(r.name)) problems.push(`${at}.name: "${r.name}" is already used by routes[${names.get(r.name)}]`);
    names.set(r.name, i);
    const dotSegment = r.path.split('/').some((seg) => seg === '.' || seg === '..');
    if (!SAFE_PREFIX.test(r.path) || dotSegment || (c.http?.foldCase && r.path !== r.path.toLowerCase())) {
      problems.push(`${at}.path: "${r.path}" must be a canonical prefix: "/" or "/seg/seg" of letters, digits, "-", ".", "_", "~" (no trailing slash, no dot segments${c.http?.foldCase ? ', lower case' : ''})`);
    }
    if (paths.has(r.path)) problems.push(`${at}.path: "${r.path}" is already the path of routes[${paths.get(r.path)}]`);
    paths.set(r.path, i);
    if (r.roles.length === 0) problems.push(`${at}.roles: empty: nobody could use this route (list the roles allowed)`);
    if (r.websocket && r.methods && !r.methods.includes('GET')) problems.push(`${at}.methods: websocket needs GET`);
    for (const k of ['ca', 'cert', 'key'] as const) {
      const f = r.upstreamTls?.[k];
      if (f && !existsSync(f)) problems.push(`${at}.upstreamTls.${k}: file ${f} not found`);
    }
    if (Boolean(r.upstreamTls?.cert) !== Boolean(r.upstreamTls?.key)) problems.push(`${at}.upstreamTls: cert and key go together`);
  });

  const lists: Array<[string, unknown]> = [
    ['filters.allowIps', c.filters?.allowIps],
    ['filters.denyIps', c.filters?.denyIps],
    ...Object.entries(c.roles ?? {}).flatMap(([role, r]): Array<[string, unknown]> => [
      [`roles.${role}.allowIps`, r?.allowIps],
      [`roles.${role}.denyIps`, r?.denyIps],
    ]),
    ...(c.forward?.rules ?? []).map((r, i): [string, unknown] => [`forward.rules[${i}].allowPrivate`, r?.allowPrivate]),
  ];
  problems.push(...forwardProblems(c));
  for (const [at, list] of lists) {
    if (!Array.isArray(list)) continue;
    list.forEach((entry, i) => {
      const problem = typeof entry === 'string' ? cidrProblem(entry) : 'not a string';
      if (problem) problems.push(`${at}[${i}]: ${problem}`);
    });
  }
  const store = c.rateLimit?.store;
  if (typeof store === 'string' && store !== 'memory') {
    try {
      const u = new URL(store);
      if (!u.hostname || !u.port) problems.push(`rateLimit.store: "${store}" needs a host and a port, like redis://127.0.0.1:6379`);
      if (u.password) problems.push('rateLimit.store: no password in the URL; use redis.passwordFile or BROKER_REDIS_PASSWORD');
    } catch {
      problems.push(`rateLimit.store: "${store}" is not a URL like redis://127.0.0.1:6379`);
    }
  }
  const admin = c.admin;
  if (admin?.enabled && typeof admin.host === 'string' && !isLoopbackHost(admin.host) && !admin.tokenFile) {
    problems.push(`admin.host: ${admin.host} is beyond loopback; set admin.tokenFile so the admin endpoints require a token`);
  }
  if (admin?.tokenFile && !existsSync(admin.tokenFile)) problems.push(`admin.tokenFile: file ${admin.tokenFile} not found`);
  if (admin?.consolePassphraseFile && !existsSync(admin.consolePassphraseFile)) problems.push(`admin.consolePassphraseFile: file ${admin.consolePassphraseFile} not found`);
  if (admin?.enabled && c.listen && admin.port !== 0 && admin.port === c.listen.port && admin.host === c.listen.host) problems.push('admin.port: the admin listener cannot share the public listener\'s address');
  if (c.redis?.passwordFile && !existsSync(c.redis.passwordFile)) problems.push(`redis.passwordFile: file ${c.redis.passwordFile} not found`);
  for (const k of ['ca', 'cert', 'key'] as const) {
    const f = c.redis?.tls?.[k];
    if (f && !existsSync(f)) problems.push(`redis.tls.${k}: file ${f} not found`);
  }

  problems.push(...authProblems(c, routes));
  const otlp = c.tracing?.otlp?.endpoint;
  if (typeof otlp === 'string') {
    try {
      const u = new URL(otlp);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`tracing.otlp.endpoint: scheme "${u.protocol.slice(0, -1)}" is not supported (use http or https)`);
      if (u.username || u.password) problems.push('tracing.otlp.endpoint: no credentials in the URL; use tracing.otlp.headers');
    } catch {
      problems.push(`tracing.otlp.endpoint: "${otlp}" is not a URL like http://127.0.0.1:4318/v1/traces`);
    }
  }

  const t = c.tls ?? {};
  if (t.server && (t.cert || t.key)) problems.push('tls: give either server (a name in the PKI store) or cert + key, not both');
  if (!t.server && !(t.cert && t.key)) problems.push('tls: give server (a name made by "broker pki server NAME") or cert + key');
  if (Boolean(t.cert) !== Boolean(t.key)) problems.push('tls: cert and key go together');
  return problems;
}

/** Routes' auth lists against the auth settings and the listeners. */
/** forward: rule hosts are names, *.suffix globs or IP literals; the listener has its own address. */
function forwardProblems(c: BrokerConfig): string[] {
  const f = c.forward;
  if (!f) return [];
  const problems: string[] = [];
  (f.rules ?? []).forEach((r, i) => {
    (r?.hosts ?? []).forEach((h, j) => {
      if (typeof h !== 'string') return;
      const name = h.startsWith('*.') ? h.slice(2) : h;
      const ok = isIP(name) ? !h.startsWith('*.') : /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(name) && !/^[0-9.]+$/.test(name);
      if (!ok) problems.push(`forward.rules[${i}].hosts[${j}]: "${h}" is not a host name, "*.suffix" or an IP address`);
    });
  });
  const l = f.listen;
  if (l && c.listen && l.port !== 0 && l.port === c.listen.port && l.host === c.listen.host) problems.push('forward.listen.port: the forward listener cannot share the main listener\'s address');
  return problems;
}

function authProblems(c: BrokerConfig, routes: BrokerConfig['routes']): string[] {
  const problems: string[] = [];
  const jwt = c.auth?.jwt;
  routes.forEach((r, i) => {
    const auth: readonly string[] = Array.isArray(r?.auth) ? r.auth : [];
    if (auth.includes('jwt') && !jwt) problems.push(`routes[${i}].auth: jwt needs auth.jwt (jwksUrl or jwksFile, issuer, audience)`);
    if (auth.includes('jwt') && auth.includes('basic')) problems.push(`routes[${i}].auth: jwt and basic both use the Authorization header; a request can carry only one of them`);
    if (!auth.includes('mtls') && !c.listenCertOptional) {
      problems.push(`routes[${i}].auth: without mtls the route needs listenCertOptional (a second listener where the client certificate is optional); the main listener always requires one`);
    }
  });
  if (jwt) {
    if (Boolean(jwt.jwksUrl) === Boolean(jwt.jwksFile)) problems.push('auth.jwt: give exactly one of jwksUrl and jwksFile');
    if (jwt.jwksUrl) {
      try {
        const u = new URL(jwt.jwksUrl);
        if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) problems.push(`auth.jwt.jwksUrl: ${jwt.jwksUrl} must be https (http only on loopback): the signing keys must not travel in the clear`);
      } catch {
        problems.push(`auth.jwt.jwksUrl: "${jwt.jwksUrl}" is not a URL`);
      }
    }
    for (const k of ['jwksFile', 'jwksCa'] as const) {
      const f = jwt[k];
      if (f && !existsSync(f)) problems.push(`auth.jwt.${k}: file ${f} not found`);
    }
  }
  if (c.enrollment?.enabled && !c.listenCertOptional) problems.push('enrollment.enabled: enrolment is served only on listenCertOptional (a partner enrolling has no certificate yet); configure that listener');
  const l = c.listenCertOptional;
  if (l && c.listen && l.port !== 0 && l.port === c.listen.port && l.host === c.listen.host) problems.push('listenCertOptional.port: the certificate-optional listener cannot share the main listener\'s address');
  return problems;
}


function resolvePaths(c: BrokerConfig, base: string): void {
  const abs = (p: unknown) => (typeof p !== 'string' ? p : isAbsolute(p) ? p : resolve(base, p)) as string;
  if (c.pki && typeof c.pki === 'object') c.pki.dir = abs(c.pki.dir);
  if (c.enrollment && typeof c.enrollment === 'object' && c.enrollment.passphraseFile) c.enrollment.passphraseFile = abs(c.enrollment.passphraseFile);
  if (c.admin && typeof c.admin === 'object' && c.admin.consolePassphraseFile) c.admin.consolePassphraseFile = abs(c.admin.consolePassphraseFile);
  if (c.tls && typeof c.tls === 'object') {
    for (const k of ['cert', 'key', 'clientCa', 'crl'] as const) {
      const v = c.tls[k];
      if (v) c.tls[k] = abs(v);
    }
  }
  for (const r of Array.isArray(c.routes) ? c.routes : []) {
    for (const k of ['ca', 'cert', 'key'] as const) {
      const v = r?.upstreamTls?.[k];
      if (v && r.upstreamTls) r.upstreamTls[k] = abs(v);
    }
  }
  const jwt = c.auth && typeof c.auth === 'object' ? c.auth.jwt : undefined;
  if (jwt && typeof jwt === 'object') {
    if (jwt.jwksFile) jwt.jwksFile = abs(jwt.jwksFile);
    if (jwt.jwksCa) jwt.jwksCa = abs(jwt.jwksCa);
  }
  if (c.admin && typeof c.admin === 'object' && c.admin.tokenFile) c.admin.tokenFile = abs(c.admin.tokenFile);
  if (c.assertion && typeof c.assertion === 'object' && c.assertion.jwksFile) c.assertion.jwksFile = abs(c.assertion.jwksFile);
  if (c.log && typeof c.log === 'object') {
    for (const k of ['auth', 'access', 'error', 'audit'] as const) {
      const v = c.log[k];
      if (typeof v === 'string' && v !== 'stdout' && v !== 'stderr' && v !== 'off') c.log[k] = abs(v);
    }
  }
  if (c.redis && typeof c.redis === 'object') {
    if (c.redis.passwordFile) c.redis.passwordFile = abs(c.redis.passwordFile);
    for (const k of ['ca', 'cert', 'key'] as const) {
      const v = c.redis.tls?.[k];
      if (v && c.redis.tls) c.redis.tls[k] = abs(v);
    }
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export interface Validation {
  /** The valid, frozen config; absent when there is any problem. */
  config?: BrokerConfig;
  /** Every problem as `path: message`. */
  problems: string[];
  /** The same problems with their line and column (null when no text was given or the path is not written). */
  details: Problem[];
  /** The config with defaults and resolved paths, valid or not: for further best-effort checks. */
  candidate?: BrokerConfig;
  /** Top-level sections that have schema problems. */
  badSections: Set<string>;
}

/** Splits a `path: message` line (as the checks beyond the schema write them) and locates it. */
export function locateProblem(line: string, locate?: Locator): Problem {
  const cut = line.indexOf(': ');
  const path = cut > 0 ? line.slice(0, cut) : '(top level)';
  const message = cut > 0 ? line.slice(cut + 2) : line;
  const at = path === '(top level)' ? undefined : locate?.(pathSegments(path));
  return { path, line: at?.line ?? null, column: at?.column ?? null, message };
}

/**
 * Validates a parsed config object; `baseDir` anchors relative paths. Every problem is returned;
 * with `locate` (from parseConfigSource) each carries the line and column it is written at.
 */
export function validateConfig(raw: unknown, baseDir: string, locate?: Locator): Validation {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    const p: Problem = { path: '(top level)', line: 1, column: 1, message: 'expected a mapping of settings' };
    return { problems: [problemText(p)], details: [p], badSections: new Set(['*']) };
  }
  const candidate = Value.Default(ConfigSchema, structuredClone(raw)) as BrokerConfig;
  const badSections = new Set<string>();
  const details: Problem[] = [];
  const missing = new Set<string>();
  for (const e of Value.Errors(ConfigSchema, candidate)) {
    badSections.add(e.path.split('/')[1] ?? '*');
    // A missing key is also "not a string": say it once.
    if (missing.has(e.path)) continue;
    if (e.type === ValueErrorType.ObjectRequiredProperty) missing.add(e.path);
    const segs = pointerSegments(e.path);
    const at = locate?.(segs, e.type === ValueErrorType.ObjectAdditionalProperties ? 'key' : 'value');
    details.push({ path: pathText(segs) || '(top level)', line: at?.line ?? null, column: at?.column ?? null, message: schemaMessage(e, String(segs.at(-1) ?? '')) });
  }
  resolvePaths(candidate, baseDir);
  details.push(...semanticProblems(candidate).map((line) => locateProblem(line, locate)));
  const seen = new Set<string>();
  const unique = details.filter((p) => !seen.has(problemText(p)) && seen.add(problemText(p)));
  const problems = unique.map(problemText);
  if (problems.length) return { problems, details: unique, candidate, badSections };
  return { config: deepFreeze(candidate), problems: [], details: [], candidate, badSections };
}

export interface ParsedConfig {
  /** The parsed value; undefined when there are syntax errors. */
  value: unknown;
  /** Syntax errors, with their positions. */
  syntax: Problem[];
  locate: Locator;
}

/** Parses config text keeping the positions of everything in it (JSON by file name, else YAML). */
export function parseConfigSource(text: string, file: string): ParsedConfig {
  const source = parseSource(text);
  const syntax = source.syntax.map((e) => ({ path: '(syntax)', line: e.line, column: e.column, message: e.message }));
  if (file.endsWith('.json')) {
    try {
      return { value: JSON.parse(text), syntax: [], locate: source.locate };
    } catch (cause) {
      return { value: undefined, syntax: syntax.length ? syntax : [{ path: '(syntax)', line: null, column: null, message: (cause as Error).message }], locate: source.locate };
    }
  }
  return { value: source.value, syntax, locate: source.locate };
}

/** `file:line:column: path: message`, as compilers print it (the position left out when unknown). */
export function formatProblem(file: string, p: Problem): string {
  return `${file}${p.line !== null ? `:${p.line}:${p.column}` : ''}: ${problemText(p)}`;
}

export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_CONFIG_READ', `cannot read config ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  const parsed = parseConfigSource(text, file);
  const { config, details } = parsed.syntax.length ? { config: undefined, details: parsed.syntax } : validateConfig(parsed.value, dirname(resolve(file)), parsed.locate);
  if (!config) {
    throw new BrokerError('BRK_ERR_CONFIG_INVALID', `${file} has ${details.length} problem${details.length === 1 ? '' : 's'}:\n${details.map((p) => `  ${formatProblem(file, p)}`).join('\n')}`);
  }
  return { file, config };
}
