import type { RecentDenial, TopUsersReport } from '../../reports/usage-reports.js';
import { html, type Html } from './html.js';

function layout(title: string, body: Html, options: { script?: boolean } = {}): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
${options.script ? html`<script src="/ui/app.js" defer></script>` : ''}
</head>
<body>
${body}
</body>
</html>
`;
}

/** The token is POSTed in the body, never put in a URL; a wrong one gets the form again and no detail. */
export function loginPage(refused: boolean): Html {
  return layout(
    'tokenwarden — log in',
    html`<main class="login">
<h1>tokenwarden usage</h1>
<form method="post" action="/ui/login" class="card">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
${refused ? html`<p class="error" role="alert">That token was not accepted.</p>` : ''}
</form>
</main>`,
  );
}

export function disabledPage(): Html {
  return layout(
    'tokenwarden — usage page disabled',
    html`<main class="login"><h1>tokenwarden usage</h1>
<p class="card">The usage page at /ui is disabled: no admin token is configured (<code>admin.tokenSha256</code>).</p></main>`,
  );
}

export function messagePage(title: string, message: string): Html {
  return layout(`tokenwarden — ${title}`, html`<main class="login"><h1>${title}</h1><p class="card">${message}</p><p><a href="/ui">Back to the usage page</a></p></main>`);
}

export interface UsagePageData {
  readonly configSource: string;
  readonly models: readonly string[];
  readonly defaultModel: string | undefined;
  /** undefined: the report store could not be read just now (the page's script retries). */
  readonly top: TopUsersReport | undefined;
  readonly denials: readonly RecentDenial[];
  readonly selectedUser: string;
}

/**
 * The usage page, rendered with the data it has at hand so it reads without the script; the script
 * (/ui/app.js) then keeps every panel current and draws the drill-down.
 */
export function usagePage(data: UsagePageData): Html {
  return layout(
    'tokenwarden — usage',
    html`<header class="top">
<h1>tokenwarden usage</h1>
<span class="source">limits from ${data.configSource}</span>
<form method="post" action="/ui/logout"><button type="submit" class="quiet">Log out</button></form>
</header>
<main>
<section id="live" class="card">
<h2>Decisions per second <small>(this replica, updated every 2 s)</small></h2>
<div id="rates" class="rates"><p class="muted">Waiting for two readings…</p></div>
<div id="sparkline" class="sparkline"></div>
</section>
<section id="top" class="card">
<h2>Top users today <small id="top-period">${data.top ? `(${data.top.label})` : ''}</small></h2>
<div id="top-users">${data.top ? topUsersTable(data.top) : html`<p class="muted">The usage reports cannot be read right now.</p>`}</div>
</section>
<section id="user" class="card">
<h2>User</h2>
<form id="user-form" method="get" action="/ui" class="inline">
<label for="user-name">User</label>
<input id="user-name" name="user" value="${data.selectedUser}" autocomplete="off" spellcheck="false" maxlength="256" required>
<label for="user-groups" title="Group limits apply to callers whose JWT carries the group; this page cannot see their tokens">Groups (one per line)</label>
<textarea id="user-groups" name="groups" rows="1" autocomplete="off" spellcheck="false"></textarea>
<button type="submit">Show</button>
</form>
<div id="user-report"></div>
</section>
<section id="count" class="card">
<h2>Count a prompt</h2>
<form id="count-form" class="stack">
<label for="count-model">Model</label>
<select id="count-model" name="model">${data.models.map((m) => html`<option value="${m}"${m === data.defaultModel ? html` selected` : ''}>${m}</option>`)}</select>
<label for="count-text">Text (sent as one user message, through the model's chat template)</label>
<textarea id="count-text" name="text" rows="6" spellcheck="false"></textarea>
<button type="submit">Count tokens</button>
</form>
<div id="count-result" aria-live="polite"></div>
</section>
<section id="denials" class="card">
<h2>Recent denials <small>(this replica)</small></h2>
<div id="denial-list">${denialsTable(data.denials)}</div>
</section>
</main>`,
    { script: true },
  );
}

const userLink = (user: string) => html`<a href="/ui?user=${encodeURIComponent(user)}" data-user="${user}">${user}</a>`;

function topUsersTable(top: TopUsersReport): Html {
  if (top.users.length === 0) return html`<p class="muted">No tokens charged today yet.</p>`;
  const max = Math.max(...top.users.map((u) => u.tokens), 1);
  return html`<table class="top-users">
<thead><tr><th>#</th><th>User</th><th class="num">Tokens</th><th></th></tr></thead>
<tbody>${top.users.map(
    (u, i) => html`<tr><td>${i + 1}</td><td>${userLink(u.user)}</td><td class="num">${u.tokens.toLocaleString('en-US')}</td><td>${bar(u.tokens / max)}</td></tr>`,
  )}</tbody>
</table>
<p class="muted">${top.userCount.toLocaleString('en-US')} users with tokens today.</p>`;
}

function bar(fraction: number): Html {
  const width = Math.round(Math.min(1, Math.max(0, fraction)) * 200);
  return html`<svg class="bar" width="200" height="12" viewBox="0 0 200 12" aria-hidden="true"><rect class="track" width="200" height="12" rx="2"></rect><rect class="fill" width="${width}" height="12" rx="2"></rect></svg>`;
}

function denialsTable(denials: readonly RecentDenial[]): Html {
  if (denials.length === 0) return html`<p class="muted">No quota denials on this replica since it started.</p>`;
  return html`<table class="denials">
<thead><tr><th>When</th><th>User</th><th>Model</th><th>Reason</th><th class="num">Limit</th><th class="num">Asked</th></tr></thead>
<tbody>${denials.map(
    (d) => html`<tr><td><time datetime="${d.at}">${d.at}</time></td><td>${userLink(d.user)}</td><td>${d.model}</td><td>${d.reason}</td><td class="num">${d.limitValue.toLocaleString('en-US')}</td><td class="num">${d.requested.toLocaleString('en-US')}</td></tr>`,
  )}</tbody>
</table>`;
}
