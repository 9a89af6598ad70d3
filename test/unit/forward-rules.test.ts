/**
 * forward.rules as a pure decision: host normalisation, exact names, "*.suffix" globs (one or more
 * labels, never the apex), IP literals matched as addresses only, ports (default 443), roles, and
 * allowPrivate; and the config checks of the forward block.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settingsOf, validateConfig, type BrokerConfig } from '../../src/config/index.ts';
import { ForwardRules, normaliseHost } from '../../src/forward/index.ts';

const base = { tls: { cert: '/dev/null', key: '/dev/null' } };

function rulesOf(rules: unknown[]): ForwardRules {
  const v = validateConfig({ ...base, forward: { rules } }, '/');
  assert.deepEqual(v.problems, []);
  return new ForwardRules(v.config as BrokerConfig);
}

test('hosts are normalised: lower case, trailing dot, canonical IP literals, no brackets', () => {
  assert.equal(normaliseHost('API.Partner.Example.'), 'api.partner.example');
  assert.equal(normaliseHost('0x7f.1'), '127.0.0.1');
  assert.equal(normaliseHost('2130706433'), '127.0.0.1');
  assert.equal(normaliseHost('[0:0:0:0:0:0:0:1]'), '::1');
  assert.equal(normaliseHost('::FFFF:7f00:1'), '::ffff:7f00:1');
  assert.equal(normaliseHost('bad host'), undefined);
  assert.equal(normaliseHost(''), undefined);
});

test('names, globs, IP literals, ports and roles decide; default deny', () => {
  const r = rulesOf([
    { roles: ['partner'], hosts: ['api.partner.example', '*.payments.example', '203.0.113.7'] },
    { roles: ['ops'], hosts: ['Metrics.Example.'], ports: [80, 8443] },
  ]);
  const code = (roles: string[], host: string, port: number) => {
    const d = r.decide(roles, host, port);
    return d.ok ? 'ok' : d.code;
  };
  assert.equal(code(['partner'], 'api.partner.example', 443), 'ok');
  assert.equal(code(['partner'], 'eu.payments.example', 443), 'ok');
  assert.equal(code(['partner'], 'a.b.payments.example', 443), 'ok');
  assert.equal(code(['partner'], 'payments.example', 443), 'BRK_ERR_FORWARD_DENIED');
  assert.equal(code(['partner'], 'xpayments.example', 443), 'BRK_ERR_FORWARD_DENIED');
  assert.equal(code(['partner'], '203.0.113.7', 443), 'ok');
  assert.equal(code(['partner'], 'api.partner.example', 80), 'BRK_ERR_FORWARD_PORT');
  assert.equal(code(['partner'], 'metrics.example', 80), 'BRK_ERR_FORWARD_DENIED');
  assert.equal(code(['ops'], 'metrics.example', 8443), 'ok');
  assert.equal(code(['ops'], 'metrics.example', 443), 'BRK_ERR_FORWARD_PORT');
  assert.equal(code([], 'api.partner.example', 443), 'BRK_ERR_FORWARD_DENIED');
  assert.equal(code(['partner', 'ops'], 'metrics.example', 80), 'ok');
});

test('allowPrivate comes from the matching rules only', () => {
  const r = rulesOf([
    { roles: ['a'], hosts: ['db.internal'], allowPrivate: ['10.20.0.0/16'] },
    { roles: ['a'], hosts: ['web.internal'] },
  ]);
  const db = r.decide(['a'], 'db.internal', 443);
  assert.ok(db.ok);
  assert.equal(db.allowPrivate('10.20.3.4', 4), true);
  assert.equal(db.allowPrivate('10.21.3.4', 4), false);
  const web = r.decide(['a'], 'web.internal', 443);
  assert.ok(web.ok);
  assert.equal(web.allowPrivate('10.20.3.4', 4), false);
});

test('the forward block is checked: hosts, allowPrivate ranges, the listen address', () => {
  const v = validateConfig(
    {
      ...base,
      listen: { host: '0.0.0.0', port: 8443 },
      forward: { listen: { host: '0.0.0.0', port: 8443 }, rules: [{ roles: ['a'], hosts: ['ok.example', '*.ok.example', '::1', '1.2.3.999', 'a..b', '*.10.0.0.1'], allowPrivate: ['10.0.0.0/33', 'nope'] }] },
    },
    '/',
  );
  const p = v.problems.join('\n');
  assert.match(p, /forward\.rules\[0\]\.hosts\[3\]: "1\.2\.3\.999"/);
  assert.match(p, /forward\.rules\[0\]\.hosts\[4\]: "a\.\.b"/);
  assert.match(p, /forward\.rules\[0\]\.hosts\[5\]: "\*\.10\.0\.0\.1"/);
  assert.doesNotMatch(p, /hosts\[[012]\]/);
  assert.match(p, /forward\.rules\[0\]\.allowPrivate\[0\]/);
  assert.match(p, /forward\.rules\[0\]\.allowPrivate\[1\]/);
  assert.match(p, /forward\.listen\.port/);
  const off = validateConfig(base, '/');
  assert.equal(off.config?.forward, undefined, 'absent: no forward listener');
  const defaults = validateConfig({ ...base, forward: { rules: [{ roles: ['a'], hosts: ['x.example'] }] } }, '/').config?.forward;
  assert.deepEqual(defaults?.listen, { host: '0.0.0.0', port: 3129 });
  assert.deepEqual(defaults?.rules[0]?.ports, [443]);
  assert.deepEqual(defaults?.rules[0]?.allowPrivate, []);
});

test('auth: a rule is consulted only for the credentials it lists (default [mtls]); listing apiKey or basic makes the certificate optional', () => {
  const r = rulesOf([
    { roles: ['tools'], hosts: ['api.partner.example'], auth: ['apiKey', 'basic'] },
    { roles: ['partner'], hosts: ['api.partner.example'] },
    { roles: ['legacy'], hosts: ['old.partner.example'], ports: [80, 443], auth: ['basic'] },
  ]);
  const code = (roles: string[], host: string, port: number, method: 'mtls' | 'apiKey' | 'basic') => {
    const d = r.decide(roles, host, port, method);
    return d.ok ? 'ok' : d.code;
  };
  assert.equal(code(['tools'], 'api.partner.example', 443, 'apiKey'), 'ok');
  assert.equal(code(['tools'], 'api.partner.example', 443, 'basic'), 'ok');
  assert.equal(code(['tools'], 'api.partner.example', 443, 'mtls'), 'BRK_ERR_FORWARD_DENIED', 'a certificate of role tools: that rule does not list mtls');
  assert.equal(code(['partner'], 'api.partner.example', 443, 'mtls'), 'ok');
  assert.equal(code(['partner'], 'api.partner.example', 443, 'apiKey'), 'BRK_ERR_FORWARD_DENIED', 'the default [mtls] keeps credentials out');
  assert.equal(code(['legacy'], 'old.partner.example', 80, 'basic'), 'ok');
  assert.equal(code(['legacy'], 'old.partner.example', 80, 'apiKey'), 'BRK_ERR_FORWARD_DENIED');
  assert.equal(r.decide(['tools'], 'api.partner.example', 8443, 'apiKey').ok, false);
  const d = r.decide(['partner'], 'api.partner.example', 443, 'basic');
  assert.ok(!d.ok && d.reason.includes('with auth basic'), 'the reason names the credential');

  const settings = (rules: unknown[]) => {
    const v = validateConfig({ ...base, forward: { rules } }, '/');
    assert.deepEqual(v.problems, []);
    return settingsOf(v.config as BrokerConfig).forward;
  };
  assert.equal(settings([{ roles: ['partner'], hosts: ['a.example'] }])?.certOptional, false);
  assert.equal(settings([{ roles: ['partner'], hosts: ['a.example'], auth: ['mtls'] }, { roles: ['t'], hosts: ['b.example'], auth: ['basic'] }])?.certOptional, true);
  const bad = validateConfig({ ...base, forward: { rules: [{ roles: ['t'], hosts: ['a.example'], auth: ['jwt'] }, { roles: ['t'], hosts: ['a.example'], auth: [] }] } }, '/');
  assert.ok(bad.problems.some((p) => p.includes('forward.rules') && p.includes('auth')), bad.problems.join('\n'));
  assert.equal(bad.problems.filter((p) => p.includes('auth')).length >= 2, true, bad.problems.join('\n'));
});
