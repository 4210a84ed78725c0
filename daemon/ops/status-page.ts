import crypto from 'node:crypto';
import type { StatusSnapshot } from './status.js';

/**
 * The status page: server-rendered HTML with no script and nothing from elsewhere. It reloads
 * itself with a meta refresh. A browser signs in once with an API token; the page then keeps
 * a session cookie that holds no token, only an expiry and an HMAC of it under the token, so
 * rotating the tokens ends every session.
 */

export const SESSION_COOKIE = 'mailsync_status';
export const SESSION_SECONDS = 12 * 3600;

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.5rem 0 .4rem}
.meta{color:#666;margin-bottom:1rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#f0f0f0}
.state{font-weight:600;white-space:nowrap}.live{color:#0a7a2f}.connecting,.initial_sync{color:#8a6d00}
.auth_failed,.imap_disabled,.unreachable,.throttled{color:#b00020}.revoked,.none{color:#777}
.error{color:#b00020}.folders{margin:0;padding-left:1rem}.counts span{margin-right:1rem}
form.inline{display:inline}label{display:block;margin:.5rem 0}input[type=password]{width:22rem;max-width:100%}`;
const CSS_HASH = crypto.createHash('sha256').update(CSS).digest('base64');

/** Headers for every page: no scripts at all, the one stylesheet by its hash, never cached or framed. */
export const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; style-src 'sha256-${CSS_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function sign(token: string, expiry: number): Buffer {
  return crypto.createHmac('sha256', token).update(`mailsync-status:${expiry}`).digest();
}

/** A session cookie value for a browser that proved it knows `token`. */
export function issueSession(token: string, now = Date.now()): string {
  const expiry = Math.floor(now / 1000) + SESSION_SECONDS;
  return `${expiry}.${sign(token, expiry).toString('base64url')}`;
}

/** Whether a session cookie value was issued under one of `tokens` and has not expired. */
export function sessionValid(value: string | undefined, tokens: readonly string[], now = Date.now()): boolean {
  const m = value ? /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value) : null;
  if (!m) return false;
  const expiry = Number(m[1]);
  if (expiry * 1000 <= now) return false;
  const given = Buffer.from(m[2]!, 'base64url');
  let ok = false;
  for (const t of tokens) ok = crypto.timingSafeEqual(given, sign(t, expiry)) || ok;
  return ok;
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function page(title: string, body: string, refreshSeconds?: number): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
${refreshSeconds ? `<meta http-equiv="refresh" content="${refreshSeconds}">` : ''}<title>${escapeHtml(title)}</title><style>${CSS}</style></head>
<body>${body}</body></html>
`;
}

export function renderLogin(error?: string, refreshSeconds?: number): string {
  return page('mailsync status: sign in', `<h1>mailsync status</h1>
<p class="meta">Sign in with one of the API tokens (api.tokens in the configuration).</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/status/login">
<label>API token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
${refreshSeconds ? `<input type="hidden" name="refresh" value="${refreshSeconds}">` : ''}
<button type="submit">Sign in</button>
</form>`);
}

function ago(iso: string | null, now: number): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const text = s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : s < 129_600 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86_400)} days ago`;
  return `<time datetime="${escapeHtml(iso)}" title="${escapeHtml(iso)}">${text}</time>`;
}

export function renderStatus(snap: StatusSnapshot, refreshSeconds: number): string {
  const now = Date.parse(snap.generatedAt);
  const counts = Object.entries(snap.counts).map(([state, n]) => `<span class="${escapeHtml(state)}">${escapeHtml(state)}: ${n}</span>`).join('');
  const rows = snap.mailboxes.map((m) => {
    const folders = m.folders.length
      ? `<ul class="folders">${m.folders.map((f) => `<li data-folder="${escapeHtml(f.path)}">${escapeHtml(f.path)}: ${f.lagSeconds === null ? 'not checked by a running worker' : `checked ${f.lagSeconds} s ago`} · UID next ${f.uidNext} · saved ${ago(f.syncedAt, now)}</li>`).join('')}</ul>`
      : '—';
    const err = m.lastError ? `<span class="error"><code>${escapeHtml(m.lastError.code)}</code> ${escapeHtml(m.lastError.message)}</span> ${ago(m.lastError.at, now)}` : '—';
    return `<tr data-user="${escapeHtml(m.userId)}">
<td>${escapeHtml(m.userId)}${m.email ? `<br><small>${escapeHtml(m.email)}</small>` : ''}</td>
<td class="state ${escapeHtml(m.state)}" data-state="${escapeHtml(m.state)}">${escapeHtml(m.state === 'none' ? 'no consent' : m.state)}</td>
<td class="last-error">${err}</td>
<td class="last-sync">${ago(m.lastSyncAt, now)}</td>
<td>${folders}</td>
</tr>`;
  }).join('\n');
  const outbox = snap.queues.outbox;
  const relay = snap.queues.relay;
  return page('mailsync status', `<h1>mailsync status</h1>
<p class="meta">As of <time datetime="${snap.generatedAt}">${snap.generatedAt}</time>; this page reloads every ${refreshSeconds} s.
<form class="inline" method="post" action="/status/logout"><button type="submit">Sign out</button></form></p>
<p class="counts">${counts || 'No users yet.'}</p>
<h2>Mailboxes</h2>
<table id="mailboxes"><thead><tr><th>user</th><th>state</th><th>last error</th><th>last sync</th><th>folders</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="5">No users are registered.</td></tr>'}
</tbody></table>
<h2>Queues</h2>
<table id="queues"><tbody>
<tr data-queue="outbox"><th>outbox (events to deliver)</th><td class="depth">${outbox.push ? outbox.queued : `${outbox.queued} — no webhook URL: events wait in the change feed`}</td></tr>
<tr data-queue="relay"><th>relay (mail to send)</th><td class="depth">${relay ? relay.queued : 'relay not running'}</td></tr>
</tbody></table>`, refreshSeconds);
}
