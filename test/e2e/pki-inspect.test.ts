/**
 * `broker pki inspect`: would the broker accept this client certificate, and if not, why.
 * Verdicts: accepted; unknown issuer (a foreign CA made with openssl); expired (signed by the
 * store's issuing key with openssl, dated in the past); revoked; wrong key usage (a server cert).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode, openssl } from '../helpers/cli.ts';
import { json, sharedCa, type IssuedJson, type ListRow, type TestCa } from '../helpers/pki.ts';

const shared = sharedCa();

interface Report {
  subject: string;
  issuer: string;
  serial: string;
  roles: string[];
  sans: string[];
  extendedKeyUsage: string[];
  knownAs?: string;
  accepted: boolean;
  reasons: string[];
}

function issue(ca: TestCa, name: string): IssuedJson {
  return json<IssuedJson>(ca.signing(['pki', 'issue', name, '--role', 'ops', '--out', join(ca.root, name), '--json']));
}

/** `inspect --json`: the report, after checking exit code and stderr agree with the verdict. */
function inspect(ca: TestCa, file: string): Report {
  const r = ca.run(['pki', 'inspect', file, '--json']);
  const report = JSON.parse(r.stdout) as Report;
  if (report.accepted) {
    assert.equal(r.code, 0, r.stderr);
  } else {
    assert.equal(r.code, 1);
    assert.equal(errorCode(r.stderr), 'BRK_ERR_PKI_CERT_REJECTED');
    for (const reason of report.reasons) assert.ok(r.stderr.includes(reason), `stderr gives "${reason}"`);
  }
  return report;
}

