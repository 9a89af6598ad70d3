/**
 * The console pages over plain HTTP (the browser test drives the same pages in chromium): the
 * login with the admin token, the session cookie, the CSRF token on actions, the security headers,
 * escaping, and that the cookie opens /console/* only (the other admin endpoints still want the
 * bearer token, also through dot segments).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki, startBroker } from '../helpers/broker.ts';
import { adminPort, httpGet, httpRequest, type AdminResponse } from '../helpers/admin.ts';
import { tempDir } from '../helpers/cli.ts';
import { consoleData, fakeConsoleSource } from '../helpers/console-source.ts';

const CSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? assert.fail(`no csrf field in ${html}`);
const cookieOf = (res: AdminResponse) => {
  const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  const c = set.find((s) => s.startsWith('broker_console='));
  assert.ok(c, 'a session cookie was set');
  assert.match(c, /; Path=\/console; HttpOnly; SameSite=Strict/);
  return c.split(';')[0] as string;
};
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function setup(t: import('node:test').TestContext, token: string | undefined) {
  const pki = await makePki(t);
  const alice = await pki.issue('alice', ['user']);
  const data = consoleData([
    { name: 'alice', roles: ['user'], serial: alice.serial, notAfter: '2027-01-01T00:00:00.000Z', requests: 3, refusals: 1 },
    { name: '<img src=x onerror=alert(1)>', roles: ['a"b'], serial: 'beef', notAfter: '2027-02-01T00:00:00.000Z', requests: 0, refusals: 0 },
  ]);
  const source = fakeConsoleSource(data);
  let admin = {};
  if (token !== undefined) {
    const tokenFile = join(tempDir(t), 'admin.token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    admin = { admin: { host: '127.0.0.1', port: 0, tokenFile } };
  }
  const b = await startBroker(t, pki, admin, { consoleSource: source });
  return { b, port: adminPort(b), source, alice };
}

test('with admin.tokenFile: the console asks for the token, then a session cookie opens the pages and nothing else', async (t) => {
  const token = 'console-t0ken-0123456789';
  const { b, port, source, alice } = await setup(t, token);

  const anon = await httpGet(port, '/console/');
  assert.equal(anon.status, 303);
  assert.equal(anon.headers.location, '/console/login?next=%2Fconsole%2F');
  const login = await httpGet(port, '/console/login');
  assert.equal(login.status, 200);
  assert.equal(login.headers['content-security-policy'], CSP);
  assert.equal(login.headers['x-content-type-options'], 'nosniff');
  assert.equal(login.headers['cache-control'], 'no-store');
  assert.match(login.text, /<form method="post" action="\/console\/login"/);

  const wrong = await httpRequest(port, { method: 'POST', path: '/console/login', headers: FORM, body: form({ token: 'nope', next: '/console/' }) });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers['x-broker-error'], 'BRK_ERR_CONSOLE_LOGIN');
  assert.equal(wrong.headers['set-cookie'], undefined);
  assert.ok(b.logs.of('audit').some((l) => l.event === 'console' && l.action === 'login' && l.outcome === 'refused'));

  const ok = await httpRequest(port, { method: 'POST', path: '/console/login', headers: FORM, body: form({ token, next: '/console/live' }) });
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.location, '/console/live');
  const cookie = cookieOf(ok);

  const partners = await httpGet(port, '/console/', { cookie });
  assert.equal(partners.status, 200);
  assert.match(partners.text, /<td class="name">alice<\/td>/);
  assert.ok(partners.text.includes(alice.serial));
  // data is escaped, never markup
  assert.ok(!partners.text.includes('<img src=x'));
  assert.ok(partners.text.includes('&lt;img src=x onerror=alert(1)&gt;'));
  assert.ok(partners.text.includes('a&quot;b'));
  assert.ok(!/ style=| on[a-z]+=/.test(partners.text.replace(/&lt;img src=x onerror=alert\(1\)&gt;/g, '')), 'no inline style or event attributes');
  for (const path of ['/console/certificates', '/console/live', '/console/changes']) assert.equal((await httpGet(port, path, { cookie })).status, 200, path);

  // the cookie is no admin token: other endpoints, also reached through dot segments, still want the bearer
  for (const path of ['/metrics', '/console/../metrics', '/console/%2e%2e/metrics', '/console/..%2fmetrics']) {
    const res = await httpGet(port, path, { cookie });
    assert.notEqual(res.status, 200, path);
    assert.ok(!res.text.includes('process_cpu'), path);
  }
  // a forged or stale cookie is no session
  assert.equal((await httpGet(port, '/console/', { cookie: cookie.slice(0, -3) + 'AAA' })).status, 303);

  // actions: no session, forged CSRF, then the real one (once)
  const csrf = csrfOf(partners.text);
  const target = { serial: alice.serial };
  const noSession = await httpRequest(port, { method: 'POST', path: '/console/actions/revoke-certificate', headers: FORM, body: form({ ...target, csrf }) });
  assert.equal(noSession.status, 403);
  assert.equal(noSession.headers['x-broker-error'], 'BRK_ERR_CONSOLE_SESSION');
  const forged = await httpRequest(port, { method: 'POST', path: '/console/actions/revoke-certificate', headers: { ...FORM, cookie }, body: form({ ...target, csrf: csrf.slice(0, -2) + 'xx' }) });
  assert.equal(forged.status, 403);
  assert.equal(forged.headers['x-broker-error'], 'BRK_ERR_CONSOLE_CSRF');
  const foreign = await httpRequest(port, { method: 'POST', path: '/console/actions/revoke-certificate', headers: { ...FORM, cookie, origin: 'https://evil.example' }, body: form({ ...target, csrf }) });
  assert.equal(foreign.status, 403);
  assert.equal(source.calls.length, 0, 'no refused request reached the source');

  const confirm = await httpGet(port, `/console/actions/revoke-certificate?serial=${alice.serial}`, { cookie });
  assert.equal(confirm.status, 200);
  assert.ok(confirm.text.includes(`Revoke certificate <code>${alice.serial}</code> of <strong>alice</strong>?`));
  const done = await httpRequest(port, { method: 'POST', path: '/console/actions/revoke-certificate', headers: { ...FORM, cookie, origin: `http://127.0.0.1:${port}` }, body: form({ ...target, csrf: csrfOf(confirm.text) }) });
  assert.equal(done.status, 200, done.text);
  assert.match(done.text, /id="result">Done/);
  assert.deepEqual(source.calls, [{ action: 'revoke-certificate', target: alice.serial }]);
  assert.equal((await httpGet(port, '/console/actions/revoke-certificate?serial=ffff', { cookie })).status, 404);

  // log out: the cookie is cleared
  const out = await httpRequest(port, { method: 'POST', path: '/console/logout', headers: { ...FORM, cookie }, body: form({ csrf }) });
  assert.equal(out.status, 303);
  assert.match(String(out.headers['set-cookie']), /broker_console=; .*Max-Age=0/);
});

test('without a token (loopback only): no login, but actions still need the session\'s CSRF token', async (t) => {
  const { port, source } = await setup(t, undefined);
  const first = await httpGet(port, '/console/live');
  assert.equal(first.status, 200);
  const cookie = cookieOf(first);
  assert.match(first.text, /<svg /);
  assert.equal((await httpGet(port, '/console/login')).status, 303);

  const confirm = await httpGet(port, '/console/actions/lift-ban?key=ip%3A192.0.2.7', { cookie });
  assert.ok(confirm.text.includes('Lift the ban on <code>ip:192.0.2.7</code>'));
  const csrf = csrfOf(confirm.text);
  const noCsrf = await httpRequest(port, { method: 'POST', path: '/console/actions/lift-ban', headers: { ...FORM, cookie }, body: form({ key: 'ip:192.0.2.7' }) });
  assert.equal(noCsrf.status, 403);
  assert.equal(noCsrf.headers['x-broker-error'], 'BRK_ERR_CONSOLE_CSRF');
  const noCookie = await httpRequest(port, { method: 'POST', path: '/console/actions/lift-ban', headers: FORM, body: form({ key: 'ip:192.0.2.7', csrf }) });
  assert.equal(noCookie.headers['x-broker-error'], 'BRK_ERR_CONSOLE_SESSION');
  // the console's form needs no X-Broker-Admin header: its CSRF token stands in for it
  const ok = await httpRequest(port, { method: 'POST', path: '/console/actions/lift-ban', headers: { ...FORM, cookie }, body: form({ key: 'ip:192.0.2.7', csrf }) });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(source.calls, [{ action: 'lift-ban', target: 'ip:192.0.2.7' }]);
  // ... but POST /reload still does
  assert.equal((await httpRequest(port, { method: 'POST', path: '/reload', headers: { cookie } })).status, 403);

  const css = await httpGet(port, '/console/static/console.css');
  assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
  assert.equal((await httpGet(port, '/console/static/console.js')).headers['content-type'], 'text/javascript; charset=utf-8');
});
