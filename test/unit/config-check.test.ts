/**
 * What `config check` says about a config: the README's own sample passes, every problem has its
 * line and column, a misspelt key gets a suggestion, and schema errors are words, not regular
 * expressions. `config print`'s redaction is here too. No sockets: validateConfig only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigSchema, parseConfigSource, validateConfig, type Problem } from '../../src/config/index.ts';
import { PATTERN_WORDS } from '../../src/config/messages.ts';
import { REDACTED, redactSecrets } from '../../src/config/redact.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Validates YAML text as `config check` does, with positions. */
function check(text: string, dir = '/config-dir'): { problems: string[]; details: Problem[] } {
  const parsed = parseConfigSource(text, 'broker.yaml');
  assert.deepEqual(parsed.syntax, []);
  return validateConfig(parsed.value, dir, parsed.locate);
}

const BASE = 'tls: { server: broker }\n';

test('the README\'s configuration sample passes validateConfig (files it names are stand-ins)', (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const sample = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(sample, 'a ```yaml block in the Configuration section');
  const dir = mkdtempSync(join(tmpdir(), 'broker-readme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let { problems } = check(sample, dir);
  // The sample names files the reader provides (CA bundles, token and password files): stand in for them.
  const missing = problems.map((p) => /: file (\S+) not found$/.exec(p)?.[1]).filter((f): f is string => f !== undefined);
  for (const f of missing) {
    assert.ok(f.startsWith(dir), `${f} is relative to the config`);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, '');
  }
  if (missing.length) ({ problems } = check(sample, dir));
  assert.deepEqual(problems, []);
});

test('a misspelt key gets its line, its column and a suggestion', () => {
  const { details } = check(`${BASE}listen: { host: 127.0.0.1, prot: 8443 }\nroutse:\n  - { name: a, path: /a, upstream: "http://127.0.0.1:1", roles: [x] }\n`);
  assert.deepEqual(details.toSorted((a, b) => (a.line ?? 0) - (b.line ?? 0)), [
    { path: 'listen.prot', line: 2, column: 28, message: 'unknown key "prot" (did you mean "port"?)' },
    { path: 'routse', line: 3, column: 1, message: 'unknown key "routse" (did you mean "routes"?)' },
  ]);
});

test('an unknown key without a near neighbour lists what is known there', () => {
  const { details } = check(`${BASE}listen: { colour: blue }\n`);
  assert.equal(details.length, 1);
  assert.match(details[0]?.message ?? '', /^unknown key "colour" \(known here: host, port\)$/);
});

test('upstream: htp://… is refused, at its line and column, with the likely intent', () => {
  const { details } = check(`${BASE}routes:\n  - name: a\n    path: /a\n    upstream: htp://127.0.0.1:9000\n    roles: [x]\n`);
  assert.deepEqual(details, [
    { path: 'routes[0].upstream', line: 5, column: 15, message: 'scheme "htp" is not supported: the upstream is an http:// or https:// URL, like http://127.0.0.1:9001 (did you mean http://?)' },
  ]);
});

test('an upstream is checked even when the rest of its route is broken', () => {
  const { problems } = check(`${BASE}routes:\n  - { name: a, upstream: "htp://127.0.0.1:9000", roles: [x] }\n`);
  assert.ok(problems.includes('routes[0].path: missing: this setting is required (prefix on the normalised path, segment-aligned)'), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('routes[0].upstream: scheme "htp"')), problems.join('\n'));
});

