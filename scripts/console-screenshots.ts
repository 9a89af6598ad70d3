/**
 * `npm run console:screenshots`: starts a demo broker (a fresh CA, an upstream, a few identities
 * and some traffic, the admin token set), opens each console view in headless chromium and writes
 * docs/console/<view>.png for the README. Needs chromium (/usr/bin/chromium or CHROMIUM_PATH) and
 * puppeteer-core. Everything runs on 127.0.0.1 and is removed afterwards.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { makePki, request, startBroker, startUpstream } from '../test/helpers/broker.ts';
import { adminPort } from '../test/helpers/admin.ts';
import { tempDir } from '../test/helpers/cli.ts';
import { browserMissing, startBrowser } from '../test/helpers/browser.ts';
import { consoleData, fakeConsoleSource } from '../test/helpers/console-source.ts';

/** false: the console reads demo data (test/helpers/console-source.ts); true: the broker's own source. */
const REAL_SOURCE = true;
const OUT = resolve(import.meta.dirname, '..', 'docs', 'console');
const TOKEN = 'demo-console-token';

const cleanups: Array<() => unknown> = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) } as unknown as TestContext;

async function main(): Promise<void> {
  const missing = await browserMissing();
  if (missing) throw new Error(`cannot take screenshots: ${missing}`);
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const people = [
    { name: 'acme-billing', roles: ['billing'], requests: 42 },
    { name: 'globex-reports', roles: ['reports', 'billing'], requests: 17 },
    { name: 'initech-sync', roles: ['sync'], requests: 0 },
  ];
  const ids = [];
  for (const p of people) ids.push({ ...p, id: await pki.issue(p.name, p.roles, { ttlMs: (p.requests ? 90 : 9) * 86_400_000 }) });
  const source = fakeConsoleSource(
    consoleData(ids.map((p) => ({ name: p.name, roles: p.roles, serial: p.id.serial, notAfter: new X509Certificate(p.id.cert).validToDate.toISOString(), requests: p.requests, refusals: p.requests ? 1 : 0 }))),
  );
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const routes = [{ name: 'api', path: '/api', upstream: up.url, roles: ['billing', 'reports', 'sync'] }];
  const b = await startBroker(t, pki, { admin: { host: '127.0.0.1', port: 0, tokenFile }, routes }, REAL_SOURCE ? {} : { consoleSource: source });
  for (const p of ids) for (let i = 0; i < p.requests; i++) await request(b.port, { id: p.id, ca: pki.ca, path: `/api/orders/${i}` });

  const browser = await startBrowser();
  cleanups.push(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 760, deviceScaleFactor: 1 });
  const base = `http://127.0.0.1:${adminPort(b)}`;
  mkdirSync(OUT, { recursive: true });
  const shot = async (name: string) => {
    await page.screenshot({ path: join(OUT, `${name}.png`) as `${string}.png`, fullPage: true });
    process.stdout.write(`docs/console/${name}.png\n`);
  };
  await page.goto(`${base}/console/`);
  await shot('login');
  await page.type('#token', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('form.login button')]);
  await shot('partners');
  for (const view of ['certificates', 'live', 'changes']) {
    await page.goto(`${base}/console/${view}`);
    await shot(view);
  }
  await page.goto(`${base}/console/actions/revoke-certificate?serial=${ids[0]?.id.serial}`);
  await shot('confirm');
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
