import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type DestinationStream, type LoggerOptions } from 'pino';
import { okFieldsOf, okLineFor } from '../../src/tls/listener.ts';
import type { Principal } from '../../src/identity/index.ts';

/** A pino logger as the broker builds them (a child with `log`), writing into `lines`. */
function logger(opts: LoggerOptions, lines: string[]) {
  const dest: DestinationStream = { write: (s: string) => void lines.push(s) };
  return pino(opts, dest).child({ log: 'auth' });
}

const principal = (name: string, roles: string[]): Principal =>
  Object.freeze({ name, roles: Object.freeze(roles), serial: '1a2b', fingerprint: 'ab'.repeat(32), subject: `CN=${name}`, sans: [], notAfter: new Date(0) });

const FIXED = () => ',"time":"2026-12-07T10:00:00.000Z"';

test('the "client authenticated" line is byte for byte the line pino writes', () => {
  const setups: Array<[string, LoggerOptions]> = [
    ['as createLoggers (iso time, no base)', { level: 'info', base: undefined, timestamp: FIXED }],
    ['as the test sink (debug, no base, epoch time)', { level: 'debug', base: undefined, timestamp: () => ',"time":1765101600000' }],
    ['with base fields and no time', { level: 'info', timestamp: false }],
  ];
  const people = [principal('alice', ['orders:read', 'admin']), principal('Ünïcödé "quoted" \\ back\tslash', []), principal('x'.repeat(150), ['r'])];
  const facts: Array<[string | undefined, number | undefined, string, string | null, string | undefined, boolean]> = [
    ['127.0.0.1', 50123, '0a1b2c3d-0', 'TLSv1.3', 'TLS_AES_256_GCM_SHA384', false],
    ['::1', 443, '0a1b2c3d-1z', 'TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256', true],
    [undefined, undefined, 'ffffffff-zz', null, undefined, false],
  ];
  for (const [label, opts] of setups) {
    const lines: string[] = [];
    const log = logger(opts, lines);
    const write = okLineFor(log);
    assert.ok(write, `${label}: the fast line is used`);
    for (const p of people) {
      for (const [remoteIp, remotePort, connId, tlsVersion, cipher, resumed] of facts) {
        log.info({ event: 'handshake', outcome: 'ok', principal: p.name, roles: p.roles, serial: p.serial, fingerprint: p.fingerprint, remoteIp, remotePort, connId, tlsVersion, cipher, resumed }, 'client authenticated');
        write(okFieldsOf(p), remoteIp, remotePort, connId, tlsVersion, cipher, resumed);
        const [byPino, ours] = lines.splice(0);
        assert.equal(ours, byPino, label);
        JSON.parse(ours as string);
      }
    }
  }
});

test('a logger below info gets no line; one set up differently is left to pino', () => {
  const lines: string[] = [];
  okLineFor(logger({ level: 'warn', timestamp: FIXED }, lines))?.(okFieldsOf(principal('a', [])), '127.0.0.1', 1, 'c-0', 'TLSv1.3', 'X', false);
  okLineFor(logger({ level: 'silent', timestamp: FIXED }, lines))?.(okFieldsOf(principal('a', [])), '127.0.0.1', 1, 'c-0', 'TLSv1.3', 'X', false);
  assert.deepEqual(lines, []);
  assert.equal(okLineFor(logger({ level: 'info', mixin: () => ({ extra: 1 }) }, lines)), undefined);
  assert.equal(okLineFor(logger({ level: 'info', redact: ['remoteIp'] }, lines)), undefined);
  assert.equal(okLineFor(logger({ level: 'info', serializers: { principal: (v: string) => v.toUpperCase() } }, lines)), undefined);
  assert.equal(okLineFor(logger({ level: 'info', formatters: { log: (o) => o } }, lines)), undefined);
  assert.equal(okLineFor(logger({ level: 'info', nestedKey: 'data' }, lines)), undefined);
});
