/**
 * The console's pages, each a pure function of the view the data source returned (the same data
 * the JSON API answers), so a page never shows what the API would not.
 */
import type { ActionResult, CertificatesView, ChangesView, CredentialView, LiveView, PartnersView } from '../model.ts';
import { html, table, when, type Html } from './html.ts';
import { plot } from './plot.ts';

export type ActionName = ActionResult['action'];

/** What each action is called on its button, and the form field that names its target. */
export const ACTIONS: Record<ActionName, { verb: string; field: string | undefined }> = {
  'revoke-certificate': { verb: 'Revoke', field: 'serial' },
  'revoke-credential': { verb: 'Revoke', field: 'id' },
  'lift-ban': { verb: 'Lift ban', field: 'key' },
  reload: { verb: 'Reload', field: undefined },
};

const actionLink = (action: ActionName, target: string, label: string) => {
  const field = ACTIONS[action].field as string;
  return html`<a class="button danger" href="/console/actions/${action}?${field}=${encodeURIComponent(target)}">${label}</a>`;
};

const days = (iso: string, now: number) => Math.floor((Date.parse(iso) - now) / 86_400_000);

function credential(c: CredentialView): Html {
  const action = c.kind === 'certificate' ? 'revoke-certificate' : 'revoke-credential';
  const revoke = c.status === 'valid' ? actionLink(action, c.id, 'Revoke') : '';
  return html`<li class="credential" data-kind="${c.kind}" data-id="${c.id}"><span class="kind">${c.kind}</span> <code class="id">${c.id}</code> <span class="status ${c.status}">${c.status}</span> <span class="expiry">${c.notAfter ? html`until ${when(c.notAfter)}` : ''}</span> ${revoke}</li>`;
}

export function partnersBody(v: PartnersView): Html {
  const rows = v.partners.map(
    (p) => html`<tr data-partner="${p.name}">
<td class="name">${p.name}</td>
<td class="roles">${p.roles.join(', ')}</td>
<td class="contact">${p.contact ?? ''}</td>
<td><ul class="credentials">${p.credentials.map(credential)}</ul></td>
<td class="last-seen">${when(p.lastSeen)}</td>
<td class="num requests-hour">${p.requests.hour}</td><td class="num requests-day">${p.requests.day}</td>
<td class="num refusals-hour">${p.refusals.hour}</td><td class="num refusals-day">${p.refusals.day}</td>
<td class="num rate-limit">${p.rateLimit ? `${Math.floor(p.rateLimit.remaining)} / ${p.rateLimit.limit}` : '—'}</td>
<td class="num open-connections">${p.openConnections}</td>
</tr>`,
  );
  return html`<p class="generated">As of ${when(v.generatedAt)}; activity counts what this broker process saw since it started.</p>
${table('partners', ['Name', 'Roles', 'Contact', 'Credentials', 'Last seen', 'Requests 1h', 'Requests 24h', 'Refusals 1h', 'Refusals 24h', 'Rate limit left', 'Open connections'], rows, 'No identities configured.')}`;
}

export function certificatesBody(v: CertificatesView): Html {
  const now = Date.parse(v.generatedAt);
  const timeline = v.timeline.map((t) => {
    const left = days(t.notAfter, now);
    const cls = left < 0 ? 'expired' : left < 14 ? 'soon' : 'ok';
    return html`<tr data-serial="${t.serial ?? ''}" class="${t.retiring ? 'retiring' : ''}"><td class="kind">${t.kind}</td><td class="name">${t.name}</td><td><code class="serial">${t.serial ?? '—'}</code></td><td class="not-after">${when(t.notAfter)}</td><td class="num days-left ${cls}">${left}</td><td>${t.retiring ? 'retiring' : ''}</td></tr>`;
  });
  const invitations = v.invitations.map(
    (i) => html`<tr data-invitation="${i.id}"><td><code>${i.id}</code></td><td class="name">${i.name}</td><td class="roles">${i.roles.join(', ')}</td><td class="state">${i.status}</td><td class="expires">${when(i.expiresAt)}</td><td class="contact">${i.contact ?? ''}</td></tr>`,
  );
  return html`<p class="generated">As of ${when(v.generatedAt)}; soonest expiry first.</p>
<h2>Expiry timeline</h2>
${table('timeline', ['Kind', 'Name', 'Serial', 'Not after', 'Days left', ''], timeline, 'No certificates.')}
<h2>Pending invitations</h2>
${table('invitations', ['Id', 'Name', 'Roles', 'Status', 'Expires', 'Contact'], invitations, 'No invitations.')}`;
}

