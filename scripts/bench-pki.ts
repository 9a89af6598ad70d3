/**
 * PKI throughput: leaf certificates per second in process (the whole `issueClient` path, and bare
 * `createLeaf` signing), the CRL build at 30,000 revoked entries (alone, and a whole `revoke` with
 * the longest event-loop block it caused), and the wall time of one `broker pki issue` CLI run.
 * Prints a Markdown table.
 *
 *   npm run bench:pki                      # 200 issues, 1000 leaves, 10 CLI runs, ec-p256
 *   npm run bench:pki -- --issues 500 --key-type rsa-3072
 *
 * Not part of `npm test`: the numbers depend on the machine. Run `npm run build` first (the CLI
 * row spawns dist/main.js).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createLeaf, leafWindow, randomSerial, signCrl } from '../src/pki/certs.ts';
import { revoke } from '../src/pki/revoke.ts';
import { initCa } from '../src/pki/init.ts';
import { issueClient } from '../src/pki/issue.ts';
import { assertKeyType, generateKeyPair } from '../src/pki/keys.ts';
import { CaStore } from '../src/pki/store.ts';

const { values } = parseArgs({
  options: {
    issues: { type: 'string', default: '200' },
    leaves: { type: 'string', default: '1000' },
    'cli-runs': { type: 'string', default: '10' },
    'key-type': { type: 'string', default: 'ec-p256' },
    'crl-entries': { type: 'string', default: '30000' },
  },
});
const ISSUES = Number(values.issues);
const LEAVES = Number(values.leaves);
const CLI_RUNS = Number(values['cli-runs']);
const KEY_TYPE = assertKeyType(values['key-type']);
const CRL_ENTRIES = Number(values['crl-entries']);
const BIN = resolve(import.meta.dirname, '..', 'dist', 'main.js');
const DAY = 86_400_000;

interface Row {
  what: string;
  runs: number;
  result: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const perSecond = (n: number, ms: number) => `${((n * 1000) / ms).toFixed(0)} /s (${(ms / n).toFixed(2)} ms each)`;

async function inProcess(work: string): Promise<Row[]> {
  const dir = join(work, 'store');
  await initCa({ dir, name: 'Bench CA', keyType: KEY_TYPE, trustDomain: 'bench.example', passphrase: undefined });
  const store = CaStore.open(dir);
  const outDir = join(work, 'handout');

  // the whole path a CLI issue takes after start-up: lock, inventory, key, sign, stage, fsync, audit
  await issueClient(store, { name: 'warm-up', roles: ['bench'], ttlMs: 90 * DAY, outDir });
  let t0 = performance.now();
  for (let i = 0; i < ISSUES; i++) {
    await issueClient(store, { name: `client-${i}`, roles: ['bench'], ttlMs: 90 * DAY, outDir });
  }
  const issueMs = performance.now() - t0;

  // bare signing with the issuing key: createLeaf on one public key, then with a new key each time
  const { intermediate } = await store.loadKeys(store.readInventory());
  const { publicKey } = await generateKeyPair(KEY_TYPE);
  const leaf = (name: string, key: CryptoKey) =>
    createLeaf({ kind: 'client', name, roles: ['bench'], uri: `spiffe://bench.example/client/${name}`, publicKey: key, serial: randomSerial(), ...leafWindow(90 * DAY, intermediate.cert) }, intermediate);
  for (let i = 0; i < 20; i++) await leaf('warm-up', publicKey);
  t0 = performance.now();
  for (let i = 0; i < LEAVES; i++) await leaf(`leaf-${i}`, publicKey);
  const signMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < LEAVES; i++) await leaf(`leaf-${i}`, (await generateKeyPair(KEY_TYPE)).publicKey);
  const keyAndSignMs = performance.now() - t0;

  return [
    { what: `\`issueClient\` in process (lock, inventory, new key, sign, hand-out files, fsync, audit)`, runs: ISSUES, result: perSecond(ISSUES, issueMs) },
    { what: '`createLeaf` signing only (one public key)', runs: LEAVES, result: perSecond(LEAVES, signMs) },
    { what: '`generateKeyPair` + `createLeaf`', runs: LEAVES, result: perSecond(LEAVES, keyAndSignMs) },
  ];
}

/** A store with CRL_ENTRIES revoked leaves (records only, added in one change), then the CRL on its own and a whole revoke. */
async function crlAtScale(work: string): Promise<Row[]> {
  const dir = join(work, 'crl-store');
  await initCa({ dir, name: 'Bench CRL CA', keyType: KEY_TYPE, trustDomain: 'bench.example', passphrase: undefined });
  const store = CaStore.open(dir);
  await issueClient(store, { name: 'victim', roles: ['bench'], ttlMs: 90 * DAY, outDir: join(work, 'crl-handout') });
  await store.mutate('bench-seed', undefined, async (ctx) => {
    const at = new Date().toISOString();
    for (let i = 0; i < CRL_ENTRIES; i++) {
      ctx.inventory.certs.push({ name: `seed-${i}`, type: 'client', roles: ['bench'], serial: randomSerial(), notBefore: at, notAfter: at, fingerprint: randomBytes(32).toString('hex'), source: 'issue', issuer: ctx.inventory.ca.intermediate.serial, revokedAt: at, reason: 'superseded' });
    }
    return { result: undefined, audit: {} };
  });
  const { intermediate } = await store.loadKeys(store.readInventory());
  const entries = store.readInventory().certs.filter((c) => c.revokedAt).map((c) => ({ serial: c.serial, revokedAt: new Date(c.revokedAt as string), reason: 4 }));
  signCrl({ issuer: intermediate, number: 1, entries: entries.slice(0, 100), validityMs: DAY }); // warm-up
  const builds: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    signCrl({ issuer: intermediate, number: 2 + i, entries, validityMs: DAY });
    builds.push(performance.now() - t0);
  }
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const t0 = performance.now();
  await revoke(store, { target: 'victim', reason: 'keyCompromise' });
  const revokeMs = performance.now() - t0;
  loop.disable();
  const n = CRL_ENTRIES.toLocaleString('en-US');
  return [
    { what: `CRL build, ${n} entries (\`signCrl\`: DER + signature)`, runs: builds.length, result: `${median(builds).toFixed(0)} ms median (min ${Math.min(...builds).toFixed(0)}, max ${Math.max(...builds).toFixed(0)})` },
    { what: `\`revoke\` in a store of ${n} revoked entries (lock, inventory, both CRLs, fsync, audit)`, runs: 1, result: `${revokeMs.toFixed(0)} ms; longest event-loop block ${(loop.max / 1e6).toFixed(0)} ms` },
  ];
}

