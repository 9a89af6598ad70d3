/**
 * The onboarding kit of an invitation, with the built CLI: `pki invite --bundle` against a running
 * `broker serve` (enrollment.enabled, listenCertOptional) writes the partner's folder with the
 * token and the CA and no key; in that folder the README's enroll command runs exactly as written
 * (a `broker` on PATH is the built CLI), then every snippet that can run here must print the
 * upstream's answer: curl, Python requests and urllib, Java (keytool + HttpClient), Node. A refused
 * `invite --bundle` (bad --url or --enroll-url, an existing kit without --force) creates no invitation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BIN, NODE, errorCode, runAsync, tempDir } from '../helpers/cli.ts';
import { json, makeCa, type TestCa } from '../helpers/pki.ts';
import { plainUpstream, serve } from '../helpers/serve.ts';
import { within } from '../helpers/within.ts';

const has = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return !r.error && r.status === 0;
};
// java runs the snippet from source, which takes the compiler (a JDK, as .ci/run installs), not only a JRE
const JAVA = has('java', ['-version']) && has('javac', ['-version']) && has('keytool', ['-help']);
const REQUESTS = has('python3', ['-c', 'import requests']);

type Ran = { code: number | null; stdout: string; stderr: string };

/** Runs a command without blocking this process (the upstream lives here); bounded in time. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string | undefined> = {}): Promise<Ran> {
  const full: NodeJS.ProcessEnv = { ...process.env, BROKER_P12_PASSWORD: undefined, BROKER_ENROLL_TOKEN: undefined, ...env };
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
  return within(runAsync(cmd, args, { cwd, env: full }), 120_000, `${cmd} ${args.join(' ')}`);
}

/** A port free right now on 127.0.0.1 (the config names the certificate-optional port, as an operator's does). */
async function freePort(): Promise<number> {
  const s = createServer();
  await within(new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve)), 10_000, 'listen');
  const port = (s.address() as AddressInfo).port;
  await within(new Promise<void>((resolve) => s.close(() => resolve())), 10_000, 'close');
  return port;
}

