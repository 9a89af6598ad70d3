/** Per-identity usage from access-log lines: requests, errors, denials, 429s, bytes. Pure. */

export interface UsageRow {
  principal: string;
  requests: number;
  allowed: number;
  /** 5xx answers: the upstream or the broker failed. */
  errors: number;
  /** Refused by a check (ACL, filters, paths), 429s excluded. */
  denials: number;
  rateLimited: number;
  bytesIn: number;
  bytesOut: number;
  first: string;
  last: string;
}

export interface UsageWindow {
  from?: Date;
  to?: Date;
}

interface AccessLine {
  log?: string;
  time?: string;
  principal?: string | null;
  status?: number;
  decision?: string;
  bytesIn?: number;
  bytesOut?: number | null;
}

export class UsageAggregator {
  readonly #rows = new Map<string, UsageRow>();
  readonly #window: UsageWindow;
  skipped = 0;

  constructor(window: UsageWindow = {}) {
    this.#window = window;
  }

  /** One log line (any stream; only access lines count). */
  add(text: string): void {
    if (!text.trim()) return;
    let l: AccessLine;
    try {
      l = JSON.parse(text) as AccessLine;
    } catch {
      this.skipped++;
      return;
    }
    if (l.log !== 'access' || typeof l.status !== 'number' || !l.time) return;
    const t = new Date(l.time);
    if ((this.#window.from && t < this.#window.from) || (this.#window.to && t >= this.#window.to)) return;
    const who = l.principal ?? '(none)';
    let r = this.#rows.get(who);
    if (!r) {
      r = { principal: who, requests: 0, allowed: 0, errors: 0, denials: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0, first: l.time, last: l.time };
      this.#rows.set(who, r);
    }
    r.requests++;
    if (l.status === 429) r.rateLimited++;
    else if (l.status >= 500) r.errors++;
    else if (l.decision === 'deny' || l.status >= 400) r.denials++;
    if (l.status < 400) r.allowed++;
    r.bytesIn += l.bytesIn ?? 0;
    r.bytesOut += l.bytesOut ?? 0;
    if (l.time < r.first) r.first = l.time;
    if (l.time > r.last) r.last = l.time;
  }

  rows(): UsageRow[] {
    return [...this.#rows.values()].sort((a, b) => b.requests - a.requests || a.principal.localeCompare(b.principal));
  }
}