function cliWallTimes(work: string, args: (i: number) => string[], runs: number): number[] {
  const times: number[] = [];
  for (let i = -1; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [BIN, ...args(i)], { cwd: work, encoding: 'utf8', timeout: 60_000 });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`broker ${args(i).join(' ')} failed: ${r.stderr}`);
    if (i >= 0) times.push(ms); // run -1 warms the file cache
  }
  return times;
}

function cli(work: string): Row[] {
  const dir = join(work, 'cli-store');
  const init = spawnSync(process.execPath, [BIN, 'pki', 'init', '--no-passphrase', '--key-type', KEY_TYPE, '--dir', dir], { cwd: work, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`broker pki init failed: ${init.stderr}`);
  const issue = cliWallTimes(work, (i) => ['pki', 'issue', `cli-${i + 1}`, '--role', 'bench', '--dir', dir, '--out', join(work, 'cli-out')], CLI_RUNS);
  const version = cliWallTimes(work, () => ['--version'], CLI_RUNS);
  const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ms median (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`;
  return [
    { what: '`broker pki issue NAME --role R` wall time, one process', runs: CLI_RUNS, result: fmt(issue) },
    { what: '`broker --version` wall time (Node start-up + CLI load)', runs: CLI_RUNS, result: fmt(version) },
  ];
}

async function main(): Promise<void> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" first`);
  const work = mkdtempSync(join(os.tmpdir(), 'broker-bench-'));
  try {
    const rows = [...(await inProcess(work)), ...(await crlAtScale(work)), ...cli(work)];
    const cpus = os.cpus();
    const lines = [
      `PKI benchmark — ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, Node ${process.version}, ${os.platform()} ${os.release()}, key type ${KEY_TYPE}`,
      '',
      '| measurement | runs | result |',
      '| --- | ---: | --- |',
      ...rows.map((r) => `| ${r.what} | ${r.runs} | ${r.result} |`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
