/**
 * CPU time and memory of a process tree, read from /proc (Linux only): utime + stime of the
 * process and every live descendant, in seconds; resident set size in bytes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks: number | undefined;
/** USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on every common Linux). */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Fields after the `(comm)` of /proc/PID/stat; index 0 is field 3 (state). */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The process and all its live descendants. */
export function tree(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  for (let guard = 0; queue.length && guard < 10_000; guard++) {
    const p = queue.shift() as number;
    if (!statFields(p)) continue;
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ')) if (c.trim()) queue.push(Number(c));
      } catch {
        /* gone */
      }
    }
  }
  return out;
}

/** utime + stime (own threads; reaped children's cutime/cstime too) of one process, in seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  // field 14 utime, 15 stime, 16 cutime, 17 cstime → indexes 11..14 here
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / ticksPerSecond();
}

export function treeCpuSeconds(pid: number): number {
  return tree(pid).reduce((s, p) => s + cpuSeconds(p), 0);
}

export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function treeRssBytes(pid: number): number {
  return tree(pid).reduce((s, p) => s + rssBytes(p), 0);
}

/** Several trees at once (e.g. every load-generator process). */
export const cpuOf = (pids: number[]) => pids.reduce((s, p) => s + treeCpuSeconds(p), 0);

/**
 * The whole machine's CPU time from /proc/stat, in seconds summed over CPUs: busy (user, nice,
 * system, irq, softirq: a tick that lands in an interrupt is counted there and also in the
 * interrupted process's stime) and steal (time the hypervisor gave to other guests).
 */
export function machineCpuSeconds(): { busy: number; steal: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return { busy: (user + nice + system + irq + softirq) / ticksPerSecond(), steal: steal / ticksPerSecond() };
  } catch {
    return { busy: NaN, steal: NaN };
  }
}
