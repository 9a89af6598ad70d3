/**
 * The deployment artifacts in deploy/ keep their hardening: every file is parsed (Dockerfile,
 * systemd units, Kubernetes YAML, nftables, the example configs) and the settings that make it
 * safe are asserted, together with the facts that tie the files to each other and to the broker
 * (ports, uid, paths, the shutdown drain against the stop timeouts). The example configs pass the
 * broker's own validation, but for files that only exist where they are deployed. No sockets:
 * systemd-analyze and nft are run when present, and skipped with a reason otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, posix } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { validateConfig, parseDuration, type BrokerConfig } from '../../src/config/index.ts';

/** The log streams (the other log settings are not outputs). */
const LOG_STREAMS = ['auth', 'access', 'error', 'audit'] as const;

const root = join(import.meta.dirname, '..', '..');
const deploy = join(root, 'deploy');
const read = (rel: string) => readFileSync(join(deploy, rel), 'utf8');

/** The broker's defaults (the schema's), for the ports the artifacts must agree with. */
const defaults = validateConfig({}, root).candidate as BrokerConfig;

// ------------------------------------------------------------------------------------------------
// Small parsers

interface Instruction {
  name: string;
  args: string;
  line: number;
}

/** Dockerfile instructions, with `\` continuations joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!buf && (line === '' || line.startsWith('#'))) return;
    if (buf && line.startsWith('#')) return; // comments inside a continued instruction
    if (!buf) start = i + 1;
    if (line.endsWith('\\')) {
      buf += `${line.slice(0, -1)} `;
      return;
    }
    buf += line;
    const m = /^(\S+)\s*(.*)$/s.exec(buf) as RegExpExecArray;
    out.push({ name: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start });
    buf = '';
  });
  assert.equal(buf, '', 'the Dockerfile ends inside a continued instruction');
  return out;
}

/** `KEY=value KEY2=value2` (ENV, ARG); values without spaces or quotes, as the Dockerfile uses. */
function keyValues(args: string): Map<string, string> {
  return new Map([...args.matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1] as string, m[2] as string]));
}

type Unit = Map<string, Map<string, string[]>>;

/** A systemd unit file: section → key → every value given (in order), comments dropped. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1] as string, section);
      continue;
    }
    const kv = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    assert.ok(kv && section, `line ${i + 1} is neither a section, a setting nor a comment: ${line}`);
    assert.ok(!line.endsWith('\\'), `line ${i + 1}: no continuation lines, please`);
    const values = section.get(kv[1] as string) ?? [];
    values.push((kv[2] as string).trim());
    section.set(kv[1] as string, values);
  }
  return unit;
}

/** The last value of a setting (systemd: the last assignment wins for single-valued settings). */
function setting(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** Space-separated list settings, accumulated over every assignment (an empty one resets). */
function listSetting(unit: Unit, section: string, key: string): string[] {
  let list: string[] = [];
  for (const v of unit.get(section)?.get(key) ?? []) list = v === '' ? [] : [...list, ...v.split(/\s+/)];
  return list;
}

/** systemd time spans as used here: `45`, `45s`, `1min`, `1min 30s`, `2m`, `500ms`. */
function systemdSeconds(text: string): number {
  const units: Record<string, number> = { '': 1, s: 1, sec: 1, second: 1, seconds: 1, ms: 0.001, m: 60, min: 60, minute: 60, minutes: 60, h: 3600, hr: 3600, hour: 3600, hours: 3600 };
  let total = 0;
  const rest = text.replace(/(\d+)\s*([a-z]*)/g, (_all, n: string, u: string) => {
    const factor = units[u];
    assert.ok(factor !== undefined, `unknown time unit "${u}" in "${text}"`);
    total += Number(n) * factor;
    return '';
  });
  assert.equal(rest.trim(), '', `"${text}" is not a time span`);
  return total;
}

/**
 * Kubernetes objects from a multi-document YAML file; any YAML error fails. Read as YAML 1.1, as
 * Kubernetes reads them: `defaultMode: 0440` is octal there, and `no` a boolean.
 */
function k8sObjects(rel: string): Array<Record<string, any>> {
  const docs = parseAllDocuments(read(rel), { version: '1.1' });
  const list = Array.isArray(docs) ? docs : [docs];
  const objects: Array<Record<string, any>> = [];
  for (const doc of list) {
    assert.deepEqual(doc.errors, [], `${rel}: YAML errors`);
    assert.deepEqual(doc.warnings, [], `${rel}: YAML warnings`);
    const o = doc.toJS() as Record<string, any> | null;
    if (o === null) continue;
    assert.ok(typeof o.apiVersion === 'string' && typeof o.kind === 'string' && typeof o.metadata?.name === 'string', `${rel}: an object without apiVersion, kind or metadata.name`);
    objects.push(o);
  }
  return objects;
}

function one(objects: Array<Record<string, any>>, kind: string, name: string): Record<string, any> {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0] as Record<string, any>;
}