/** Every file under `dir`, concatenated. */
function allText(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

const invitations = (ca: TestCa) => json<Array<{ id: string; name: string }>>(ca.run(['pki', 'invite', '--list', '--json']));

const ANSWER = 'hello from the partner API';

test('pki invite --bundle: the kit holds only the token; its README\'s enroll command, run as written, makes the key, and each snippet gets the upstream\'s answer', async (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']).code, 0);
  const up = await plainUpstream(t, ANSWER);
  const optionalPort = await freePort();
  const config = [
    'listen: { host: 127.0.0.1, port: 0 }',
    `listenCertOptional: { host: 127.0.0.1, port: ${optionalPort} }`,
    'admin: { enabled: false }',
    'pki: { dir: ./pki }',
    'tls: { server: localhost }',
    'log: { access: off, auth: off, audit: off }',
    'bans: { enabled: false }',
    'enrollment: { enabled: true, passphraseFile: ./ca.pass, renewAfter: 0 }',
    'routes:',
    `  - { name: billing, path: /billing, upstream: "${up}", roles: [billing], methods: [GET, POST] }`,
    `  - { name: admin, path: /admin, upstream: "${up}", roles: [ops] }`,
    '',
  ].join('\n');
  const b = await serve(t, ca.root, config);
  assert.match(b.out.stderr, new RegExp(`"optionalPort":${optionalPort}`));
  const url = `https://localhost:${b.port}`;
  const enrollUrl = `https://localhost:${optionalPort}`;

  const r = ca.run(['pki', 'invite', 'acme', '--role', 'billing', '--cert-ttl', '7d', '--contact', 'ops@acme.example', '--bundle', 'kits', '--url', url, '--config', 'broker.yaml', '--json']);
  const inv = json<{ token: string; expires: string; bundle: { dir: string; readme: string; token: string } }>(r);
  assert.equal(r.stderr, '', 'nothing to warn about: URL, enrolment URL and routes are known');
  const kit = join(ca.root, 'kits', 'acme');
  assert.equal(inv.bundle.dir, join('kits', 'acme'));

  // before enrolment: the token (0600) and the CA; no key, no certificate of the partner
  assert.deepEqual(readdirSync(kit).sort(), ['README.md', 'acme.token', 'ca.crt', 'snippets']);
  assert.equal(readFileSync(join(kit, 'acme.token'), 'utf8'), `${inv.token}\n`);
  assert.equal(statSync(join(kit, 'acme.token')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(kit, 'ca.crt'), 'utf8'), readFileSync(ca.file('ca.crt'), 'utf8'));
  assert.doesNotMatch(allText(kit), /PRIVATE KEY/);

  const readme = readFileSync(join(kit, 'README.md'), 'utf8');
  assert.match(readme, /^# Connecting to the broker as `acme`$/m);
  assert.ok(readme.includes(`valid until **${inv.expires}**; the certificate it gets lives 7d`));
  assert.match(readme, /\| contact for expiry notices \| ops@acme\.example \|/);
  assert.ok(readme.includes(`| broker URL | \`${url}\` |`));
  assert.match(readme, /^\| `\/billing` \| GET, HEAD, POST \| certificate \| no \|$/m);
  assert.doesNotMatch(readme, /`\/admin`/);
  assert.doesNotMatch(readme, /BROKER_HOST|PRIVATE KEY/);
  const enrollLine = `broker enroll --url ${enrollUrl} --token "$(cat acme.token)" --out . --p12`;
  assert.ok(readme.includes(`\`\`\`sh\n${enrollLine}\n\`\`\``), 'the README gives the enroll command with the certificate-optional listener');
  assert.ok(readme.indexOf(enrollLine) < readme.indexOf('## Try it'), 'enrolment comes before the snippets');
  assert.ok(readme.includes(`broker renew --url ${url} --cert acme.crt --key acme.key --ca ca.crt --out .`), 'renewal goes to the main listener');
  for (const f of readdirSync(join(kit, 'snippets'))) assert.ok(readme.includes(readFileSync(join(kit, 'snippets', f), 'utf8')), `the README includes snippets/${f} as it is`);

  // the partner's machine: `broker` on PATH is the built CLI; the enroll line runs exactly as written
  const bin = tempDir(t, 'broker-bin-');
  writeFileSync(join(bin, 'broker'), `#!/bin/sh\nexec "${NODE}" "${BIN}" "$@"\n`);
  chmodSync(join(bin, 'broker'), 0o755);
  const line = /^broker enroll .*$/m.exec(readme)?.[0] as string;
  assert.equal(line, enrollLine);
  const enrolled = await run('sh', ['-c', line], kit, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(enrolled.code, 0, `${enrolled.stdout}\n${enrolled.stderr}`);
  assert.match(enrolled.stdout, /enrolled as acme \(roles: billing\)/);
  assert.deepEqual(readdirSync(kit).sort(), ['README.md', 'acme.crt', 'acme.key', 'acme.p12', 'acme.p12.pass', 'acme.token', 'ca.crt', 'snippets']);
  assert.equal(statSync(join(kit, 'acme.key')).mode & 0o777, 0o600);
  const keyBody = readFileSync(join(kit, 'acme.key'), 'utf8').split('\n').slice(1, 3).join('');
  assert.ok(!allText(ca.dir).includes(keyBody), 'the partner key appears nowhere in the CA store');

  const answered = (what: string, res: Ran) => {
    assert.equal(res.code, 0, `${what}: ${res.stderr}`);
    assert.ok(res.stdout.includes(ANSWER) && res.stdout.includes('"url":"/billing"'), `${what} printed the upstream's answer: ${res.stdout}`);
  };
  answered('curl', await run('sh', ['snippets/curl.sh'], kit));
  answered('node', await run(NODE, ['snippets/client.mjs'], kit));
  answered('python urllib', await run('python3', ['snippets/client_urllib.py'], kit));
  await t.test('python requests', { skip: REQUESTS ? false : 'python3 has no requests module here (the urllib snippet ran instead)' }, async () => {
    answered('python requests', await run('python3', ['snippets/client.py'], kit));
  });
  await t.test('java (keytool + HttpClient), with the password enroll generated into acme.p12.pass', { skip: JAVA ? false : 'no java/keytool here' }, async () => {
    const stores = await run('sh', ['snippets/java-keystores.sh'], kit);
    assert.equal(stores.code, 0, stores.stderr);
    answered('java', await run('java', ['snippets/Client.java'], kit));
  });

  // the README's doctor and renew commands, as written, go to the main listener and work
  const path = `${bin}:${process.env.PATH}`;
  const doctorLine = /^broker doctor --client .*$/m.exec(readme)?.[0] as string;
  const doctor = await run('sh', ['-c', doctorLine], kit, { PATH: path });
  assert.equal(doctor.code, 0, `${doctor.stdout}\n${doctor.stderr}`);
  const before = readFileSync(join(kit, 'acme.crt'), 'utf8');
  const renewLine = /^broker renew .*$/m.exec(readme)?.[0] as string;
  const renewed = await run('sh', ['-c', renewLine], kit, { PATH: path });
  assert.equal(renewed.code, 0, `${renewed.stdout}\n${renewed.stderr}`);
  assert.notEqual(readFileSync(join(kit, 'acme.crt'), 'utf8'), before, 'renew replaced the certificate');
  answered('curl after renew', await run('sh', ['snippets/curl.sh'], kit));
  await t.test('java after renew: the README\'s PKCS#12 line rebuilds the key store with the new certificate', { skip: JAVA ? false : 'no java/keytool here' }, async () => {
    const p12Line = /^openssl pkcs12 -export .*$/m.exec(readme)?.[0] as string;
    const rebuilt = await run('sh', ['-c', p12Line], kit);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    const serial = new X509Certificate(readFileSync(join(kit, 'acme.crt'))).serialNumber;
    const listed = await run('keytool', ['-list', '-v', '-keystore', 'keystore.p12', '-storetype', 'PKCS12', '-storepass:file', 'acme.p12.pass'], kit);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout.replace(/\s/g, '').toUpperCase(), new RegExp(`SERIALNUMBER:0*${serial.replace(/^0+/, '')}`), 'the key store holds the renewed certificate');
    answered('java after renew', await run('java', ['snippets/Client.java'], kit));
  });

  // the token was used: the same command again is refused with its code
  const again = await run('sh', ['-c', `${line} --force`], kit, { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(errorCode(again.stderr), 'BRK_ERR_ENROLL_TOKEN_USED', again.stderr);
});

test('pki invite --bundle with BROKER_P12_PASSWORD: enroll writes no .p12.pass and the Java snippets take the same variable', { skip: JAVA ? false : 'no java/keytool here' }, async (t) => {
  const ca = makeCa(t);
  assert.equal(ca.signing(['pki', 'server', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1']).code, 0);
  const up = await plainUpstream(t, ANSWER);
  const config = [
    'listen: { host: 127.0.0.1, port: 0 }',
    'listenCertOptional: { host: 127.0.0.1, port: 0 }',
    'admin: { enabled: false }',
    'pki: { dir: ./pki }',
    'tls: { server: localhost }',
    'log: { access: off, auth: off, audit: off }',
    'bans: { enabled: false }',
    'enrollment: { enabled: true, passphraseFile: ./ca.pass }',
    'routes:',
    `  - { name: billing, path: /billing, upstream: "${up}", roles: [billing] }`,
    '',
  ].join('\n');
  const b = await serve(t, ca.root, config);
  const opt = Number(/"optionalPort":(\d+)/.exec(b.out.stderr)?.[1]);
  // port 0 in the config tells nothing: --enroll-url says where the partner enrols
  const r = ca.run(['pki', 'invite', 'initech', '--role', 'billing', '--bundle', 'kits', '--url', `https://localhost:${b.port}`, '--enroll-url', `https://127.0.0.1:${opt}`, '--config', 'broker.yaml']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /onboarding kit kits\/initech\/README\.md/);
  const kit = join(ca.root, 'kits', 'initech');
  const readme = readFileSync(join(kit, 'README.md'), 'utf8');
  const line = /^broker enroll .*$/m.exec(readme)?.[0] as string;
  assert.equal(line, `broker enroll --url https://127.0.0.1:${opt} --token "$(cat initech.token)" --out . --p12`);

  const bin = tempDir(t, 'broker-bin-');
  writeFileSync(join(bin, 'broker'), `#!/bin/sh\nexec "${NODE}" "${BIN}" "$@"\n`);
  chmodSync(join(bin, 'broker'), 0o755);
  const env = { PATH: `${bin}:${process.env.PATH}`, BROKER_P12_PASSWORD: 'partner chose this' };
  const enrolled = await run('sh', ['-c', line], kit, env);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.equal(existsSync(join(kit, 'initech.p12.pass')), false, 'the password is the partner\'s, not written down');
  const stores = await run('sh', ['snippets/java-keystores.sh'], kit, env);
  assert.equal(stores.code, 0, stores.stderr);
  const java = await run('java', ['snippets/Client.java'], kit, env);
  assert.equal(java.code, 0, java.stderr);
  assert.ok(java.stdout.includes(ANSWER), java.stdout);
  // without the variable (and no .p12.pass), the keystore script says what to do
  const missing = await run('sh', ['snippets/java-keystores.sh'], kit, { BROKER_P12_PASSWORD: undefined });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /set BROKER_P12_PASSWORD to the password of initech\.p12/);
});

test('pki invite --bundle: placeholders said loudly; a refused kit creates no invitation; --force replaces the kit', async (t) => {
  const ca = makeCa(t);
  const plain = ca.run(['pki', 'invite', 'globex', '--role', 'billing', '--bundle', 'kits']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /placeholder https:\/\/BROKER_HOST:8443/);
  assert.match(plain.stderr, /placeholder https:\/\/BROKER_HOST:8444/);
  assert.match(plain.stderr, /no --config/);
  const readme = readFileSync(join(ca.root, 'kits', 'globex', 'README.md'), 'utf8');
  assert.match(readme, /The enrolment address above is a placeholder/);
  assert.ok(readme.includes('broker enroll --url https://BROKER_HOST:8444 --token "$(cat globex.token)" --out . --p12'));
  assert.equal(invitations(ca).length, 1);

  // a config whose enrolment is off, or that has no certificate-optional listener: said, not refused
  writeFileSync(join(ca.root, 'off.yaml'), 'listen: { host: 127.0.0.1, port: 0 }\ntls: { server: localhost }\nroutes: []\n');
  const off = ca.run(['pki', 'invite', 'hooli', '--role', 'billing', '--bundle', 'kits', '--url', 'https://broker.example:8443', '--config', 'off.yaml']);
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stderr, /enrollment\.enabled false/);
  assert.match(off.stderr, /no listenCertOptional/);
  const onPort = 'listen: { host: 127.0.0.1, port: 0 }\ntls: { server: localhost }\nlistenCertOptional: { port: 9444 }\nenrollment: { enabled: true }\nroutes: []\n';
  writeFileSync(join(ca.root, 'on.yaml'), onPort);
  const on = ca.run(['pki', 'invite', 'vandelay', '--role', 'billing', '--bundle', 'kits', '--url', 'https://broker.example:8443', '--config', 'on.yaml']);
  assert.equal(on.code, 0, on.stderr);
  assert.ok(readFileSync(join(ca.root, 'kits', 'vandelay', 'README.md'), 'utf8').includes('broker enroll --url https://broker.example:9444 --token'), 'the host of --url, the port of listenCertOptional');
  assert.equal(invitations(ca).length, 3);

  const bad = ca.run(['pki', 'invite', 'globex2', '--role', 'billing', '--bundle', 'kits', '--url', 'http://broker.example:8443']);
  assert.equal(bad.code, 2);
  assert.equal(errorCode(bad.stderr), 'BRK_ERR_USAGE_BUNDLE_URL');
  const badEnroll = ca.run(['pki', 'invite', 'globex2', '--role', 'billing', '--bundle', 'kits', '--enroll-url', 'https://broker.example:8444/enroll']);
  assert.equal(errorCode(badEnroll.stderr), 'BRK_ERR_USAGE_BUNDLE_URL');
  assert.match(badEnroll.stderr, /--enroll-url/);
  const noBundle = ca.run(['pki', 'invite', 'globex2', '--role', 'billing', '--url', 'https://broker.example:8443']);
  assert.equal(errorCode(noBundle.stderr), 'BRK_ERR_USAGE');
  const token = readFileSync(join(ca.root, 'kits', 'globex', 'globex.token'), 'utf8');
  const exists = ca.run(['pki', 'invite', 'globex', '--role', 'billing', '--bundle', 'kits']);
  assert.equal(exists.code, 1);
  assert.equal(errorCode(exists.stderr), 'BRK_ERR_PKI_OUTPUT_EXISTS');
  assert.equal(readFileSync(join(ca.root, 'kits', 'globex', 'globex.token'), 'utf8'), token, 'the kit is left as it was');
  assert.equal(existsSync(join(ca.root, 'kits', 'globex2')), false);
  assert.equal(invitations(ca).length, 3, 'the refused ones created no invitation');

  const forced = ca.run(['pki', 'invite', 'globex', '--role', 'billing', '--bundle', 'kits', '--force', '--json']);
  const again = json<{ token: string }>(forced);
  assert.equal(readFileSync(join(ca.root, 'kits', 'globex', 'globex.token'), 'utf8'), `${again.token}\n`);
  assert.equal(invitations(ca).length, 4);
});
