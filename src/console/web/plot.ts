/**
 * The live view's plots, drawn on the server as SVG (no script, no chart library): one polyline
 * per series over the interval times, a y axis from 0 to a rounded maximum, and a legend.
 */
import { html, type Html } from './html.ts';

export interface Line {
  name: string;
  /** A class of console.css giving the stroke colour (style attributes are kept out by the CSP). */
  cls: string;
  values: readonly (number | null)[];
}

const W = 640;
const H = 180;
const PAD = { left: 48, right: 12, top: 12, bottom: 24 };

/** 1, 2 or 5 times a power of ten, at least `v` (so the axis reads well). */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) as number) * p;
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(n < 1 ? 2 : 1));

export function plot(id: string, title: string, unit: string, times: readonly string[], lines: readonly Line[]): Html {
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.values.filter((v): v is number => v !== null))));
  const n = times.length;
  const x = (i: number) => PAD.left + (n <= 1 ? 0 : (i * (W - PAD.left - PAD.right)) / (n - 1));
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const paths = lines.map((l) => {
    // a null (no request in the interval, for latencies) breaks the line
    const runs: string[][] = [[]];
    l.values.forEach((v, i) => (v === null ? runs.push([]) : (runs.at(-1) as string[]).push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`)));
    return runs.filter((r) => r.length > 0).map((r) => html`<polyline class="line ${l.cls}" points="${r.join(' ')}"><title>${l.name}</title></polyline>`);
  });
  const ticks = [0, max / 2, max].map((v) => html`<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}"/><text class="tick" x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  const label = (i: number, anchor: string) => html`<text class="tick" x="${x(i)}" y="${H - 6}" text-anchor="${anchor}">${(times[i] ?? '').slice(11, 19)}</text>`;
  const axis = n === 0 ? html`<text class="tick" x="${W / 2}" y="${H / 2}" text-anchor="middle">no data yet</text>` : html`${label(0, 'start')}${n > 1 ? label(n - 1, 'end') : ''}`;
  return html`<figure class="plot" id="${id}">
<figcaption>${title} <span class="unit">(${unit})</span> ${lines.map((l) => html`<span class="key ${l.cls}">${l.name}</span>`)}</figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${title}" xmlns="http://www.w3.org/2000/svg">${ticks}${axis}${paths}</svg>
</figure>`;
}