/** Does a label selector (matchLabels only, as used here) select these labels? */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function ipv4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  assert.ok(parts.length === 4 && parts.every((p) => Number.isInteger(p) && p >= 0 && p <= 255), `not an IPv4 address: ${ip}`);
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/') as [string, string];
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4ToInt(ip) / size) === Math.floor(ipv4ToInt(base) / size);
}

/**
 * Validates an example config with the broker's own validation. Files the config names exist only
 * where it is deployed; `deployedFile(path)` says whether that deployment provides a path (and
 * fails the test itself when it should and does not). Any other problem fails.
 */
function assertValidExceptDeployedFiles(what: string, text: string, baseDir: string, deployedFile: (path: string) => boolean): BrokerConfig {
  const { candidate, problems } = validateConfig(parse(text), baseDir);
  const unexpected = problems.filter((p) => {
    const m = /^[\w.[\]]+: file (\/\S+) not found$/.exec(p);
    return !(m && !existsSync(m[1] as string) && deployedFile(m[1] as string));
  });
  assert.deepEqual(unexpected, [], `${what}: problems other than files provided at deployment`);
  return candidate as BrokerConfig;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

// ------------------------------------------------------------------------------------------------
// Dockerfile

const dockerfile = parseDockerfile(read('Dockerfile'));
const froms = dockerfile.map((ins, i) => ({ ins, i })).filter(({ ins }) => ins.name === 'FROM');
const finalStage = dockerfile.slice((froms.at(-1)?.i ?? 0) + 1);
const finalOf = (name: string) => finalStage.filter((ins) => ins.name === name);
const dockerUser = (() => {
  const users = finalOf('USER');
  return users.length === 1 ? /^(\d+)(?::(\d+))?$/.exec((users[0] as Instruction).args) : null;
})();
const dockerEnv = new Map(finalOf('ENV').flatMap((ins) => [...keyValues(ins.args)]));

test('Dockerfile: multi-stage, a build stage and a runtime stage that copies from it', () => {
  assert.ok(froms.length >= 2, 'at least two FROM');
  assert.match((froms[0] as (typeof froms)[0]).ins.args, /\s+AS\s+build$/i, 'the first stage is "FROM … AS build"');
  const copiesFromBuild = finalOf('COPY').filter((ins) => /--from=build\b/.test(ins.args));
  assert.ok(copiesFromBuild.length > 0, 'the runtime stage copies from the build stage');
  for (const ins of finalOf('COPY')) {
    assert.match(ins.args, /--chown=(0|root):(0|root)\b/, `line ${ins.line}: the runtime files belong to root, not to the user that runs them`);
  }
  const args = new Map(dockerfile.filter((ins) => ins.name === 'ARG').flatMap((ins) => [...keyValues(ins.args)]));
  for (const { ins } of froms) {
    const image = (ins.args.split(/\s+/)[0] as string).replace(/^\$\{(\w+)\}$/, (_all, name: string) => args.get(name) ?? '');
    assert.match(image, /^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$/, `line ${ins.line}: a base image with a tag (${image})`);
    assert.doesNotMatch(image, /:latest\b/, `line ${ins.line}: no :latest`);
  }
  assert.match(read('Dockerfile'), /npm ci\b/);
  assert.match(read('Dockerfile'), /npm prune --omit=dev\b/);
});

test('Dockerfile: non-root numeric USER, nothing fetched by ADD, read-only friendly', () => {
  assert.ok(dockerUser, 'exactly one USER in the runtime stage, numeric uid[:gid]');
  assert.notEqual(Number(dockerUser[1]), 0, 'not root');
  if (dockerUser[2] !== undefined) assert.notEqual(Number(dockerUser[2]), 0, 'not the root group');
  const lastUserIndex = finalStage.findIndex((ins) => ins.name === 'USER');
  assert.ok(finalStage.slice(lastUserIndex).every((ins) => ins.name !== 'RUN'), 'nothing runs after USER (no writes into the image as that user)');
  for (const ins of dockerfile.filter((i) => i.name === 'ADD')) {
    assert.doesNotMatch(ins.args, /\b(https?|git|ftp):\/\/|git@/i, `line ${ins.line}: no ADD of remote URLs`);
  }
  assert.equal(finalOf('VOLUME').length, 0, 'no VOLUME: anonymous volumes would be writable state behind the operator\'s back');
  // A read-only root: HOME on the tmpfs the run mounts; no state anywhere but /etc/broker and /var/log/broker.
  assert.equal(dockerEnv.get('HOME'), '/tmp');
  assert.equal(dockerEnv.get('NODE_ENV'), 'production');
  const ignore = readFileSync(join(deploy, 'Dockerfile.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.equal(ignore[0], '*', 'the build context excludes everything by default');
  assert.ok(!ignore.some((l) => /^!.*pki/.test(l)), 'never a PKI store in the build context');
});

test('Dockerfile: exactly one EXPOSE 8443, HEALTHCHECK on the admin /healthz, entrypoint and stop signal', () => {
  const expose = dockerfile.filter((ins) => ins.name === 'EXPOSE');
  assert.equal(expose.length, 1, 'exactly one EXPOSE');
  assert.equal((expose[0] as Instruction).args, String(defaults.listen.port), 'only the listen port (8443)');
  assert.equal(defaults.listen.port, 8443);

  const health = finalOf('HEALTHCHECK');
  assert.equal(health.length, 1, 'one HEALTHCHECK');
  const m = /^((?:--\w[\w-]*=\S+\s+)*)CMD\s+(\[.*\])$/s.exec((health[0] as Instruction).args);
  assert.ok(m, 'HEALTHCHECK [options] CMD ["…"] (exec form)');
  const cmd = JSON.parse(m[2] as string) as string[];
  assert.equal(cmd[0], 'node', 'a Node one-liner: no curl in the image');
  assert.ok(!/curl|wget/.test(cmd.join(' ')));
  const script = cmd.join(' ');
  const url = script.includes('process.env.BROKER_HEALTHCHECK_URL') ? dockerEnv.get('BROKER_HEALTHCHECK_URL') : (/http:\/\/[^'"\s]+/.exec(script)?.[0] ?? '');
  assert.equal(url, `http://127.0.0.1:${defaults.admin.port}/healthz`, 'the admin listener on the container\'s loopback');
  assert.match(m[1] as string, /--timeout=\d+s/);

  assert.deepEqual(JSON.parse((finalOf('ENTRYPOINT')[0] as Instruction).args), ['node', 'dist/main.js']);
  assert.deepEqual(JSON.parse((finalOf('CMD')[0] as Instruction).args), ['serve', '--config', '/etc/broker/broker.yaml']);
  assert.equal((finalOf('STOPSIGNAL')[0] as Instruction | undefined)?.args, 'SIGTERM');
});

// ------------------------------------------------------------------------------------------------
// The example config for a host, and the systemd units

const exampleText = read('examples/broker.yaml');
const unit = parseUnit(read('systemd/broker.service'));
const crlUnit = parseUnit(read('systemd/broker-crl.service'));
const crlTimer = parseUnit(read('systemd/broker-crl.timer'));
const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir.replace(/\/$/, '')}/`);

test('examples/broker.yaml passes the config validation, but for the files installed with it in /etc/broker', () => {
  const c = assertValidExceptDeployedFiles('examples/broker.yaml', exampleText, '/etc/broker', (path) => under(path, '/etc/broker'));
  assert.equal(typeof c.tls.server, 'string', 'the server certificate from the PKI store');
  assert.equal(c.pki.dir, '/var/lib/broker/pki');
  assert.ok(c.routes.length > 0 && c.routes.every((r) => r.roles.length > 0), 'routes, each with roles');
  assert.match(c.rateLimit.store, /^rediss?:\/\//, 'limits shared through Redis');
  assert.ok(Object.keys(c.roles).length > 0, 'per-role settings');
  assert.ok(c.bans.enabled);
  assert.ok(isLoopback(c.admin.host), 'admin on loopback');
  assert.ok(c.admin.tokenFile, 'admin with a token');
  assert.match(c.alerts.webhook ?? '', /^https:\/\//, 'alerts to an https webhook');
  const files = Object.entries(c.log).filter(([k, v]) => k !== 'level' && !['stdout', 'stderr', 'off'].includes(String(v)));
  assert.ok(files.length > 0, 'logs to files');
  assert.equal(c.workers, 1, 'one process: a multi-worker primary does not relay SIGHUP/SIGUSR2 (reload, logrotate)');
  assert.ok(c.reload.watch);
});

test('systemd: broker.service has every sandboxing setting', () => {
  const expected: Record<string, string> = {
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ProtectHome: 'yes',
    PrivateTmp: 'yes',
    PrivateDevices: 'yes',
    ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes',
    ProtectControlGroups: 'yes',
    RestrictNamespaces: 'yes',
    RestrictSUIDSGID: 'yes',
    LockPersonality: 'yes',
    MemoryDenyWriteExecute: 'no',
    SystemCallArchitectures: 'native',
    CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE',
    AmbientCapabilities: 'CAP_NET_BIND_SERVICE',
    User: 'broker',
    Group: 'broker',
    DynamicUser: 'no',
    ExecReload: '/bin/kill -HUP $MAINPID',
    KillSignal: 'SIGTERM',
    KillMode: 'mixed',
    Restart: 'on-failure',
    UMask: '0077',
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(setting(unit, 'Service', key), value, `[Service] ${key}=${value}`);
  // The one loosening is explained where it is made.
  const lines = read('systemd/broker.service').split('\n');
  const at = lines.findIndex((l) => l.startsWith('MemoryDenyWriteExecute='));
  assert.match(lines.slice(Math.max(0, at - 3), at).join('\n'), /^#.*JIT/m, 'MemoryDenyWriteExecute=no says why (V8\'s JIT)');
  assert.equal(setting(unit, 'Install', 'WantedBy'), 'multi-user.target');
});

test('systemd: broker.service writes only its log folder, reads the store, and stops after the drain', () => {
  const c = validateConfig(parse(exampleText), '/etc/broker').candidate as BrokerConfig;
  const exec = (setting(unit, 'Service', 'ExecStart') ?? '').split(/\s+/);
  assert.deepEqual(exec.slice(0, 2), ['/usr/lib/broker/node_modules/.bin/node', '/usr/lib/broker/dist/main.js']);
  assert.deepEqual(exec.slice(2), ['serve', '--config', '/etc/broker/broker.yaml']);

  const writable = listSetting(unit, 'Service', 'ReadWritePaths');
  assert.ok(writable.includes('/var/log/broker'));
  for (const stream of LOG_STREAMS) {
    const target = c.log[stream];
    if (['stdout', 'stderr', 'off'].includes(target)) continue;
    assert.ok(writable.some((dir) => under(target, dir)), `log.${stream} (${target}) is in a ReadWritePaths folder: ProtectSystem=strict makes the rest read-only`);
  }
  assert.ok(!writable.some((dir) => under(c.pki.dir, dir)), 'the serving broker never writes the PKI store');
  assert.ok(listSetting(unit, 'Service', 'ReadOnlyPaths').includes(c.pki.dir), 'the store is read-only');
  assert.ok(listSetting(unit, 'Service', 'InaccessiblePaths').some((p) => p.replace(/^-/, '') === `${c.pki.dir}/ca`), 'the CA keys are invisible to the server');

  const stopSeconds = systemdSeconds(setting(unit, 'Service', 'TimeoutStopSec') ?? '');
  const drain = parseDuration(c.timeouts.shutdown) / 1000;
  assert.ok(stopSeconds > drain + 5, `TimeoutStopSec (${stopSeconds}s) leaves the drain (timeouts.shutdown ${drain}s) room before SIGKILL`);
  assert.ok(stopSeconds > parseDuration(defaults.timeouts.shutdown) / 1000 + 5, 'and the default drain too');
});

test('systemd: the CRL timer unit may write the store, gets the passphrase as a credential, and has no capability', () => {
  const exec = setting(crlUnit, 'Service', 'ExecStart') ?? '';
  assert.match(exec, /dist\/main\.js pki crl --dir \/var\/lib\/broker\/pki /);
  assert.match(exec, /--passphrase-file %d\//, 'the passphrase from $CREDENTIALS_DIRECTORY');
  assert.ok(setting(crlUnit, 'Service', 'LoadCredential'));
  assert.ok(!(crlUnit.get('Service')?.get('Environment') ?? []).some((e) => /PASSPHRASE/i.test(e)), 'never the passphrase in the environment');
  assert.ok(listSetting(crlUnit, 'Service', 'ReadWritePaths').includes('/var/lib/broker/pki'));
  assert.equal(setting(crlUnit, 'Service', 'CapabilityBoundingSet'), '');
  for (const key of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'PrivateNetwork', 'RestrictSUIDSGID', 'LockPersonality']) {
    assert.equal(setting(crlUnit, 'Service', key), 'yes', `[Service] ${key}=yes`);
  }
  assert.equal(setting(crlUnit, 'Service', 'ProtectSystem'), 'strict');
  assert.ok(setting(crlTimer, 'Timer', 'OnCalendar'));
  assert.equal(setting(crlTimer, 'Timer', 'Persistent'), 'true');
  assert.match(exec, /--next-update (\d+)d/);
  assert.ok(Number(/--next-update (\d+)d/.exec(exec)?.[1]) >= 3, 'a daily run leaves days to notice a failure');
});

const systemdAnalyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

test('systemd: systemd-analyze verify finds no syntax error or unknown setting', { skip: systemdAnalyze ? false : 'systemd-analyze is not installed' }, () => {
  const files = ['broker.service', 'broker-crl.service', 'broker-crl.timer'].map((f) => join(deploy, 'systemd', f));
  const r = spawnSync(systemdAnalyze as string, ['verify', ...files], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined);
  const complaints = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
  // On a machine where the broker is not installed: the binary and the user do not exist. Fine.
  const acceptable = [/Command \/usr\/lib\/broker\/\S+ is not executable: No such file or directory/, /does not exist/i, /Failed to resolve (user|group)/i, /user .*broker/i];
  assert.deepEqual(complaints.filter((l) => !acceptable.some((re) => re.test(l))), [], 'systemd-analyze verify');
});

// ------------------------------------------------------------------------------------------------
// Kubernetes

const objects = [...k8sObjects('kubernetes/broker.yaml'), ...k8sObjects('kubernetes/redis.yaml')];
const exampleSecrets = k8sObjects('kubernetes/example-secrets/secrets.yaml');
const deployment = one(objects, 'Deployment', 'broker');
const pod = deployment.spec.template.spec;
const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
const container = (pod.containers as Array<Record<string, any>>).find((c) => c.name === 'broker') as Record<string, any>;
const configMap = one(objects, 'ConfigMap', 'broker-config');
const redisDeployment = one(objects, 'Deployment', 'broker-redis');
const redisLabels = redisDeployment.spec.template.metadata.labels as Record<string, string>;
const redisService = one(objects, 'Service', 'broker-redis');

/** The volume mounted at the longest mountPath that holds `path`, and the path inside it. */
function mountFor(path: string): { volume: Record<string, any>; rel: string; mount: Record<string, any> } | undefined {
  const mounts = (container.volumeMounts as Array<Record<string, any>>).filter((m) => under(path, m.mountPath)).sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mount = mounts[0];
  if (!mount) return undefined;
  const volume = (pod.volumes as Array<Record<string, any>>).find((v) => v.name === mount.name) as Record<string, any>;
  return { volume, rel: posix.relative(mount.mountPath, path), mount };
}

/** The Secret (name, key) a file in the broker container comes from, if any. */
function secretFile(path: string): { secret: string; key: string } | undefined {
  const m = mountFor(path);
  if (!m) return undefined;
  const sources: Array<{ secretName: string; items?: Array<{ key: string; path: string }> }> = [];
  if (m.volume.secret) sources.push(m.volume.secret);
  for (const s of m.volume.projected?.sources ?? []) if (s.secret) sources.push({ secretName: s.secret.name, items: s.secret.items });
  for (const s of sources) {
    const item = s.items ? s.items.find((i) => i.path === m.rel) : { key: m.rel };
    if (item) return { secret: s.secretName, key: item.key };
  }
  return undefined;
}

function assertSecretShapeKnown(file: { secret: string; key: string }, what: string): void {
  const s = exampleSecrets.find((o) => o.kind === 'Secret' && o.metadata.name === file.secret);
  assert.ok(s, `${what}: the Secret ${file.secret} is described in example-secrets/secrets.yaml`);
  assert.ok(file.key in { ...s.data, ...s.stringData }, `${what}: the Secret ${file.secret} has the key ${file.key}`);
}

const configPath = (container.args as string[])[(container.args as string[]).indexOf('--config') + 1] as string;
const clusterConfigText = (() => {
  const m = mountFor(configPath);
  assert.ok(m?.volume.configMap, `the --config file ${configPath} is on a ConfigMap volume`);
  assert.equal(m.volume.configMap.name, 'broker-config');
  return configMap.data[m.rel] as string;
})();
const clusterConfig = validateConfig(parse(clusterConfigText), posix.dirname(configPath)).candidate as BrokerConfig;

test('kubernetes: the ConfigMap\'s broker.yaml passes the config validation, but for files the pod mounts from Secrets', () => {
  assert.deepEqual(container.args, ['serve', '--config', configPath]);
  assertValidExceptDeployedFiles('ConfigMap broker-config', clusterConfigText, posix.dirname(configPath), (path) => {
    const file = secretFile(path);
    assert.ok(file, `${path} is not provided by any Secret mounted in the broker container`);
    assertSecretShapeKnown(file, path);
    return true;
  });
  // The TLS files (checked where they are loaded, not by the config validation) come from Secrets.
  for (const k of ['cert', 'key', 'clientCa', 'crl'] as const) {
    const path = clusterConfig.tls[k];
    assert.ok(path && path.startsWith('/etc/broker/tls/'), `tls.${k} is an explicit file under /etc/broker/tls`);
    const file = secretFile(path);
    assert.ok(file, `tls.${k} (${path}) comes from a Secret`);
    assertSecretShapeKnown(file, `tls.${k}`);
  }
  assert.equal(clusterConfig.tls.server, undefined, 'no PKI store in the cluster');
  assert.ok(isLoopback(clusterConfig.admin.host), 'admin stays on loopback (the probes run inside the container)');
  assert.ok(clusterConfig.reload.watch, 'reload.watch: the kubelet\'s `..data` swaps are picked up');
  assert.equal(clusterConfig.rateLimit.store, `redis://${redisService.metadata.name}:${redisService.spec.ports[0].port}`, 'limits shared through the Redis Service');
  for (const stream of LOG_STREAMS) {
    assert.ok(['stdout', 'stderr', 'off'].includes(clusterConfig.log[stream]), `log.${stream}: stdout/stderr in a container (the root file system is read-only)`);
  }
});

test('kubernetes: the Deployment runs ≥ 2 hardened replicas', () => {
  assert.ok(deployment.spec.replicas >= 2, 'replicas ≥ 2');
  assert.equal(deployment.spec.replicas, 3);
  assert.ok(selects(deployment.spec.selector.matchLabels, podLabels));
  assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.enableServiceLinks, false);
  assert.ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.ok(dockerUser);
  assert.equal(pod.securityContext.runAsUser, Number(dockerUser[1]), 'the image\'s uid');
  for (const p of [deployment, redisDeployment]) {
    const spec = p.spec.template.spec;
    assert.equal(spec.securityContext.runAsNonRoot, true, `${p.metadata.name}: runAsNonRoot`);
    assert.ok(spec.securityContext.runAsUser > 0, `${p.metadata.name}: runAsUser`);
    for (const c of spec.containers as Array<Record<string, any>>) {
      const sc = c.securityContext;
      const at = `${p.metadata.name}/${c.name}`;
      assert.equal(sc.readOnlyRootFilesystem, true, `${at}: readOnlyRootFilesystem`);
      assert.equal(sc.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation false`);
      assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${at}: every capability dropped`);
      assert.equal(sc.capabilities?.add, undefined, `${at}: none added`);
      assert.notEqual(sc.privileged, true, `${at}: not privileged`);
      assert.equal((sc.seccompProfile ?? spec.securityContext.seccompProfile)?.type, 'RuntimeDefault', `${at}: seccomp RuntimeDefault`);
      assert.ok(c.resources?.limits?.memory, `${at}: a memory limit`);
      assert.ok(!/:latest$/.test(c.image) && /:/.test(c.image), `${at}: a tagged image`);
    }
  }
  assert.deepEqual(container.ports.map((p: Record<string, unknown>) => [p.containerPort, p.protocol]), [[clusterConfig.listen.port, 'TCP']], 'only the mTLS port: the admin port is not a container port');
});

test('kubernetes: liveness /healthz and readiness /readyz as exec probes against the loopback admin listener', () => {
  const admin = `http://127.0.0.1:${clusterConfig.admin.port}`;
  for (const [name, path] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const probe = container[name];
    assert.ok(probe?.exec, `${name} is an exec probe (the admin listener stays on loopback)`);
    assert.equal(probe.httpGet, undefined);
    const [cmd, flag, script] = probe.exec.command as string[];
    assert.equal(cmd, 'node');
    assert.equal(flag, '-e');
    assert.ok(script?.includes(`${admin}${path}`), `${name} asks ${admin}${path}`);
    assert.ok(probe.timeoutSeconds >= 2 && probe.periodSeconds >= 5, `${name}: timeouts that a Node start-up fits in`);
    assert.doesNotThrow(() => new Function(script as string), `${name}: the one-liner is valid JavaScript`);
  }
  for (const name of ['livenessProbe', 'readinessProbe']) {
    for (const c of redisDeployment.spec.template.spec.containers) assert.ok(c[name], `redis: ${name}`);
  }
});

test('kubernetes: Secrets and the config are mounted read-only, whole folders; only an emptyDir is writable', () => {
  for (const p of [deployment, redisDeployment]) {
    const spec = p.spec.template.spec;
    const volumes = new Map((spec.volumes as Array<Record<string, any>>).map((v) => [v.name, v]));
    for (const c of spec.containers as Array<Record<string, any>>) {
      for (const m of (c.volumeMounts ?? []) as Array<Record<string, any>>) {
        const v = volumes.get(m.name);
        assert.ok(v, `${p.metadata.name}: volume ${m.name} exists`);
        assert.equal(m.subPath, undefined, `${m.name}: no subPath (never updated, so no reload)`);
        if (v.secret || v.projected || v.configMap) assert.equal(m.readOnly, true, `${p.metadata.name}: ${m.name} mounted readOnly`);
        else assert.ok(v.emptyDir?.sizeLimit, `${p.metadata.name}: ${m.name}: only a size-limited emptyDir may be writable`);
        const mode = v.secret?.defaultMode ?? v.projected?.defaultMode;
        if (v.secret || v.projected) assert.ok(mode !== undefined && (mode & 0o007) === 0 && (mode & 0o200) === 0, `${m.name}: Secret files read-only and not world-readable (${mode?.toString(8)})`);
      }
    }
  }
  // Redis's password comes from the Secret the broker reads it from.
  const envAuth = redisDeployment.spec.template.spec.containers[0].env.find((e: Record<string, any>) => e.valueFrom?.secretKeyRef);
  const brokerSide = secretFile(clusterConfig.redis.passwordFile as string);
  assert.deepEqual({ secret: envAuth.valueFrom.secretKeyRef.name, key: envAuth.valueFrom.secretKeyRef.key }, brokerSide);
});

test('kubernetes: the grace period covers preStop plus timeouts.shutdown', () => {
  const drainMs = parseDuration(clusterConfig.timeouts.shutdown);
  const preStop = container.lifecycle?.preStop;
  let preStopMs = 0;
  if (preStop?.sleep) preStopMs = preStop.sleep.seconds * 1000;
  else if (preStop) {
    const cmd = ((preStop.exec?.command ?? []) as string[]).join(' ');
    const ms = /setTimeout\([^,]*,\s*(\d+)\)/.exec(cmd)?.[1];
    const s = /^(?:\/bin\/)?sleep (\d+)$/.exec(cmd)?.[1];
    assert.ok(ms !== undefined || s !== undefined, 'preStop: a pause whose length the test can read');
    preStopMs = ms !== undefined ? Number(ms) : Number(s) * 1000;
  }
  assert.ok(preStopMs <= 10_000, 'a short preStop pause, not a drain');
  assert.ok(pod.terminationGracePeriodSeconds * 1000 >= preStopMs + drainMs + 5_000, `terminationGracePeriodSeconds (${pod.terminationGracePeriodSeconds}) > preStop (${preStopMs} ms) + shutdown (${drainMs} ms) + margin`);
});

test('kubernetes: Service on TCP 8443 keeping client addresses; PodDisruptionBudget minAvailable 2', () => {
  const svc = one(objects, 'Service', 'broker');
  assert.ok(selects(svc.spec.selector, podLabels));
  assert.deepEqual(svc.spec.ports.map((p: Record<string, unknown>) => p.protocol), ['TCP']);
  assert.equal(svc.spec.ports[0].port, 8443);
  const target = svc.spec.ports[0].targetPort;
  assert.ok(target === clusterConfig.listen.port || container.ports.some((p: Record<string, unknown>) => p.name === target && p.containerPort === clusterConfig.listen.port), 'targetPort is the listen port');
  if (svc.spec.type === 'LoadBalancer' || svc.spec.type === 'NodePort') assert.equal(svc.spec.externalTrafficPolicy, 'Local', 'partners\' addresses preserved (filters, bans)');

  const pdb = one(objects, 'PodDisruptionBudget', 'broker');
  assert.equal(pdb.spec.minAvailable, 2);
  assert.ok(pdb.spec.minAvailable < deployment.spec.replicas, 'a node drain can still evict one');
  assert.ok(selects(pdb.spec.selector.matchLabels, podLabels));

  assert.ok(selects(redisService.spec.selector, redisLabels));
  assert.equal(redisService.spec.type ?? 'ClusterIP', 'ClusterIP', 'Redis is not exposed outside the cluster');
});

test('kubernetes: NetworkPolicies: broker ingress only on 8443, egress only to Redis, upstreams and DNS; Redis only from the brokers', () => {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const brokerPolicy = policies.find((p) => selects(p.spec.podSelector.matchLabels, podLabels)) as Record<string, any>;
  assert.ok(brokerPolicy, 'a NetworkPolicy selects the broker pods');
  assert.deepEqual([...brokerPolicy.spec.policyTypes].sort(), ['Egress', 'Ingress']);
  assert.ok(brokerPolicy.spec.ingress.length > 0);
  for (const rule of brokerPolicy.spec.ingress) {
    assert.deepEqual(rule.ports, [{ port: 8443, protocol: 'TCP' }], 'every ingress rule: 8443/tcp only');
  }
  const egress = brokerPolicy.spec.egress as Array<Record<string, any>>;
  for (const rule of egress) assert.ok(rule.to?.length > 0 && rule.ports?.length > 0, 'every egress rule names its peers and ports');
  const toRedis = egress.find((r) => r.to.some((t: Record<string, any>) => selects(t.podSelector?.matchLabels, redisLabels)));
  assert.deepEqual(toRedis?.ports, [{ port: 6379, protocol: 'TCP' }]);
  const dns = egress.find((r) => r.ports.some((p: Record<string, unknown>) => p.port === 53));
  assert.ok(dns?.to.every((t: Record<string, any>) => t.podSelector?.matchLabels?.['k8s-app'] === 'kube-dns'), 'DNS only to the cluster DNS');
  assert.ok(!egress.some((r) => r.to.some((t: Record<string, any>) => t.ipBlock?.cidr === '0.0.0.0/0')), 'no egress to everywhere');
  for (const route of clusterConfig.routes) {
    const url = new URL(route.upstream);
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const allowed = egress.some((r) => r.to.some((t: Record<string, any>) => t.ipBlock && inCidr(url.hostname, t.ipBlock.cidr)) && r.ports.some((p: Record<string, unknown>) => p.port === port));
    assert.ok(allowed, `route ${route.name}: egress to ${url.hostname}:${port} is allowed`);
  }

  const redisPolicy = policies.find((p) => selects(p.spec.podSelector.matchLabels, redisLabels)) as Record<string, any>;
  assert.ok(redisPolicy, 'a NetworkPolicy selects the Redis pods');
  assert.deepEqual([...redisPolicy.spec.policyTypes].sort(), ['Egress', 'Ingress']);
  assert.deepEqual(redisPolicy.spec.egress ?? [], [], 'Redis reaches nothing');
  assert.equal(redisPolicy.spec.ingress.length, 1);
  const [rule] = redisPolicy.spec.ingress;
  assert.deepEqual(rule.ports, [{ port: 6379, protocol: 'TCP' }]);
  assert.ok(rule.from.length > 0 && rule.from.every((f: Record<string, any>) => selects(f.podSelector?.matchLabels, podLabels) && !f.ipBlock && !f.namespaceSelector), 'only from the broker pods');
});

// ------------------------------------------------------------------------------------------------
// nftables

const nftText = read('nftables/broker.nft');
const nftRules = (() => {
  const lines = nftText.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
  const defines = new Map<string, string>();
  for (const l of lines) {
    const m = /^define (\w+) = (.+)$/.exec(l);
    if (m) defines.set(m[1] as string, m[2] as string);
  }
  return lines.filter((l) => !l.startsWith('define ')).map((l) => l.replace(/\$(\w+)/g, (all, name: string) => defines.get(name) ?? all));
})();

test('nftables: 8443 accepted, the admin port dropped but on loopback, new connections limited per source, established allowed', () => {
  const admin = String(defaults.admin.port);
  assert.ok(nftRules.some((l) => /hook input\b.*policy drop;/.test(l)), 'an input chain with policy drop');
  const idx = (re: RegExp) => nftRules.findIndex((l) => re.test(l));
  const adminDrop = idx(new RegExp(`^iif(name)? != "lo" .*tcp dport ${admin} .*\\bdrop\\b`));
  assert.ok(adminDrop >= 0, `the admin port ${admin} is dropped on every interface but lo`);
  const established = idx(/^ct state established,related accept$/);
  assert.ok(established >= 0, 'established and related traffic accepted');
  const firstAccept = nftRules.findIndex((l, i) => i !== idx(/^iif(name)? "lo" accept$/) && /\baccept\b/.test(l) && !l.startsWith('type '));
  assert.ok(adminDrop < firstAccept, 'the admin drop comes before anything else is accepted');
  assert.ok(nftRules.some((l) => /tcp dport 8443\b.*\baccept$/.test(l)), 'tcp dport 8443 … accept');
  assert.ok(!nftRules.some((l) => new RegExp(`dport ${admin}\\b.*\\baccept\\b`).test(l)), 'nothing accepts the admin port');

  const rate = nftRules.find((l) => /tcp dport 8443 ct state new add @\w+ \{ ip saddr limit rate over (\d+)\/second burst (\d+) packets \}.*\bdrop\b/.test(l));
  assert.ok(rate, 'new connections to 8443 rate-limited per source address');
  const count = nftRules.find((l) => /tcp dport 8443 ct state new add @\w+ \{ ip saddr ct count over (\d+) \}/.test(l));
  assert.ok(count, 'open connections per source capped');
  // The broker's own limits (which log and ban) must bind before the firewall's in normal use.
  const c = validateConfig(parse(exampleText), '/etc/broker').candidate as BrokerConfig;
  const brokerPerSecond = c.filters.connectionRate.rate / (parseDuration(c.filters.connectionRate.per) / 1000);
  assert.ok(Number(/over (\d+)\/second/.exec(rate)?.[1]) >= brokerPerSecond, 'firewall rate ≥ filters.connectionRate');
  assert.ok(Number(/ct count over (\d+)/.exec(count)?.[1]) >= c.filters.maxConnectionsPerIp, 'firewall cap ≥ filters.maxConnectionsPerIp');
});

const nft = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => existsSync(p));