export function liveBody(v: LiveView, refresh: number | undefined): Html {
  const times = v.series.map((p) => p.t);
  const rates = plot('plot-rates', 'Traffic', 'per second', times, [
    { name: 'requests', cls: 's-requests', values: v.series.map((p) => p.requestsPerSecond) },
    { name: 'errors', cls: 's-errors', values: v.series.map((p) => p.errorsPerSecond) },
    { name: 'handshakes', cls: 's-handshakes', values: v.series.map((p) => p.handshakesPerSecond) },
  ]);
  const latency = plot('plot-latency', 'Latency', 'ms', times, [
    { name: 'p50', cls: 's-p50', values: v.series.map((p) => p.p50Ms) },
    { name: 'p99', cls: 's-p99', values: v.series.map((p) => p.p99Ms) },
  ]);
  const refusals = v.refusals.map(
    (r) => html`<tr><td>${when(r.time)}</td><td class="code"><code>${r.code}</code></td><td class="reason">${r.reason}</td><td class="principal">${r.principal ?? ''}</td><td class="ip">${r.remoteIp ?? ''}</td><td class="cert">${r.certificate ? [r.certificate.subject ?? '', ' ', r.certificate.serial ?? ''] : ''}</td><td><code>${r.reqId ?? ''}</code></td></tr>`,
  );
  const bans = v.bans.map((b) => html`<tr data-ban="${b.key}"><td class="key"><code>${b.key}</code></td><td>${when(b.until)}</td><td>${actionLink('lift-ban', b.key, 'Lift ban')}</td></tr>`);
  const toggle = refresh ? html`<a href="/console/live">Stop refreshing</a>` : html`<a href="/console/live?refresh=10">Refresh every 10 s</a>`;
  return html`<p class="generated"${refresh ? html` data-refresh="${refresh}"` : ''}>As of ${when(v.generatedAt)}; ${v.intervalSeconds} s intervals. ${toggle}</p>
<div class="plots">${rates}${latency}</div>
<h2>Recent refusals</h2>
${table('refusals', ['Time', 'Code', 'Reason', 'Principal', 'Address', 'Certificate', 'Request id'], refusals, 'No refusals.')}
<h2>Active bans</h2>
${table('bans', ['Key', 'Until', ''], bans, 'No active bans.')}
<h2>Configuration</h2>
<p>${html`<a class="button" href="/console/actions/reload">Reload config and certificates</a>`}</p>`;
}

export function changesBody(v: ChangesView): Html {
  const chain = v.chain.ok ? html`<p class="chain ok" id="chain">Audit chain intact: ${v.chain.lines} lines.</p>` : html`<p class="chain bad" id="chain">Audit chain broken after ${v.chain.lines} lines: ${v.chain.problem ?? 'unknown problem'}</p>`;
  const rows = v.changes.map((c) => html`<tr><td>${when(c.time)}</td><td class="kind">${c.kind}</td><td class="actor">${c.actor ?? ''}</td><td class="detail">${c.detail}</td></tr>`);
  return html`<p class="generated">As of ${when(v.generatedAt)}; newest first.</p>
${chain}
${table('changes', ['Time', 'Change', 'By', 'Detail'], rows, 'No changes recorded.')}`;
}

/** "Revoke certificate SERIAL of NAME?" and the form that does it. */
export function confirmBody(action: ActionName, target: string, question: Html, csrf: string, back: string): Html {
  const field = ACTIONS[action].field;
  return html`<form method="post" action="/console/actions/${action}" class="confirm">
<p class="question">${question}</p>
<input type="hidden" name="csrf" value="${csrf}">
${field ? html`<input type="hidden" name="${field}" value="${target}">` : ''}
<button type="submit" class="danger" id="confirm">${ACTIONS[action].verb}</button>
<a class="button" href="${back}" id="cancel">Cancel</a>
</form>`;
}

export function resultBody(r: ActionResult, back: string): Html {
  return html`<p class="result ${r.ok ? 'ok' : 'bad'}" id="result">${r.ok ? 'Done' : 'Failed'}: ${r.message}</p>
<p><a href="${back}">Back</a></p>`;
}

export function loginBody(next: string, problem: string | undefined): Html {
  return html`${problem ? html`<p class="result bad" id="login-error">${problem}</p>` : ''}
<form method="post" action="/console/login" class="login">
<label for="token">Admin token (the first line of admin.tokenFile)</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${next}">
<button type="submit">Log in</button>
</form>`;
}

export function errorBody(code: string, message: string, hint: string): Html {
  return html`<p class="result bad" id="error"><code class="error-code">${code}</code>: ${message}</p><p class="hint">${hint}</p>`;
}
