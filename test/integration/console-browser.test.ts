/**
 * The console in a real headless browser (chromium + puppeteer-core) against a broker with a few
 * identities and traffic: the login refuses a wrong token, each view shows what the data source
 * (the JSON API's source) returns, a revoke confirmed on the console takes effect on the next
 * handshake and is in the CA store's audit log, forged or session-less actions are refused, and no
 * page logs an error or trips its Content-Security-Policy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { makePki, request, startBroker, startUpstream } from '../helpers/broker.ts';
import { adminPort, httpGet } from '../helpers/admin.ts';
import { tempDir } from '../helpers/cli.ts';
import { launchBrowser, watchPage } from '../helpers/browser.ts';
import { consoleData, fakeConsoleSource } from '../helpers/console-source.ts';
import type { ConsoleSource } from '../../src/console/model.ts';

/**
 * false: the pages read the test double (test/helpers/console-source.ts), whose revoke really
 * revokes and reloads. true: the broker's own source (broker.console), and every view is compared
 * with the JSON the admin API answers (GET /api/console/<view> with the bearer token).
 */
const REAL_SOURCE = true;

const TOKEN = 'browser-console-token-0123456789abcdef';
const ALICE_REQUESTS = 3;

test('the console in chromium: login, each view shows the API\'s data, a confirmed revoke takes effect, forged actions are refused, no console errors under the CSP', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const alice = await pki.issue('alice', ['user']);
  const bob = await pki.issue('bob', ['user', 'ops']);
  const notAfter = (pem: string) => new X509Certificate(pem).validToDate.toISOString();
  const fake = fakeConsoleSource(
    consoleData([
      { name: 'alice', roles: ['user'], serial: alice.serial, notAfter: notAfter(alice.cert), requests: ALICE_REQUESTS, refusals: 0 },
      { name: 'bob', roles: ['user', 'ops'], serial: bob.serial, notAfter: notAfter(bob.cert), requests: 1, refusals: 0 },
    ]),
    {
      'revoke-certificate': async (serial) => {
        await pki.revoke(serial);
        await b.broker.reload(undefined, 'console');
      },
    },
  );
  const tokenFile = join(tempDir(t), 'admin.token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const b = await startBroker(t, pki, { admin: { host: '127.0.0.1', port: 0, tokenFile }, routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] }, REAL_SOURCE ? {} : { consoleSource: fake });
  const source: ConsoleSource = REAL_SOURCE ? (b.broker as unknown as { console: ConsoleSource }).console : fake;
  const port = adminPort(b);
  const base = `http://127.0.0.1:${port}`;
  /** What the API answers for a view (the source itself while the pages read the double). */
  const api = async <K extends 'partners' | 'certificates' | 'live' | 'changes'>(view: K): Promise<Awaited<ReturnType<ConsoleSource[K]>>> => {
    if (!REAL_SOURCE) return (await source[view]()) as Awaited<ReturnType<ConsoleSource[K]>>;
    const res = await httpGet(port, `/api/console/${view}`, { authorization: `Bearer ${TOKEN}` });
    assert.equal(res.status, 200, res.text);
    return res.json() as Awaited<ReturnType<ConsoleSource[K]>>;
  };

  // traffic: alice's requests are counted on her row
  for (let i = 0; i < ALICE_REQUESTS; i++) assert.equal((await request(b.port, { id: alice, ca: pki.ca, path: `/api/${i}` })).status, 200);
  assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/bob' })).status, 200);

  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const problems = await watchPage(page);
  const go = async (path: string) => {
    const res = await page.goto(base + path, { waitUntil: 'load' });
    assert.equal(res?.status(), 200, path);
  };
  const submit = async (selector: string) => (await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]))[0];

  // ---- login: a wrong token is refused, the right one opens the page asked for
  await go('/console/');
  assert.equal(new URL(page.url()).pathname, '/console/login');
  await page.type('#token', 'not-the-token');
  const wrong = await submit('form.login button');
  assert.equal(wrong?.status(), 401);
  assert.match(await text(page, '#login-error'), /BRK_ERR_CONSOLE_LOGIN/);
  await page.type('#token', TOKEN);
  const ok = await submit('form.login button');
  assert.equal(ok?.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/console/');

  // ---- Partners
  const partners = await page.$$eval('#partners tbody tr', (trs) =>
    trs.map((tr) => ({
      name: tr.querySelector('.name')?.textContent,
      roles: tr.querySelector('.roles')?.textContent,
      requests: [tr.querySelector('.requests-hour')?.textContent, tr.querySelector('.requests-day')?.textContent],
      refusals: [tr.querySelector('.refusals-hour')?.textContent, tr.querySelector('.refusals-day')?.textContent],
      credentials: Array.from(tr.querySelectorAll('li.credential')).map((li) => [li.getAttribute('data-kind'), li.getAttribute('data-id'), li.querySelector('.status')?.textContent, li.querySelector('time')?.getAttribute('datetime') ?? null]),
    })),
  );
  const partnersApi = await api('partners');
  assert.deepEqual(
    partners,
    partnersApi.partners.map((p) => ({
      name: p.name,
      roles: p.roles.join(', '),
      requests: [String(p.requests.hour), String(p.requests.day)],
      refusals: [String(p.refusals.hour), String(p.refusals.day)],
      credentials: p.credentials.map((c) => [c.kind, c.id, c.status, c.notAfter]),
    })),
  );
  const aliceRow = partnersApi.partners.find((p) => p.name === 'alice');
  assert.equal(aliceRow?.requests.day, ALICE_REQUESTS, 'the count matches the requests the test made');
  assert.ok(partnersApi.partners.some((p) => p.name === 'bob' && p.roles.includes('ops')));

  // ---- Certificates
  await go('/console/certificates');
  const timeline = await page.$$eval('#timeline tbody tr', (trs) => trs.map((tr) => [tr.querySelector('.kind')?.textContent, tr.querySelector('.name')?.textContent, tr.getAttribute('data-serial'), tr.querySelector('.not-after time')?.getAttribute('datetime')]));
  const certs = await api('certificates');
  assert.deepEqual(timeline, certs.timeline.map((c) => [c.kind, c.name, c.serial ?? '', c.notAfter]));
  assert.ok(certs.timeline.some((c) => c.serial === alice.serial && c.notAfter === aliceRow?.credentials[0]?.notAfter));
  const invitations = await page.$$eval('#invitations tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-invitation'), tr.querySelector('.name')?.textContent, tr.querySelector('.expires time')?.getAttribute('datetime')]));
  assert.deepEqual(invitations, certs.invitations.map((i) => [i.id, i.name, i.expiresAt]));

  // ---- Live: the plot has a point per interval, refusals and bans as listed
  await go('/console/live');
  const live = await api('live');
  const points = await page.$$eval('#plot-rates polyline.s-requests', (ls) => ls.reduce((n, l) => n + (l.getAttribute('points') ?? '').trim().split(/\s+/).filter(Boolean).length, 0));
  assert.equal(points, live.series.length);
  assert.ok(live.series.length > 0, 'the live view has a series to plot');
  assert.deepEqual(await page.$$eval('#refusals tbody tr .code', (cs) => cs.map((c) => c.textContent)), live.refusals.map((r) => r.code));
  assert.deepEqual(await page.$$eval('#bans tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-ban'))), live.bans.map((x) => x.key));

  // ---- Changes
  await go('/console/changes');
  const changes = await api('changes');
  assert.match(await text(page, '#chain'), new RegExp(`${changes.chain.lines} lines`));
  assert.deepEqual(await page.$$eval('#changes tbody tr .detail', (ds) => ds.map((d) => d.textContent)), changes.changes.map((c) => c.detail));

  // ---- revoke alice's certificate: Cancel does nothing, Revoke does it once
  const auditLog = join(pki.dir, 'audit.log');
  const revokes = () => readFileSync(auditLog, 'utf8').split('\n').filter((l) => l.includes('"op":"revoke"') && l.includes(alice.serial)).length;
  await go('/console/');
  await submit(`li.credential[data-id="${alice.serial}"] a`);
  assert.match(await text(page, '.question'), new RegExp(`^Revoke certificate ${alice.serial} of alice\\?`));
  await submit('#cancel');
  assert.equal(new URL(page.url()).pathname, '/console/');
  assert.equal(revokes(), 0, 'cancel revoked nothing');

  // a forged CSRF token, from the console's own confirmation page (same origin, with the session cookie)
  await submit(`li.credential[data-id="${alice.serial}"] a`);
  await page.$eval('form.confirm input[name=csrf]', (el) => el.setAttribute('value', 'forged-token'));
  const forged = await submit('#confirm');
  assert.equal(forged?.status(), 403);
  assert.match(await text(page, '.error-code'), /^BRK_ERR_CONSOLE_CSRF$/);
  assert.equal(revokes(), 0, 'a forged CSRF token revoked nothing');

  await go(`/console/actions/revoke-certificate?serial=${alice.serial}`);
  const done = await submit('#confirm');
  assert.equal(done?.status(), 200);
  assert.match(await text(page, '#result'), /^Done/);
  assert.equal(revokes(), 1, 'the revoke is in the CA store\'s audit log, once');
  if (!REAL_SOURCE) assert.deepEqual(fake.calls, [{ action: 'revoke-certificate', target: alice.serial }]);
  const next = await request(b.port, { id: alice, ca: pki.ca, path: '/api/after' });
  assert.equal(next.status, 495, 'the next handshake with the revoked certificate is refused');
  assert.equal(next.json().reason, 'certificate revoked');
  assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/bob' })).status, 200, 'bob carries on');

  // ---- an action from a browser without the session (another profile, same origin) is refused
  const other = await browser.createBrowserContext();
  const stranger = await other.newPage();
  const strangerProblems = await watchPage(stranger);
  await stranger.goto(`${base}/console/login`);
  await stranger.evaluate((serial) => {
    const f = document.createElement('form');
    f.method = 'post';
    f.action = '/console/actions/revoke-certificate';
    for (const [k, v] of [['serial', serial], ['csrf', 'guessed']]) {
      const i = document.createElement('input');
      i.type = 'hidden';
      i.name = k as string;
      i.value = v as string;
      f.append(i);
    }
    document.body.append(f);
    f.submit();
  }, bob.serial);
  const refused = await stranger.waitForNavigation({ waitUntil: 'load' });
  assert.equal(refused?.status(), 403, `${stranger.url()} ${await stranger.content()}`);
  assert.match(await text(stranger, '.error-code'), /^BRK_ERR_CONSOLE_SESSION$/);
  assert.equal((await request(b.port, { id: bob, ca: pki.ca, path: '/api/bob' })).status, 200, 'bob was not revoked');

  // ---- nothing went wrong in any page: no console errors, page errors, failed loads or CSP violations
  // (the 401 and 403 answers above are pages the test asked for; chromium logs each as a failed resource)
  const expected = /Failed to load resource: the server responded with a status of (401|403)/;
  assert.deepEqual(problems.console.filter((m) => !expected.test(m)), []);
  assert.deepEqual(strangerProblems.console.filter((m) => !expected.test(m)), []);
  assert.deepEqual([...problems.errors, ...strangerProblems.errors], []);
  assert.deepEqual([...problems.failed, ...strangerProblems.failed], []);
  assert.deepEqual(await problems.csp(), []);
  // ... and the watch would have seen one: an inline script is refused by the page's CSP
  await go('/console/');
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true';
    document.body.append(s);
  });
  assert.equal(await page.evaluate(() => (window as unknown as { inlineRan?: boolean }).inlineRan), undefined, 'the inline script did not run');
  const seen = await problems.csp();
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.match(seen[0] as string, /^script-src/);
});

async function text(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (el) => (el.textContent ?? '').trim());
}
