/**
 * The monitoring artifacts in deploy/: the Prometheus alert rules and the Grafana dashboard.
 * - Every metric they name is one a running broker serves: a scrape of a real broker is the
 *   reference, so a renamed or misspelt metric fails here rather than in an operator's silent alert.
 * - The rules pass `promtool check rules` and their unit tests (`promtool test rules`) when promtool
 *   is installed (Debian package `prometheus`); without it that test is skipped, saying so, and the
 *   structural checks below still run.
 * - The dashboard is checked against a JSON schema of what Grafana needs to import it (TypeBox).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { makePki, startBroker, startUpstream } from '../helpers/broker.ts';
import { scrape } from '../helpers/admin.ts';
import { tempDir } from '../helpers/cli.ts';

const deploy = join(import.meta.dirname, '..', '..', 'deploy');
const RULES = join(deploy, 'prometheus', 'broker-rules.yml');
const RULE_TESTS = join(deploy, 'prometheus', 'broker-rules.test.yml');
const DASHBOARD = join(deploy, 'grafana', 'broker-dashboard.json');

// ------------------------------------------------------------------------------------------------
// The rules

const Duration = Type.String({ pattern: '^[0-9]+(ms|s|m|h|d|w|y)$' });
const AlertRule = Type.Object(
  {
    alert: Type.String({ pattern: '^Broker[A-Z][A-Za-z0-9]+$' }),
    expr: Type.String({ minLength: 1 }),
    for: Type.Optional(Duration),
    labels: Type.Object({ severity: Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('critical')]) }, { additionalProperties: Type.String() }),
    annotations: Type.Object({ summary: Type.String({ minLength: 1 }), description: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
const RuleFile = Type.Object({ groups: Type.Array(Type.Object({ name: Type.String(), rules: Type.Array(AlertRule, { minItems: 1 }) }, { additionalProperties: false }), { minItems: 1 }) }, { additionalProperties: false });

const rules = parse(readFileSync(RULES, 'utf8')) as Static<typeof RuleFile>;
const alerts = () => rules.groups.flatMap((g) => g.rules);

test('broker-rules.yml: alert rules with a severity, a summary and a description, one name each', () => {
  assert.deepEqual([...Value.Errors(RuleFile, rules)].map((e) => `${e.path}: ${e.message}`), []);
  const names = alerts().map((r) => r.alert);
  assert.equal(new Set(names).size, names.length, 'alert names are unique');
  // What issue 19 asks for: certificate and CRL expiry, reload failures, bans, 5xx rate, upstream down.
  const uses = (metric: string, filter: RegExp = /./) => alerts().filter((r) => r.expr.includes(metric) && filter.test(r.expr)).map((r) => r.alert);
  assert.ok(uses('broker_certificate_expiry_timestamp_seconds', /kind=~"server\|ca"/).length >= 1, 'certificate expiry');
  assert.ok(uses('broker_certificate_expiry_timestamp_seconds', /kind="crl"/).length >= 1, 'CRL expiry');
  assert.ok(uses('broker_config_last_reload_success').length >= 1, 'reload failures');
  assert.ok(uses('broker_bans_').length >= 1, 'bans');
  assert.ok(uses('broker_requests_total', /status=~"5\.\."/).length >= 1, '5xx rate');
  assert.ok(uses('broker_requests_total', /status=~"502\|504"/).length >= 1, 'upstream down');
});

/** promtool on PATH (Debian: apt-get install prometheus), or undefined. */
function promtool(): string | undefined {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? 'promtool' : undefined;
}