test('nftables: nft -c accepts the ruleset', { skip: nft ? false : 'nft is not installed (apt-get install nftables)' }, (t) => {
  const r = spawnSync(nft as string, ['-c', '-f', join(deploy, 'nftables', 'broker.nft')], { encoding: 'utf8', timeout: 30_000 });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0 && /Operation not permitted|Permission denied|cache initialization failed|Could not receive|Protocol not supported/i.test(out)) {
    t.skip(`nft -c cannot reach the kernel's nftables here: ${out.trim().split('\n')[0]}`);
    return;
  }
  assert.equal(r.status, 0, out);
});

// ------------------------------------------------------------------------------------------------
// Documentation

test('deploy/README.md covers ports, firewall, isolation, TLS inspection, low ports, replicas and Redis', () => {
  const doc = read('README.md');
  assert.match(doc, /^# Exposing the broker safely$/m);
  for (const needle of ['8443', '9901', 'nftables/broker.nft', 'TLS inspection', 'CAP_NET_BIND_SERVICE', 'read-only', 'Redis', 'replicas', 'externalTrafficPolicy: Local', 'MemoryDenyWriteExecute']) {
    assert.ok(doc.includes(needle), `mentions ${needle}`);
  }
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.match(readme, /^## Deployment$/m, 'the README has a Deployment section');
  assert.ok(readme.slice(readme.search(/^## Deployment$/m)).includes('deploy/README.md'), 'which points at deploy/README.md');
});
