/**
 * Route matching on the canonical path: a route's path is a segment-aligned prefix ("/api" takes
 * "/api", "/api/" and "/api/x", not "/apix"), "/" takes everything, and the longest prefix wins.
 * Pure; the table is sorted once per generation.
 */

export interface Routed {
  /** The route's prefix: "" for "/", else "/seg/seg" without a trailing slash. */
  readonly prefix: string;
}

/** Sorts routes longest prefix first, so the first match is the most specific one. */
export function routeTable<R extends Routed>(routes: readonly R[]): readonly R[] {
  return [...routes].sort((a, b) => b.prefix.length - a.prefix.length);
}

export function matchRoute<R extends Routed>(table: readonly R[], path: string): R | undefined {
  for (const r of table) {
    const p = r.prefix;
    if (p === '') return r;
    if (path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 47 /* / */)) return r;
  }
  return undefined;
}