test('promtool check rules and promtool test rules accept broker-rules.yml', (t) => {
  const bin = promtool();
  if (!bin) return t.skip('promtool is not installed (Debian package "prometheus"): only the structural checks ran');
  const check = spawnSync(bin, ['check', 'rules', RULES], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(check.status, 0, check.stdout + check.stderr);
  assert.match(check.stdout + check.stderr, new RegExp(`SUCCESS: ${alerts().length} rules found`));
  // The unit tests evaluate each rule against made-up series: thresholds, `for:` and annotations.
  const unit = spawnSync(bin, ['test', 'rules', RULE_TESTS], { encoding: 'utf8', timeout: 60_000, cwd: join(deploy, 'prometheus') });
  assert.equal(unit.status, 0, unit.stdout + unit.stderr);
  const tested = new Set([...readFileSync(RULE_TESTS, 'utf8').matchAll(/alertname: (\S+)/g)].map((m) => m[1]));
  assert.deepEqual(alerts().map((r) => r.alert).filter((a) => !tested.has(a)), [], 'every rule has a unit test');
  // The dashboard's queries, as recording rules, go through the same PromQL parser ($instance sits
  // inside a string, so it parses as it is).
  const asRules = { groups: [{ name: 'dashboard', rules: queryPanels().flatMap((p) => p.targets.map((q) => ({ record: `dashboard:panel_${p.id}_${q.refId}`, expr: q.expr }))) }] };
  const file = join(tempDir(t), 'dashboard-queries.yml');
  writeFileSync(file, JSON.stringify(asRules)); // JSON is YAML
  const queries = spawnSync(bin, ['check', 'rules', file], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(queries.status, 0, queries.stdout + queries.stderr);
});

// ------------------------------------------------------------------------------------------------
// The dashboard: what Grafana needs to import it, as a schema

const DataSource = Type.Object({ type: Type.Literal('prometheus'), uid: Type.Literal('${datasource}') });
const GridPos = Type.Object({ x: Type.Integer({ minimum: 0, maximum: 23 }), y: Type.Integer({ minimum: 0 }), w: Type.Integer({ minimum: 1, maximum: 24 }), h: Type.Integer({ minimum: 1 }) });
const Target = Type.Object({ refId: Type.String({ pattern: '^[A-Z]$' }), datasource: DataSource, expr: Type.String({ minLength: 1 }), legendFormat: Type.String(), instant: Type.Optional(Type.Boolean()), format: Type.Optional(Type.Literal('table')) }, { additionalProperties: false });
const Row = Type.Object({ id: Type.Integer(), type: Type.Literal('row'), title: Type.String({ minLength: 1 }), collapsed: Type.Literal(false), gridPos: GridPos, panels: Type.Array(Type.Never()) });
const Panel = Type.Object({
  id: Type.Integer(),
  type: Type.Union([Type.Literal('timeseries'), Type.Literal('stat'), Type.Literal('table')]),
  title: Type.String({ minLength: 1 }),
  description: Type.Optional(Type.String()),
  datasource: DataSource,
  gridPos: GridPos,
  targets: Type.Array(Target, { minItems: 1 }),
  fieldConfig: Type.Object({ defaults: Type.Object({}), overrides: Type.Array(Type.Unknown()) }),
  options: Type.Object({}),
});
const Variable = Type.Object({ name: Type.String({ pattern: '^[a-z]+$' }), type: Type.Union([Type.Literal('datasource'), Type.Literal('query')]) });
const Dashboard = Type.Object({
  title: Type.String({ minLength: 1 }),
  uid: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,40}$' }),
  schemaVersion: Type.Integer({ minimum: 30 }),
  version: Type.Integer(),
  time: Type.Object({ from: Type.String(), to: Type.String() }),
  templating: Type.Object({ list: Type.Array(Variable) }),
  panels: Type.Array(Type.Union([Row, Panel]), { minItems: 1 }),
});

type DashboardPanel = Static<typeof Panel> | Static<typeof Row>;
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Static<typeof Dashboard>;
const queryPanels = () => dashboard.panels.filter((p): p is Static<typeof Panel> => p.type !== 'row');

test('broker-dashboard.json: a Grafana dashboard (schema), unique panel ids, panels inside the 24-column grid without overlap, variables defined', () => {
  assert.deepEqual([...Value.Errors(Dashboard, dashboard)].map((e) => `${e.path}: ${e.message}`), []);
  const ids = dashboard.panels.map((p: DashboardPanel) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const cells = new Map<string, string>();
  for (const p of dashboard.panels) {
    const g = p.gridPos;
    assert.ok(g.x + g.w <= 24, `${p.title}: within 24 columns`);
    for (let x = g.x; x < g.x + g.w; x++)
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = cells.get(`${x},${y}`);
        assert.equal(other, undefined, `${p.title} overlaps ${other}`);
        cells.set(`${x},${y}`, p.title);
      }
  }
  for (const p of queryPanels()) {
    const refIds = p.targets.map((t) => t.refId);
    assert.equal(new Set(refIds).size, refIds.length, `${p.title}: refIds unique`);
  }
  const defined = new Set(dashboard.templating.list.map((v) => v.name));
  assert.ok(defined.has('datasource'), 'a data source variable, so the dashboard imports into any Grafana');
  const used = new Set([...JSON.stringify(dashboard.panels).matchAll(/\$\{?([a-z_]+)\}?/g)].map((m) => m[1] as string));
  assert.deepEqual([...used].filter((v) => !defined.has(v) && !v.startsWith('__')), [], 'every $variable is defined');
});

// ------------------------------------------------------------------------------------------------
// Every metric named in the rules and the dashboard, against a real scrape

/** The metric names in a PromQL expression: the broker's own and prom-client's process metrics. */
const metricNames = (expr: string) => [...expr.matchAll(/\b(?:broker|process|nodejs)_[a-z0-9_]+\b/g)].map((m) => m[0]);

test('every metric the rules and the dashboard name is served by a running broker', async (t) => {
  const pki = await makePki(t);
  const up = await startUpstream(t);
  const b = await startBroker(t, pki, { routes: [{ name: 'api', path: '/api', upstream: up.url, roles: ['user'] }] });
  const s = await scrape(b);
  // A family is served if it has a # TYPE line (a labelled metric with no series yet still has one);
  // a histogram's series are its family name + _bucket, _sum or _count.
  const served = (name: string) => s.types.has(name) || (/_(bucket|sum|count)$/.test(name) && s.types.get(name.replace(/_(bucket|sum|count)$/, '')) === 'histogram');

  const exprs = [...alerts().map((r) => [`rule ${r.alert}`, r.expr] as const), ...queryPanels().flatMap((p) => p.targets.map((q) => [`panel "${p.title}" ${q.refId}`, q.expr] as const))];
  const missing: string[] = [];
  for (const [where, expr] of exprs) {
    const names = metricNames(expr);
    assert.ok(names.length > 0, `${where} names a metric of the broker: ${expr}`);
    for (const n of names) if (!served(n)) missing.push(`${where}: ${n}`);
  }
  assert.deepEqual(missing, [], 'metrics named in deploy/ but not served');
  const inDashboard = new Set(queryPanels().flatMap((p) => p.targets.flatMap((q) => metricNames(q.expr))));
  for (const n of ['broker_forward_total', 'broker_forward_bytes_total', 'broker_config_last_reload_success', 'broker_certificate_expiry_timestamp_seconds', 'process_cpu_seconds_total']) {
    assert.ok(inDashboard.has(n), `the dashboard shows ${n}`);
  }
});
