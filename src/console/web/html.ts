/**
 * HTML for the console, built as strings: every value from the data source goes through `esc`
 * (text and attribute values alike), and no element carries an inline script or style attribute
 * (the Content-Security-Policy would block them): looks come from classes in console.css.
 */

/** A piece of markup already escaped, so that `html` does not escape it again. */
export class Html {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c] as string);
}

type Part = Html | string | number | null | undefined | readonly Part[];

const render = (p: Part): string => (p instanceof Html ? p.text : Array.isArray(p) ? p.map(render).join('') : esc(p));

/** A tagged template: interpolated values are escaped unless they are Html (or arrays of it). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] as string;
  values.forEach((v, i) => (out += render(v) + (strings[i + 1] as string)));
  return new Html(out);
}

export const PAGES = [
  { path: '/console/', title: 'Partners' },
  { path: '/console/certificates', title: 'Certificates' },
  { path: '/console/live', title: 'Live' },
  { path: '/console/changes', title: 'Changes' },
] as const;

export interface Frame {
  title: string;
  /** The page's path, to mark it in the navigation. */
  path?: string;
  /** The CSRF token of the session (for the log-out form); none on the login page. */
  csrf?: string;
  /** Whether a log-out button makes sense (a token is configured). */
  logout?: boolean;
}

/** The whole document around a page's content. */
export function page(f: Frame, body: Html): string {
  const nav = f.csrf === undefined ? '' : html`<nav>${PAGES.map((p) => html`<a href="${p.path}"${p.path === f.path ? html` class="current" aria-current="page"` : ''}>${p.title}</a>`)}</nav>`;
  const out = f.logout && f.csrf !== undefined ? html`<form method="post" action="/console/logout" class="logout"><input type="hidden" name="csrf" value="${f.csrf}"><button type="submit">Log out</button></form>` : '';
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${f.title} · broker console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body>
<header><span class="brand">broker console</span>${nav}${out}</header>
<main>
<h1>${f.title}</h1>
${body}
</main>
</body>
</html>
`.text;
}

/** A table: `rows` are already rendered cells; an empty list shows `empty` instead. */
export function table(id: string, head: readonly string[], rows: readonly Html[], empty: string): Html {
  if (rows.length === 0) return html`<p class="empty" id="${id}">${empty}</p>`;
  return html`<table id="${id}"><thead><tr>${head.map((h) => html`<th>${h}</th>`)}</tr></thead><tbody>${rows}</tbody></table>`;
}

/** A time as the API gives it (ISO 8601), shown in UTC without milliseconds; "—" for none. */
export function when(iso: string | null | undefined): Html {
  if (!iso) return html`<span class="none">—</span>`;
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}
