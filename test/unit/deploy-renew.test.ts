/**
 * The partner-side renewal units (deploy/systemd/broker-renew.{service,timer}): `broker renew` in
 * place against the main listener, daily, and valid for systemd-analyze where it is installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const dir = resolve(import.meta.dirname, '..', '..', 'deploy', 'systemd');
const service = readFileSync(join(dir, 'broker-renew.service'), 'utf8');
const timer = readFileSync(join(dir, 'broker-renew.timer'), 'utf8');

test('broker-renew.service runs broker renew in place with the partner files, writable only there', () => {
  const exec = /^ExecStart=(.*)$/m.exec(service)?.[1] ?? '';
  assert.match(exec, / renew --url \$\{BROKER_URL\} --cert (\S+) --key (\S+) --ca (\S+)$/);
  assert.doesNotMatch(exec, /--out/, 'in place: the files clients read are replaced');
  assert.match(service, /^ReadWritePaths=\/etc\/broker-partner$/m);
  assert.match(service, /^ProtectSystem=strict$/m);
  assert.match(service, /^RestrictAddressFamilies=.*AF_INET/m, 'it must reach the broker');
  assert.match(timer, /^OnCalendar=daily$/m);
  assert.match(timer, /^Persistent=true$/m);
});

const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

test('systemd-analyze verify finds no syntax error or unknown setting', { skip: analyze ? false : 'systemd-analyze is not installed' }, () => {
  const r = spawnSync(analyze as string, ['verify', join(dir, 'broker-renew.service'), join(dir, 'broker-renew.timer')], { encoding: 'utf8', timeout: 60_000 });
  const complaints = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
  const acceptable = [/is not executable: No such file or directory/, /does not exist/i, /Failed to resolve (user|group)/i, /user .*broker/i];
  assert.deepEqual(complaints.filter((l) => !acceptable.some((re) => re.test(l))), [], 'systemd-analyze verify');
});
