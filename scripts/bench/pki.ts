/**
 * The benchmark's CA, with the project's own PKI code: a store with a server certificate for
 * localhost, one client identity, N more identities minted in process (createLeaf with the
 * issuing CA's key, not written to the inventory: the broker needs only the certificate), and a
 * CRL with many revoked serials.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { initCa } from '../../src/pki/init.ts';
import { CaStore } from '../../src/pki/store.ts';
import { issueClient, issueServer } from '../../src/pki/issue.ts';
import { createLeaf, leafWindow, randomSerial, signCrl } from '../../src/pki/certs.ts';
import { crlPem } from '../../src/pki/crl.ts';
import { generateKeyPair, privateKeyPem } from '../../src/pki/keys.ts';
import { x509 } from '../../src/pki/x509.ts';

const DAY = 86_400_000;

export interface IdentityFiles {
  cert: string;
  key: string;
}

export interface BenchPki {
  dir: string;
  store: CaStore;
  /** What clients trust for the server (the root). */
  caFile: string;
  /** What the proxies verify clients against (issuing CA + root). */
  chainFile: string;
  serverCert: string;
  serverKey: string;
  /** The store's CRL bundle (both levels, nothing revoked). */
  emptyCrl: string;
  client: IdentityFiles;
  role: string;
}

export async function makePki(work: string, role: string): Promise<BenchPki> {
  const dir = join(work, 'pki');
  await initCa({ dir, name: 'Bench CA', keyType: 'ec-p256', trustDomain: 'bench.example', passphrase: undefined });
  const store = CaStore.open(dir);
  await issueServer(store, { name: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'], ttlMs: 30 * DAY });
  const r = await issueClient(store, { name: 'bench-client', roles: [role], ttlMs: 30 * DAY, outDir: join(work, 'client') });
  const l = store.layout;
  return {
    dir,
    store,
    caFile: l.caCert,
    chainFile: l.chain,
    serverCert: l.serverCert('localhost'),
    serverKey: l.serverKey('localhost'),
    emptyCrl: l.crlBundle,
    client: { cert: r.files.cert, key: r.files.key as string },
    role,
  };
}

/** `n` client identities (distinct names and keys), each as chain + key files in `out`. */
export async function mintIdentities(pki: BenchPki, n: number, out: string): Promise<{ ids: IdentityFiles[]; ms: number }> {
  mkdirSync(out, { recursive: true });
  const keys = await pki.store.loadKeys(pki.store.readInventory());
  const issuing = keys.intermediate;
  const chainTail = `${issuing.cert.toString('pem')}\n`;
  const ids: IdentityFiles[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const name = `partner-${String(i).padStart(4, '0')}`;
    const pair = await generateKeyPair('ec-p256');
    const leaf = await createLeaf({ kind: 'client', name, roles: [pki.role], uri: `spiffe://bench.example/client/${name}`, publicKey: pair.publicKey, serial: randomSerial(), ...leafWindow(30 * DAY, issuing.cert) }, issuing);
    const cert = join(out, `${name}.crt`);
    const key = join(out, `${name}.key`);
    writeFileSync(cert, `${leaf.toString('pem')}\n${chainTail}`);
    writeFileSync(key, privateKeyPem(pair.privateKey), { mode: 0o600 });
    ids.push({ cert, key });
  }
  return { ids, ms: performance.now() - t0 };
}

/**
 * A CRL bundle whose issuing-CA CRL lists `n` revoked serials (random, none of them a serial in
 * use), numbered `number` (brokers refuse a CRL numbered below the one they loaded), next to the
 * root's CRL from the store. Signed with signCrl from src/pki/certs.ts (the store's CRL writer);
 * `tool: 'openssl'` uses `openssl ca -gencrl` with an index file instead.
 */
export async function bigCrl(pki: BenchPki, n: number, out: string, tool: 'x509' | 'openssl' = 'x509', number = 1_000_000): Promise<{ file: string; ms: number; bytes: number; tool: string }> {
  const keys = await pki.store.loadKeys(pki.store.readInventory());
  const rootCrl = readFileSync(pki.store.layout.rootCrl, 'utf8');
  const t0 = performance.now();
  let pem: string;
  if (tool === 'x509') {
    const revokedAt = new Date(Date.now() - 3_600_000);
    const entries = Array.from({ length: n }, () => ({ serial: randomSerial(), revokedAt, reason: x509.X509CrlReason.keyCompromise }));
    // the store's own CRL writer (src/pki/crl-builder.ts): parsing 100k entries back with @peculiar/x509 exceeds its ASN.1 node limit
    pem = crlPem(signCrl({ issuer: keys.intermediate, number, entries, validityMs: 30 * DAY }));
  } else {
    pem = opensslCrl(pki, n, join(out, 'openssl-ca'));
  }
  const ms = performance.now() - t0;
  const file = join(out, `crl-${n}.pem`);
  writeFileSync(file, `${pem}${rootCrl}`);
  return { file, ms, bytes: Buffer.byteLength(pem), tool };
}

function opensslCrl(pki: BenchPki, n: number, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const l = pki.store.layout;
  const t = new Date(Date.now() - 3_600_000);
  const stamp = `${t.toISOString().slice(2, 19).replace(/[-:T]/g, '')}Z`;
  const exp = `${new Date(Date.now() + 30 * DAY).toISOString().slice(2, 19).replace(/[-:T]/g, '')}Z`;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`R\t${exp}\t${stamp},keyCompromise\t${randomSerial().toUpperCase()}\tunknown\t/CN=revoked-${i}`);
  writeFileSync(join(dir, 'index.txt'), `${lines.join('\n')}\n`);
  writeFileSync(join(dir, 'crlnumber'), '0F4240\n');
  copyFileSync(l.intermediateCert, join(dir, 'ca.crt'));
  copyFileSync(l.intermediateKey, join(dir, 'ca.key'));
  writeFileSync(
    join(dir, 'openssl.cnf'),
    `[ca]\ndefault_ca = bench\n[bench]\ndatabase = ${join(dir, 'index.txt')}\ncrlnumber = ${join(dir, 'crlnumber')}\ncertificate = ${join(dir, 'ca.crt')}\nprivate_key = ${join(dir, 'ca.key')}\ndefault_md = sha256\ndefault_crl_days = 30\ncrl_extensions = ext\n[ext]\nauthorityKeyIdentifier = keyid:always\n`,
  );
  const out = join(dir, 'crl.pem');
  const r = spawnSync('openssl', ['ca', '-gencrl', '-config', join(dir, 'openssl.cnf'), '-out', out], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`openssl ca -gencrl failed: ${r.stderr}`);
  return readFileSync(out, 'utf8');
}
