/**
 * Per-identity usage from access-log lines: requests, errors, denials, 429s, bytes through the
 * routes (reverse), and tunnels, forwarded requests, refusals, failures and egress bytes through
 * the forward listener (lines with `"event":"forward"`). The two directions are counted apart: a
 * forward line never changes a reverse column, nor the other way round. Pure.
 */

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
  /** Forward listener: CONNECT tunnels asked for, whatever became of them. */
  tunnels: number;
  /** Forward listener: absolute-form http requests (and other methods) asked for. */
  forwardRequests: number;
  /** Forward tunnels and requests refused (rules, port, SSRF guard, not a proxy request, revoked: outcome "refused"). */
  forwardRefused: number;
  /** Forward tunnels and requests that failed (destination unreachable, or the client left first: outcome "failed"). */
  forwardFailed: number;
  /** Bytes sent to destinations (for tunnels: TLS records) and received from them. */
  bytesUp: number;
  bytesDown: number;
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
  event?: string;
  method?: string;
  outcome?: string;
  bytesUp?: number;
  bytesDown?: number;
}

export class UsageAggregator {
  readonly #rows = new Map<string, UsageRow>();
  readonly #window: UsageWindow;
  skipped = 0;
  /** Forward-listener lines counted (the text table shows the egress columns only when there were some). */
  forwardLines = 0;

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
      r = { principal: who, requests: 0, allowed: 0, errors: 0, denials: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0, tunnels: 0, forwardRequests: 0, forwardRefused: 0, forwardFailed: 0, bytesUp: 0, bytesDown: 0, first: l.time, last: l.time };
      this.#rows.set(who, r);
    }
    if (l.time < r.first) r.first = l.time;
    if (l.time > r.last) r.last = l.time;
    if (l.event === 'forward') {
      this.forwardLines++;
      if (l.method === 'CONNECT') r.tunnels++;
      else r.forwardRequests++;
      // the line's own verdict (a 401 or 429 of the forward listener is a refusal, a 502 a failure); its status when it has none
      const outcome = l.outcome ?? (l.status === 0 || l.status >= 500 ? 'failed' : l.status >= 400 ? 'refused' : 'ok');
      if (outcome === 'refused') r.forwardRefused++;
      else if (outcome === 'failed') r.forwardFailed++;
      r.bytesUp += l.bytesUp ?? 0;
      r.bytesDown += l.bytesDown ?? 0;
      return;
    }
    r.requests++;
    if (l.status === 429) r.rateLimited++;
    else if (l.status >= 500) r.errors++;
    else if (l.decision === 'deny' || l.status >= 400) r.denials++;
    if (l.status < 400) r.allowed++;
    r.bytesIn += l.bytesIn ?? 0;
    r.bytesOut += l.bytesOut ?? 0;
  }

  rows(): UsageRow[] {
    const total = (r: UsageRow) => r.requests + r.tunnels + r.forwardRequests;
    return [...this.#rows.values()].sort((a, b) => total(b) - total(a) || a.principal.localeCompare(b.principal));
  }
}
