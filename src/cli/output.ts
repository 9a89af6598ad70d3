/** Printing for the CLI: plain text for people, JSON for scripts. */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(...lines: string[]): void {
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

/** A left-aligned text table with a header row. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ');
  return [fmt(headers), ...rows.map(fmt)].join('\n');
}

export function days(ms: number): string {
  const d = Math.round(ms / 86_400_000);
  return d >= 1 ? `${d} day${d === 1 ? '' : 's'}` : `${Math.round(ms / 60_000)} minutes`;
}
