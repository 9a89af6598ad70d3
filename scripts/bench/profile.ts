/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per area
 * (the broker's own code, each package, Node's internals, native/GC).
 *
 *   node scripts/bench/profile.ts FILE.cpuprofile [--top 15]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTimeRow {
  name: string;
  where: string;
  area: string;
  ms: number;
  share: number;
}

/** The area a script belongs to: a package under node_modules, the broker's own code, node: internals. */
export function areaOf(url: string, fn: string): string {
  if (!url) return fn === '(garbage collector)' ? 'GC' : fn === '(idle)' ? 'idle' : fn === '(program)' ? 'native (program)' : 'native';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] === 'internal' ? `internal/${url.slice(14).split('/')[0]}` : url.slice(5)}`;
  const own = /\/(dist|src)\/(.+)$/.exec(url);
  if (own) return `broker ${own[2]?.split('/')[0]}`;
  return url;
}

function shortUrl(url: string): string {
  const nm = /node_modules\/(.+)$/.exec(url);
  if (nm) return nm[1] as string;
  const own = /\/((?:dist|src)\/.+)$/.exec(url);
  return own ? (own[1] as string) : url.replace(/^file:\/\//, '');
}

/**
 * Self time per function and per area. `window` (profile clock, µs, as startTime/endTime) keeps
 * only the samples taken inside it, e.g. the measured part of a benchmark round.
 */
export function summarise(p: CpuProfile, top = 15, window?: { from: number; to: number }): { totalMs: number; idleMs: number; functions: SelfTimeRow[]; areas: Array<{ area: string; ms: number; share: number }> } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  if (p.samples && p.timeDeltas) {
    // a sample's time is the delta to the next sample
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      if (window && (t < window.from || t > window.to)) continue;
      const dt = p.timeDeltas[i + 1] ?? 0;
      const id = p.samples[i] as number;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
    }
  } else {
    const total = p.endTime - p.startTime;
    const hits = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    for (const n of p.nodes) selfUs.set(n.id, ((n.hitCount ?? 0) / hits) * total);
  }
  const fns = new Map<string, { name: string; where: string; area: string; us: number }>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    totalUs += us;
    const name = cf.functionName || '(anonymous)';
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const area = areaOf(cf.url, cf.functionName);
    const f = fns.get(key) ?? { name, where, area, us: 0 };
    f.us += us;
    fns.set(key, f);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const share = (us: number) => (totalUs ? us / totalUs : 0);
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    functions: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top).map((f) => ({ name: f.name, where: f.where, area: f.area, ms: f.us / 1000, share: share(f.us) })),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([area, us]) => ({ area, ms: us / 1000, share: share(us) })),
  };
}

export function profileMarkdown(s: ReturnType<typeof summarise>, requests?: number): string {
  const per = (ms: number) => (requests ? ` | ${((ms * 1000) / requests).toFixed(1)}` : '');
  const head = requests ? ' | µs/request' : '';
  const sep = requests ? ' | ---:' : '';
  const lines = [
    `Busy (non-idle) time sampled: ${s.totalMs.toFixed(0)} ms; idle ${s.idleMs.toFixed(0)} ms.${requests ? ` Requests in the profiled window: ${requests}.` : ''}`,
    '',
    `| # | self time | share${head} | function | where |`,
    `| ---: | ---: | ---:${sep} | --- | --- |`,
    ...s.functions.map((f, i) => `| ${i + 1} | ${f.ms.toFixed(0)} ms | ${(f.share * 100).toFixed(1)}%${per(f.ms)} | \`${f.name}\` | ${f.where || f.area} |`),
    '',
    `| area | self time | share${head} |`,
    `| --- | ---: | ---:${sep} |`,
    ...s.areas.map((a) => `| ${a.area} | ${a.ms.toFixed(0)} ms | ${(a.share * 100).toFixed(1)}%${per(a.ms)} |`),
  ];
  return lines.join('\n');
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' }, requests: { type: 'string' } } });
  const file = positionals[0];
  if (!file) {
    process.stderr.write('usage: node scripts/bench/profile.ts FILE.cpuprofile [--top 15] [--requests N]\n');
    process.exit(2);
  }
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(values.top));
  process.stdout.write(`${profileMarkdown(s, values.requests ? Number(values.requests) : undefined)}\n`);
}
