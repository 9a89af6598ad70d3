/**
 * Issue 19 with the built CLI: `broker pki crl --next-update 30m` is refused without --force; with
 * it, the running `broker serve` reloads the new CRL (file watch) and raises crl_expiring at a
 * local webhook; a broken config file makes the watcher's reload fail and raises reload_failed.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brokerAsync, errorCode, tempDir } from '../helpers/cli.ts';
import { plainUpstream, serve } from '../helpers/serve.ts';
import { eventually } from '../helpers/within.ts';
import { startWebhook, type AlertBody } from '../helpers/webhook.ts';

type Body = AlertBody;


test('broker serve: a CRL republished for 30 minutes (--force) raises crl_expiring at the webhook on the reload; a broken config raises reload_failed', async (t) => {
  const dir = tempDir(t);
  const run = async (args: string[]) => brokerAsync([...args, '--dir', 'pki'], { cwd: dir });
  for (const args of [['pki', 'init', '--no-passphrase'], ['pki', 'server', 'edge', '--dns', 'localhost', '--ip', '127.0.0.1']]) {
    const r = await run(args);
    assert.equal(r.code, 0, r.stderr);
  }
  const hook = await startWebhook(t);
  const upstream = await plainUpstream(t);
  const config = [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { port: 0 }',
    'pki: { dir: ./pki }',
    'tls: { server: edge }',
    'reload: { watch: true, debounce: 100ms }',
    `alerts: { webhook: "${hook.url}", crlExpiry: 1h, expiryWarning: 1h }`,
    'routes:',
    `  - { name: orders, path: /orders, upstream: "${upstream}", roles: [partner] }`,
  ].join('\n');
  const served = await serve(t, dir, config);
  assert.deepEqual(hook.bodies.filter((b) => b.alert === 'crl_expiring'), [], 'the 30-day CRL raises nothing at start');

  const refused = await run(['pki', 'crl', '--next-update', '30m']);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(errorCode(refused.stderr), 'BRK_ERR_PKI_CRL_TOO_SHORT');

  const forced = await run(['pki', 'crl', '--next-update', '30m', '--force', '--json']);
  assert.equal(forced.code, 0, forced.stderr);
  const nextUpdate = (JSON.parse(forced.stdout) as { nextUpdate: string }).nextUpdate;
  // the file watch reloads the CRL; the reload checks it (the minute clock would take longer than this wait's bound)
  await eventually(() => hook.bodies.some((b) => b.alert === 'crl_expiring'), `crl_expiring at the webhook; stderr:\n${served.out.stderr.slice(-3000)}`, 30_000);
  const alert = hook.bodies.find((b) => b.alert === 'crl_expiring');
  assert.equal(alert?.details.nextUpdate, nextUpdate);
  assert.equal(alert?.severity, 'critical');

  // a config edit that cannot load: the watcher's reload is refused and says so at the webhook
  writeFileSync(join(dir, 'broker.yaml.tmp'), config.replace('tls: { server: edge }', 'tls: { server: no-such-server }'));
  renameSync(join(dir, 'broker.yaml.tmp'), join(dir, 'broker.yaml'));
  await eventually(() => hook.bodies.some((b) => b.alert === 'reload_failed'), `reload_failed at the webhook; stderr:\n${served.out.stderr.slice(-3000)}`, 30_000);
  const failed = hook.bodies.find((b) => b.alert === 'reload_failed');
  assert.ok(Array.isArray(failed?.details.problems) && (failed.details.problems as string[]).some((p) => /no-such-server/.test(p)), JSON.stringify(failed));
  assert.equal(await served.stop(), 0);
});
