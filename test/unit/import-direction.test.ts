/**
 * The import direction of DESIGN.md, checked on every file of src/ so that it cannot rot:
 *
 *   errors → config/request/identity → pki/acl/ratelimit/filter/auth → tls/proxy/forward/observability
 *     → pipeline → admin/server → connect/doctor → cli → main
 *
 * A file may import from its own folder, from a lower tier, or from another folder of its own tier
 * as long as folders do not import each other in a circle. The proxy imports no policy module, and
 * nothing imports cli/.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '..', '..', 'src');

/** Tier of each top-level unit of src/ (a folder, or a file without its .ts). */
const TIERS: Record<string, number> = {
  errors: 0, channels: 0, 'raw-line': 0, ablation: 0, deadline: 0,
  config: 1, request: 1, identity: 1,
  pki: 2, acl: 2, ratelimit: 2, filter: 2, auth: 2,
  tls: 3, proxy: 3, forward: 3, observability: 3, enroll: 3,
  pipeline: 4, console: 4,
  admin: 5, server: 5, lifecycle: 5,
  connect: 6, doctor: 6,
  cli: 7,
  main: 8,
};
/** Folders that decide (policy): the proxy moves bytes and must not import them. */
const POLICY = new Set(['acl', 'ratelimit', 'auth', 'filter', 'identity']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : name.endsWith('.ts') ? [p] : [];
  });
}

/** The top-level unit of a path inside src/. */
function unitOf(file: string): string {
  const first = relative(SRC, file).split('/')[0] as string;
  return first.replace(/\.ts$/, '');
}

/** Relative import specifiers of a file, type-only ones included (they are dependencies too). */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) out.push((m[1] ?? m[2]) as string);
  return out;
}

interface Edge {
  from: string;
  to: string;
  file: string;
  spec: string;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of files(SRC)) {
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const target = resolve(dirname(file), spec);
      out.push({ from: unitOf(file), to: unitOf(target), file: relative(SRC, file), spec });
    }
  }
  return out;
}

test('every unit of src/ has a tier', () => {
  const units = new Set(readdirSync(SRC).map((n) => n.replace(/\.ts$/, '')));
  assert.deepEqual([...units].filter((u) => !(u in TIERS)), [], 'add the new unit to TIERS (and to DESIGN.md / the README layout)');
});

test('imports flow one way: no file imports a higher tier', () => {
  const wrong = edges()
    .filter((e) => e.from !== e.to && (TIERS[e.to] as number) > (TIERS[e.from] as number))
    .map((e) => `${e.file} imports ${e.spec} (${e.from}, tier ${TIERS[e.from]} → ${e.to}, tier ${TIERS[e.to]})`);
  assert.deepEqual(wrong, []);
});

test('folders of one tier do not import each other in a circle', () => {
  const graph = new Map<string, Set<string>>();
  for (const e of edges()) if (e.from !== e.to && TIERS[e.from] === TIERS[e.to]) (graph.get(e.from) ?? graph.set(e.from, new Set()).get(e.from))!.add(e.to);
  const cycles: string[] = [];
  for (const [a, tos] of graph) for (const b of tos) if (graph.get(b)?.has(a) && a < b) cycles.push(`${a} ↔ ${b}`);
  assert.deepEqual(cycles, []);
});

test('the proxy imports no policy module, and nothing imports cli/', () => {
  const all = edges();
  assert.deepEqual(all.filter((e) => e.from === 'proxy' && POLICY.has(e.to)).map((e) => `${e.file} imports ${e.spec}`), []);
  assert.deepEqual(all.filter((e) => e.to === 'cli' && e.from !== 'cli' && e.from !== 'main').map((e) => `${e.file} imports ${e.spec}`), []);
});

test('the check sees imports: it finds this file\'s own kind of specifier in a sample', () => {
  const sample = "import a from './x.ts';\nimport type { B } from '../y/index.ts';\nexport { c } from './z.ts';\nconst d = await import('../w.ts');\nimport 'node:fs';";
  assert.deepEqual(importsOf(sample), ['./x.ts', '../y/index.ts', './z.ts', '../w.ts']);
});