test('schema errors are words: durations, sizes, URLs, CIDRs, choices and types each explained', () => {
  const { details } = check(
    [
      'tls: { server: broker, handshakeTimeout: 10 seconds, minVersion: TLSv1.4 }',
      'limits: { bodySize: 1 megabyte }',
      'rateLimit: { store: "http://127.0.0.1:6379" }',
      'filters: { allowIps: [10.0.0.0/33, "not-an-ip"] }',
      'listen: { port: eighty }',
    ].join('\n'),
  );
  const by = Object.fromEntries(details.map((p) => [p.path, p]));
  assert.deepEqual(by['tls.handshakeTimeout'], { path: 'tls.handshakeTimeout', line: 1, column: 42, message: '"10 seconds" is not a duration: a whole number and a unit with no space, like 250ms, 10s, 5m, 12h or 90d' });
  assert.equal(by['tls.minVersion']?.message, '"TLSv1.4" is not one of TLSv1.2, TLSv1.3 (did you mean TLSv1.2?)');
  assert.equal(by['limits.bodySize']?.message, '"1 megabyte" is not a size: a whole number of bytes, or one with a unit, like 512, 16kb, 1mb or 2gb');
  assert.equal(by['rateLimit.store']?.message, '"http://127.0.0.1:6379" is not memory, or a Redis URL like redis://127.0.0.1:6379 (rediss:// for TLS)');
  assert.match(by['filters.allowIps[0]']?.message ?? '', /prefix length outside 0-32 \(the number after "\/" counts/);
  assert.match(by['filters.allowIps[1]']?.message ?? '', /is not an IP address or CIDR block \(like 203\.0\.113\.7/);
  assert.equal(by['listen.port']?.message, 'expected a whole number, got "eighty"');
  for (const p of details) {
    assert.doesNotMatch(p.message, /\^|\$'|\\d|Expected/, `${p.path}: no regular expression, no TypeBox wording`);
    assert.ok(p.line !== null && p.column !== null, `${p.path} has a position`);
  }
});

test('a size may be a bare number (YAML reads 512 as one); a negative one is refused in words', () => {
  assert.deepEqual(check(`${BASE}limits: { bodySize: 512 }\nlog: { buffer: 0 }\n`).problems, []);
  assert.match(check(`${BASE}limits: { bodySize: -1 }\n`).problems.join('\n'), /^limits\.bodySize: -1 is not a size: /);
});

test('every pattern in the schema has its words (a new pattern needs an entry in PATTERN_WORDS)', () => {
  const patterns = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'pattern' && typeof x === 'string') patterns.add(x);
        else walk(x);
      }
    }
  };
  walk(ConfigSchema);
  assert.ok(patterns.size > 5);
  assert.deepEqual([...patterns].filter((p) => !(p in PATTERN_WORDS)), []);
});

test('a syntax error has its line and column', () => {
  const parsed = parseConfigSource('listen: { host: 127.0.0.1 }\nlisten: { port: 8443 }\n', 'broker.yaml');
  assert.equal(parsed.value, undefined);
  assert.deepEqual(parsed.syntax, [{ path: '(syntax)', line: 2, column: 1, message: 'Map keys must be unique' }]);
});

test('config print never shows a secret written in the config; file names and the rest stay', () => {
  const shown = redactSecrets({
    tracing: { otlp: { endpoint: 'https://otel.example/v1/traces?api_key=k1', headers: { 'x-api-key': 'k2', authorization: 'Bearer k3' } } },
    alerts: { webhook: 'https://hooks.example/services/T0/B0/k4', dedupWindow: '10m' },
    rateLimit: { store: 'redis://user:k5@127.0.0.1:6379' },
    admin: { tokenFile: '/etc/broker/admin.token', host: '127.0.0.1' },
    auth: { apiKeyHeader: 'x-api-key', basicRealm: 'broker' },
    some: { password: 'k6', clientSecret: 'k7', pem: '-----BEGIN PRIVATE KEY-----\nk8\n-----END PRIVATE KEY-----' },
    forward: { rules: [{ roles: ['partner'], allowPrivate: ['10.0.0.0/8'] }] },
    routes: [{ name: 'tokens', passCredentials: true, upstreamTls: { key: '/etc/broker/up.key' } }],
  });
  const text = JSON.stringify(shown);
  for (const secret of ['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8']) assert.ok(!text.includes(secret), `${secret} is hidden: ${text}`);
  assert.ok(text.includes(REDACTED));
  for (const kept of ['/etc/broker/admin.token', 'x-api-key', 'https://hooks.example/', 'https://otel.example/v1/traces', '10.0.0.0/8', '/etc/broker/up.key', 'tokens', '10m']) assert.ok(text.includes(kept), `${kept} is shown`);
});
