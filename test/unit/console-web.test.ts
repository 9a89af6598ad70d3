/** The console's pure parts: signed sessions and their CSRF tokens, HTML escaping, the plot's axis. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IDLE_MS, MAX_AGE_MS, cookieValue, sessions } from '../../src/console/web/session.ts';
import { esc, html } from '../../src/console/web/html.ts';
import { niceMax } from '../../src/console/web/plot.ts';
import { sessionKey } from '../../src/console/web/index.ts';

test('a session cookie holds while used, ends when idle or old, and cannot be forged or moved to another key', () => {
  const key = randomBytes(32);
  const s = sessions(key);
  const t0 = 1_800_000_000_000;
  const a = s.open(t0);
  const later = s.check(a.cookie, t0 + IDLE_MS - 1);
  assert.ok(later);
  assert.equal(later.csrf, a.csrf, 'the CSRF token lasts the session');
  assert.equal(s.check(a.cookie, t0 + IDLE_MS), undefined, 'idle too long');
  // kept alive by use, it still ends MAX_AGE_MS after login
  let c = a.cookie;
  for (let t = t0 + IDLE_MS / 2; t < t0 + MAX_AGE_MS; t += IDLE_MS / 2) c = (s.check(c, t) ?? assert.fail(`expired early at +${t - t0}`)).cookie;
  assert.equal(s.check(c, t0 + MAX_AGE_MS), undefined);

  const [v, issued, last, nonce, sig] = a.cookie.split('.');
  assert.equal(s.check([v, issued, String(t0 + 1e9), nonce, sig].join('.'), t0 + 1e9), undefined, 'the idle clock cannot be moved');
  assert.equal(s.check(a.cookie.slice(0, -2) + 'AA', t0), undefined);
  assert.equal(s.check(undefined, t0), undefined);
  assert.equal(s.check('garbage', t0), undefined);
  assert.equal(sessions(randomBytes(32)).check(a.cookie, t0), undefined, 'another key (another token) refuses it');
  assert.notEqual(s.open(t0).csrf, a.csrf, 'each session its own CSRF token');
  assert.ok(s.csrfMatches(a, a.csrf));
  assert.ok(!s.csrfMatches(a, a.csrf.slice(1)));
  assert.ok(!s.csrfMatches(a, undefined));
  assert.ok(!s.csrfMatches(a, [a.csrf]));
});

test('every worker derives the same session key; another token or server key gives another', () => {
  assert.deepEqual(sessionKey('PEM', 'tok'), sessionKey('PEM', 'tok'));
  assert.notDeepEqual(sessionKey('PEM', 'tok'), sessionKey('PEM', 'tok2'));
  assert.notDeepEqual(sessionKey('PEM', undefined), sessionKey('PEM2', undefined));
});

test('cookieValue reads one cookie among others', () => {
  assert.equal(cookieValue('a=1; broker_console=v1.x; b=2', 'broker_console'), 'v1.x');
  assert.equal(cookieValue('xbroker_console=1', 'broker_console'), undefined);
  assert.equal(cookieValue(undefined, 'broker_console'), undefined);
});

test('html escapes every interpolated value, text and attribute alike, but not nested html', () => {
  assert.equal(esc(`<a href="x" onclick='y'>&`), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;');
  const name = '"><script>alert(1)</script>';
  assert.equal(html`<td title="${name}">${name}</td>`.text, '<td title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</td>');
  assert.equal(html`<ul>${['<b>', html`<li>${'&'}</li>`]}</ul>`.text, '<ul>&lt;b&gt;<li>&amp;</li></ul>');
  assert.equal(html`${null}${undefined}${0}`.text, '0');
});

test('the plot axis ends on 1, 2 or 5 times a power of ten', () => {
  assert.deepEqual([0, 0.3, 1, 1.4, 3, 7, 42, 999].map(niceMax), [1, 0.5, 1, 2, 5, 10, 50, 1000]);
});
