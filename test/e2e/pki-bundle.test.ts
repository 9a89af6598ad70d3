/**
 * The onboarding kit with the built CLI: `pki issue --bundle` against a running `broker serve`
 * writes the partner's folder, and every snippet that can run here is run from it exactly as
 * written (the README includes the same files) and must print the upstream's answer: curl,
 * Python requests (urllib too), Java (keytool + HttpClient) when a JDK is here, Node, and the
 * README's `broker doctor --client` command. Go is written, and run only where `go` exists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, NODE, errorCode, runAsync } from '../helpers/cli.ts';
import { json, makeCa, type IssuedJson, type ListRow } from '../helpers/pki.ts';
import { plainUpstream, serve } from '../helpers/serve.ts';
import { within } from '../helpers/within.ts';

const has = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return !r.error && r.status === 0;
};
// java runs the snippet from source, which takes the compiler (a JDK, as .ci/run installs), not only a JRE
const JAVA = has('java', ['-version']) && has('javac', ['-version']) && has('keytool', ['-help']);
const REQUESTS = has('python3', ['-c', 'import requests']);
const GO = has('go', ['version']);

/** Runs a command without blocking this process (the upstream lives here); bounded in time. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return within(runAsync(cmd, args, { cwd, env: { ...process.env, ...env } }), 120_000, `${cmd} ${args.join(' ')}`);
}

const ANSWER = 'hello from the partner API';

async function setup(t: import('node:test').TestContext) {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']).code, 0);
  const up = await plainUpstream(t, ANSWER);
  const config = [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { enabled: false }',
    'pki: { dir: ./pki }',
    'tls: { server: localhost }',
    'log: { access: off, auth: off, audit: off }',
    'bans: { enabled: false }',
    'routes:',
    `  - { name: billing, path: /billing, upstream: "${up}", roles: [billing], methods: [GET, POST] }`,
    `  - { name: reports, path: /reports, upstream: "${up}", roles: [billing, ops], auth: [mtls, apiKey] }`,
    `  - { name: admin, path: /admin, upstream: "${up}", roles: [ops] }`,
    '',
  ].join('\n');
  const b = await serve(t, ca.root, config);
  return { ca, port: b.port };
}

test('pki issue --bundle: the kit has the credentials, a README for the partner and snippets that each get the upstream\'s answer', async (t) => {
  const { ca, port } = await setup(t);
  const url = `https://localhost:${port}`;
  const r = ca.signing(['pki', 'issue', 'acme', '--role', 'billing', '--ttl', '30d', '--contact', 'ops@acme.example', '--bundle', 'kits', '--url', url, '--config', 'broker.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const issued = json<IssuedJson & { bundle: { dir: string; readme: string; snippets: Record<string, string> } }>(r);
  const kit = join(ca.root, 'kits', 'acme');
  assert.equal(issued.bundle.dir, join('kits', 'acme'));
  assert.deepEqual(readdirSync(kit).sort(), ['README.md', 'acme.crt', 'acme.key', 'acme.p12', 'acme.p12.pass', 'ca.crt', 'snippets']);
  assert.deepEqual(readdirSync(join(kit, 'snippets')).sort(), ['Client.java', 'client.mjs', 'client.py', 'client_urllib.py', 'curl.sh', 'java-keystores.sh', 'main.go']);
  assert.equal(statSync(join(kit, 'acme.key')).mode & 0o777, 0o600);
  assert.equal(json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((x) => x.name === 'acme')?.contact, 'ops@acme.example');

  // the README: identity, roles, expiry, contact, URL, the routes the roles reach (and not the others), the tools
  const readme = readFileSync(join(kit, 'README.md'), 'utf8');
  assert.match(readme, /^# Connecting to the broker as `acme`$/m);
  assert.match(readme, /\| roles \| `billing` \|/);
  assert.ok(readme.includes(`valid until **${issued.notAfter}**`), 'expiry');
  assert.ok(readme.includes(issued.serial));
  assert.match(readme, /\| contact for expiry notices \| ops@acme\.example \|/);
  assert.ok(readme.includes(`| broker URL | \`${url}\` |`));
  assert.match(readme, /^\| `\/billing` \| GET, HEAD, POST \| certificate \| no \|$/m);
  assert.match(readme, /^\| `\/reports` \| any \| certificate \+ apiKey \| no \|$/m);
  assert.doesNotMatch(readme, /`\/admin`/, 'a route of another role is not listed');
  assert.ok(readme.includes(`broker doctor --client --url ${url} --cert acme.crt --key acme.key --ca ca.crt --path /billing`));
  assert.ok(readme.includes(`broker connect --url ${url} --cert acme.crt --key acme.key --ca ca.crt --listen 127.0.0.1:8080`));
  assert.ok(readme.includes(`broker renew --url ${url} --cert acme.crt --key acme.key --ca ca.crt --out .`));
  for (const f of readdirSync(join(kit, 'snippets'))) assert.ok(readme.includes(readFileSync(join(kit, 'snippets', f), 'utf8')), `the README includes snippets/${f} as it is`);
  assert.doesNotMatch(readme, /BROKER_HOST|PRIVATE KEY/);

  const answered = (what: string, res: { code: number | null; stdout: string; stderr: string }) => {
    assert.equal(res.code, 0, `${what}: ${res.stderr}`);
    assert.ok(res.stdout.includes(ANSWER) && res.stdout.includes('"url":"/billing"'), `${what} printed the upstream's answer: ${res.stdout}`);
  };
  answered('curl', await run('sh', ['snippets/curl.sh'], kit));
  answered('node', await run(NODE, ['snippets/client.mjs'], kit));
  answered('python urllib', await run('python3', ['snippets/client_urllib.py'], kit));
  await t.test('python requests', { skip: REQUESTS ? false : 'python3 has no requests module here (the urllib snippet ran instead)' }, async () => {
    answered('python requests', await run('python3', ['snippets/client.py'], kit));
  });
  await t.test('java (keytool + HttpClient)', { skip: JAVA ? false : 'no java/keytool here' }, async () => {
    const stores = await run('sh', ['snippets/java-keystores.sh'], kit);
    assert.equal(stores.code, 0, stores.stderr);
    answered('java', await run('java', ['snippets/Client.java'], kit));
  });
  await t.test('go', { skip: GO ? false : 'no go toolchain here (main.go is written, not run)' }, async () => {
    answered('go', await run('go', ['run', 'snippets/main.go'], kit, { GOFLAGS: '-mod=mod' }));
  });

  // the README's doctor command, as written, finds the way in
  const doctorLine = /^broker doctor --client .*$/m.exec(readme)?.[0] as string;
  const doctor = await run(NODE, [BIN, ...doctorLine.split(' ').slice(1)], kit);
  assert.equal(doctor.code, 0, `${doctor.stdout}\n${doctor.stderr}`);
});

test('pki issue --bundle without --url or --config: placeholders said loudly; a bad --url or --out is refused before anything is issued', async (t) => {
  const ca = makeCa(t);
  const plain = ca.signing(['pki', 'issue', 'globex', '--role', 'billing', '--bundle', 'kits']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /placeholder https:\/\/BROKER_HOST:8443/);
  assert.match(plain.stderr, /no --config/);
  assert.match(plain.stdout, /onboarding kit kits\/globex\/README\.md/);
  const readme = readFileSync(join(ca.root, 'kits', 'globex', 'README.md'), 'utf8');
  assert.match(readme, /The broker URL above is a placeholder/);
  assert.match(readme, /made without the broker's configuration \(`--config`\)/);
  assert.match(readme, /\(none on file/);
  assert.ok(readFileSync(join(ca.root, 'kits', 'globex', 'snippets', 'curl.sh'), 'utf8').includes('https://BROKER_HOST:8443/'));

  const again = ca.signing(['pki', 'issue', 'globex2', '--role', 'billing', '--bundle', 'kits', '--url', 'http://broker.example:8443']);
  assert.equal(again.code, 2);
  assert.equal(errorCode(again.stderr), 'BRK_ERR_USAGE_BUNDLE_URL');
  const out = ca.signing(['pki', 'issue', 'globex3', '--role', 'billing', '--bundle', 'kits', '--out', 'x']);
  assert.equal(out.code, 2);
  assert.equal(errorCode(out.stderr), 'BRK_ERR_USAGE');
  const names = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).map((x) => x.name);
  assert.deepEqual(names, ['globex'], 'the refused ones issued nothing');
  assert.equal(existsSync(join(ca.root, 'kits', 'globex2')), false);
});
