/**
 * The console's two static files, kept in the program (the build copies only .ts output, and a
 * fixed map cannot be walked out of like a folder). Both are served from /console/static/.
 */

const CSS = `
:root { color-scheme: light; --fg: #1d2330; --muted: #5b6474; --line: #d9dee7; --bg: #f6f7f9; --accent: #1f5fbf; --bad: #b3261e; --warn: #a15c00; --ok: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #1d2330; color: #fff; }
header .brand { font-weight: 600; }
header nav { display: flex; gap: 4px; flex: 1; }
header nav a { color: #c8d2e4; text-decoration: none; padding: 6px 10px; border-radius: 4px; }
header nav a.current, header nav a:hover { background: #34405a; color: #fff; }
header form.logout button { background: transparent; color: #c8d2e4; border: 1px solid #56627a; }
main { padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 4px 0 8px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.generated, .hint, .empty { color: var(--muted); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
ul.credentials { list-style: none; margin: 0; padding: 0; }
ul.credentials li { margin: 2px 0 6px; }
.kind { color: var(--muted); }
.status { padding: 0 6px; border-radius: 8px; font-size: 12px; }
.status.valid { background: #e3f1e4; color: var(--ok); }
.status.expired { background: #fdf0dd; color: var(--warn); }
.status.revoked { background: #fbe4e2; color: var(--bad); }
.days-left.soon { color: var(--warn); font-weight: 600; }
.days-left.expired { color: var(--bad); font-weight: 600; }
tr.retiring td { color: var(--muted); }
.none { color: var(--muted); }
a { color: var(--accent); }
.button, button { display: inline-block; font: inherit; padding: 3px 10px; border-radius: 4px; border: 1px solid var(--line); background: #fff; color: var(--fg); text-decoration: none; cursor: pointer; }
.button.danger, button.danger { border-color: var(--bad); color: var(--bad); }
button.danger { background: var(--bad); color: #fff; }
form.confirm, form.login { background: #fff; border: 1px solid var(--line); padding: 16px; max-width: 560px; }
form.login label { display: block; margin-bottom: 6px; }
form.login input[type=password] { width: 100%; padding: 6px; margin-bottom: 10px; font: inherit; }
.question { font-size: 16px; }
.result.ok { color: var(--ok); font-weight: 600; }
.result.bad, .chain.bad { color: var(--bad); font-weight: 600; }
.chain.ok { color: var(--ok); }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
figure.plot { margin: 0; background: #fff; border: 1px solid var(--line); padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
figcaption .unit { color: var(--muted); font-weight: 400; }
figcaption .key { font-weight: 400; margin-left: 10px; }
figcaption .key::before { content: ""; display: inline-block; width: 14px; height: 3px; margin-right: 4px; vertical-align: middle; background: currentColor; }
svg { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .line { fill: none; stroke-width: 2; stroke: currentColor; }
.s-requests { color: #1f5fbf; } .s-errors { color: #b3261e; } .s-handshakes { color: #2e7d32; }
.s-p50 { color: #6a3fb5; } .s-p99 { color: #a15c00; }
`;

/** Opt-in auto-refresh of the live view (`?refresh=10` puts data-refresh on the page). */
const JS = `'use strict';
(function () {
  var el = document.querySelector('[data-refresh]');
  var seconds = el ? Number(el.getAttribute('data-refresh')) : 0;
  if (seconds >= 2) setTimeout(function () { location.reload(); }, seconds * 1000);
})();
`;

export const ASSETS: ReadonlyMap<string, { type: string; body: string }> = new Map([
  ['/console/static/console.css', { type: 'text/css; charset=utf-8', body: CSS }],
  ['/console/static/console.js', { type: 'text/javascript; charset=utf-8', body: JS }],
]);