function run(args: string[], cwd: string): void {
  const r = openssl(args, { cwd });
  assert.equal(r.code, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

test('accepted: a certificate this CA issued', () => {
  const ca = shared();
  const issued = issue(ca, 'good');
  const report = inspect(ca, issued.files.cert);
  assert.equal(report.accepted, true);
  assert.deepEqual(report.reasons, []);
  assert.equal(report.knownAs, 'good');
  assert.equal(report.serial, issued.serial);
  assert.deepEqual(report.roles, ['ops']);
  assert.deepEqual(report.sans, ['url:spiffe://test.example/client/good']);
  assert.deepEqual(report.extendedKeyUsage, ['clientAuth']);
  const text = ca.run(['pki', 'inspect', issued.files.cert]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /verdict +ACCEPTED by this CA/);
});

test('unknown issuer: a client certificate from a foreign CA made with openssl', () => {
  const ca = shared();
  const d = ca.root;
  run(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'foreign-ca.key', '-out', 'foreign-ca.crt', '-days', '2',
    '-subj', '/CN=Broker CA Issuing CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], d);
  run(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'foreign.key', '-out', 'foreign.crt', '-days', '2',
    '-CA', 'foreign-ca.crt', '-CAkey', 'foreign-ca.key', '-subj', '/OU=ops/CN=good',
    '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature', '-addext', 'extendedKeyUsage=clientAuth'], d);
  const report = inspect(ca, join(d, 'foreign.crt'));
  assert.equal(report.accepted, false);
  assert.equal(report.reasons.length, 1, report.reasons.join('; '));
  assert.match(report.reasons[0] as string, /^unknown issuer: not signed by this CA's issuing certificate/);
  assert.equal(report.knownAs, undefined, 'a look-alike name does not make it ours');
});

test('expired: a certificate signed with the store\'s issuing key, dated in the past', () => {
  const ca = shared();
  const d = ca.root;
  // Leaves from `issue` are never expired on the day (notBefore is backdated, not notAfter), so
  // `openssl ca` signs one with the store's own intermediate key and dates from 2020.
  const serial = `4${randomBytes(15).toString('hex').slice(1)}`;
  writeFileSync(join(d, 'index.txt'), '');
  writeFileSync(join(d, 'serial'), `${serial}\n`);
  writeFileSync(join(d, 'openssl-ca.cnf'), [
    '[ca]', 'default_ca = d',
    '[d]', 'database = index.txt', 'new_certs_dir = .', 'serial = serial', 'policy = p', 'default_md = sha256', 'unique_subject = no', 'x509_extensions = leaf',
    '[p]', 'commonName = supplied', 'organizationalUnitName = optional',
    '[leaf]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth',
    'subjectAltName = URI:spiffe://test.example/client/old-timer',
    '',
  ].join('\n'));
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'old.key', '-out', 'old.csr', '-subj', '/OU=ops/CN=old-timer'], d);
  run(['ca', '-batch', '-config', 'openssl-ca.cnf', '-in', 'old.csr', '-out', 'old.crt', '-notext', '-startdate', '20200101000000Z', '-enddate', '20200401000000Z',
    '-cert', ca.file('ca', 'intermediate.crt'), '-keyfile', ca.file('ca', 'intermediate.key'), '-passin', `file:${ca.pass}`], d);

  // Put it in the inventory as if this CA had issued it, so that expiry is the only objection.
  const pem = readFileSync(join(d, 'old.crt'), 'utf8');
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const inventoryFile = ca.file('inventory.json');
  const inventory = JSON.parse(readFileSync(inventoryFile, 'utf8'));
  inventory.certs.push({
    name: 'old-timer', type: 'client', roles: ['ops'], serial, notBefore: '2020-01-01T00:00:00.000Z', notAfter: '2020-04-01T00:00:00.000Z',
    fingerprint: createHash('sha256').update(der).digest('hex'), source: 'issue', issuer: inventory.ca.intermediate.serial,
  });
  writeFileSync(inventoryFile, `${JSON.stringify(inventory, null, 2)}\n`, { mode: 0o600 });

  const report = inspect(ca, join(d, 'old.crt'));
  assert.equal(report.accepted, false);
  assert.equal(report.knownAs, 'old-timer');
  assert.deepEqual(report.reasons, ['expired on 2020-04-01T00:00:00.000Z']);
  const row = json<ListRow[]>(ca.run(['pki', 'list', '--json'])).find((r) => r.name === 'old-timer');
  assert.equal(row?.status, 'expired');
});

test('revoked: a certificate this CA issued and then revoked', () => {
  const ca = shared();
  const issued = issue(ca, 'fired');
  assert.equal(ca.signing(['pki', 'revoke', 'fired', '--reason', 'affiliationChanged']).code, 0);
  const report = inspect(ca, issued.files.cert);
  assert.equal(report.accepted, false);
  assert.equal(report.reasons.length, 1, report.reasons.join('; '));
  assert.match(report.reasons[0] as string, /^revoked on \S+ \(affiliationChanged\)$/);
});

test('wrong key usage: the broker\'s own server certificate is not a client certificate', () => {
  const ca = shared();
  const server = json<IssuedJson>(ca.signing(['pki', 'server', 'web', '--dns', 'web.test.example', '--json']));
  const report = inspect(ca, server.files.cert);
  assert.equal(report.accepted, false);
  assert.deepEqual(report.reasons, ['wrong key usage: extended key usage has no clientAuth (it has serverAuth)']);
  assert.deepEqual(report.extendedKeyUsage, ['serverAuth']);
});

test('a CA certificate is not a client certificate either', () => {
  const ca = shared();
  const report = inspect(ca, ca.file('ca', 'intermediate.crt'));
  assert.equal(report.accepted, false);
  assert.ok(report.reasons.some((r) => r.startsWith('this is one of the CA certificates')), report.reasons.join('; '));
});

test('DER input is read as well as PEM', () => {
  const ca = shared();
  const issued = issue(ca, 'der-form');
  const der = join(ca.root, 'der-form.der');
  run(['x509', '-in', issued.files.cert, '-outform', 'DER', '-out', der], ca.root);
  assert.equal(inspect(ca, der).accepted, true);
});

test('not a certificate, or no such file: coded errors naming the file', () => {
  const ca = shared();
  const junk = join(ca.root, 'junk.crt');
  writeFileSync(junk, 'hello\n');
  const bad = ca.run(['pki', 'inspect', junk]);
  assert.equal(bad.code, 1);
  assert.equal(errorCode(bad.stderr), 'BRK_ERR_PKI_CERT_INVALID');
  assert.ok(bad.stderr.includes(junk));
  const missing = join(ca.root, 'missing.crt');
  const gone = ca.run(['pki', 'inspect', missing]);
  assert.equal(gone.code, 1);
  assert.equal(errorCode(gone.stderr), 'BRK_ERR_PKI_FILE_READ');
  assert.ok(gone.stderr.includes(missing));
});
