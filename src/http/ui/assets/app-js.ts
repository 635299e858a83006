/*
 * The usage page's script, served as /ui/app.js (no framework, no build step: the browser runs it as
 * written). Kept in a module so the build and the image carry it with no copy step. Every piece of
 * data reaches the DOM as text (createElement, append of strings), never as markup.
 */
export const APP_JS = String.raw`'use strict';
(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const UI_HEADERS = { 'x-tokenwarden-ui': '1' };
  const RESULTS = ['allowed', 'denied', 'abandoned', 'error'];
  const POLL_MS = 2000;
  const READINGS_KEPT = 30; // a minute of rates, one per poll
  const fmt = new Intl.NumberFormat('en-US');
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }
  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }
  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children.flat(2)) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(path, init = {}) {
    const res = await fetch('/ui/api/' + path, {
      ...init,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { ...UI_HEADERS, ...(init.headers || {}) },
    });
    if (res.status === 401) {
      window.location.assign('/ui');
      throw new Error('The session has ended; log in again.');
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) throw new Error((body && body.error && body.error.message) || 'HTTP ' + res.status);
    return body;
  }

  function showError(container, err) {
    container.replaceChildren(el('p', { class: 'error' }, err instanceof Error ? err.message : String(err)));
  }

  /** Runs task now and again ms after each run ends (never two at once). */
  function every(ms, task, panel) {
    const run = async () => {
      try {
        await task();
      } catch (err) {
        if (panel) showError(panel, err);
      }
      setTimeout(run, ms);
    };
    run();
  }

  function userLink(user) {
    return el('a', { href: '/ui?user=' + encodeURIComponent(user), 'data-user': user }, user);
  }

  /** A horizontal bar: value of max; for a limit (not a ranking), red when full, amber past 80 %, a mark at the shadow limit. */
  function bar(value, max, shadowMax, ranking) {
    const W = 200;
    const share = max > 0 ? Math.min(1, value / max) : 1;
    const level = ranking ? '' : share >= 1 ? 'full' : share >= 0.8 ? 'high' : '';
    const marks = [];
    if (shadowMax !== null && shadowMax !== undefined && max > 0 && shadowMax < max) {
      const x = Math.round((shadowMax / max) * W);
      marks.push(svg('line', { class: 'shadow', x1: x, y1: 0, x2: x, y2: 12 }));
    }
    return svg('svg', { class: 'bar', width: W, height: 12, viewBox: '0 0 ' + W + ' 12', role: 'img', 'aria-label': fmt.format(value) + ' of ' + fmt.format(max) },
      svg('rect', { class: 'track', width: W, height: 12, rx: 2 }),
      svg('rect', { class: ('fill ' + level).trim(), width: Math.round(share * W), height: 12, rx: 2 }),
      marks);
  }

  function duration(seconds) {
    if (seconds < 90) return Math.max(0, Math.round(seconds)) + 's';
    if (seconds < 5400) return Math.round(seconds / 60) + 'm';
    if (seconds < 172800) return Math.round(seconds / 3600) + 'h';
    return Math.round(seconds / 86400) + 'd';
  }

  function resetText(unixSeconds) {
    const left = unixSeconds - Date.now() / 1000;
    if (left <= 0) return 'now';
    const at = new Date(unixSeconds * 1000);
    const sameDay = at.toDateString() === new Date().toDateString();
    const when = sameDay ? at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : at.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    return when + ' (in ' + duration(left) + ')';
  }

  // Live decisions: the counters only grow, so a rate is the difference of two readings over their interval.
  let lastReading = null;
  const readings = [];
  async function pollDecisions() {
    const reading = await api('decisions');
    if (lastReading !== null && reading.atMs > lastReading.atMs) {
      const seconds = (reading.atMs - lastReading.atMs) / 1000;
      const rates = {};
      for (const r of RESULTS) rates[r] = Math.max(0, (reading.results[r] || 0) - (lastReading.results[r] || 0)) / seconds;
      readings.push(rates);
      if (readings.length > READINGS_KEPT) readings.shift();
    }
    lastReading = reading;
    const latest = readings[readings.length - 1];
    if (latest === undefined) return;
    $('rates').replaceChildren(
      ...RESULTS.map((r) =>
        el('div', { class: 'rate ' + r, 'data-result': r },
          el('div', { class: 'value' }, latest[r].toFixed(latest[r] >= 10 ? 0 : 1) + '/s'),
          el('div', { class: 'label' }, r + ' · ' + fmt.format(reading.results[r] || 0) + ' since start'))),
    );
    drawSparkline();
  }

  function drawSparkline() {
    const W = 600;
    const H = 70;
    const PAD = 4;
    const max = Math.max(1, ...readings.flatMap((rates) => RESULTS.map((r) => rates[r])));
    // Spread over the width until a minute of readings has come in; then one minute wide, newest at the right.
    const x = (i) => (readings.length < 2 ? W : (i * W) / (readings.length - 1));
    const y = (v) => H - PAD - (v / max) * (H - 2 * PAD);
    const lines = RESULTS.map((r) =>
      svg('polyline', { class: r, 'vector-effect': 'non-scaling-stroke', points: readings.map((rates, i) => x(i).toFixed(1) + ',' + y(rates[r]).toFixed(1)).join(' ') }));
    $('sparkline').replaceChildren(
      svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Decisions per second over the last minute (top of the scale: ' + fmt.format(max) + '/s)' },
        svg('line', { class: 'axis', x1: 0, y1: H - PAD, x2: W, y2: H - PAD, 'vector-effect': 'non-scaling-stroke' }),
        lines),
    );
  }

  async function refreshTop() {
    const top = await api('top');
    $('top-period').textContent = '(' + top.label + ')';
    if (top.users.length === 0) {
      $('top-users').replaceChildren(el('p', { class: 'muted' }, 'No tokens charged today yet.'));
      return;
    }
    const max = Math.max(1, ...top.users.map((u) => u.tokens));
    $('top-users').replaceChildren(
      el('table', { class: 'top-users' },
        el('thead', null, el('tr', null, el('th', null, '#'), el('th', null, 'User'), el('th', { class: 'num' }, 'Tokens'), el('th'))),
        el('tbody', null,
          top.users.map((u, i) =>
            el('tr', null, el('td', null, i + 1), el('td', null, userLink(u.user)), el('td', { class: 'num' }, fmt.format(u.tokens)), el('td', null, bar(u.tokens, max, null, true)))))),
      el('p', { class: 'muted' }, fmt.format(top.userCount) + ' users with tokens today.'),
    );
  }

  function denialsTable(denials, withUser) {
    return el('table', { class: 'denials' },
      el('thead', null,
        el('tr', null, el('th', null, 'When'), withUser ? el('th', null, 'User') : null, el('th', null, 'Model'), el('th', null, 'Reason'), el('th', { class: 'num' }, 'Limit'), el('th', { class: 'num' }, 'Asked'))),
      el('tbody', null,
        denials.map((d) =>
          el('tr', null,
            el('td', null, el('time', { datetime: d.at }, new Date(d.at).toLocaleTimeString())),
            withUser ? el('td', null, userLink(d.user)) : null,
            el('td', null, d.model),
            el('td', null, d.reason),
            el('td', { class: 'num' }, fmt.format(d.limitValue)),
            el('td', { class: 'num' }, fmt.format(d.requested))))));
  }

  async function refreshDenials() {
    const { denials } = await api('denials');
    $('denial-list').replaceChildren(denials.length ? denialsTable(denials, true) : el('p', { class: 'muted' }, 'No quota denials on this replica since it started.'));
  }

  // Drill-down.
  let shownUser = null;
  let shownGroups = [];
  function limitRow(l) {
    return el('tr', { class: l.exhausted ? 'exhausted' : null, 'data-limit': l.name },
      el('td', null, l.wording),
      el('td', null, l.max === null ? el('span', { class: 'muted' }, 'unlimited') : bar(l.used, l.max, l.shadowMax)),
      el('td', { class: 'num' }, fmt.format(l.used) + ' / ' + (l.max === null ? '∞' : fmt.format(l.max))),
      el('td', { class: 'num' }, l.remaining === null ? '—' : fmt.format(l.remaining)),
      el('td', null, l.resetAt === null ? 'as requests end' : l.used === 0 ? '—' : resetText(l.resetAt)),
      el('td', { class: 'provenance' },
        l.enforcedBy,
        l.shadowBy === null ? null : [el('br'), 'shadow' + (l.shadowMax === null ? '' : ' ' + fmt.format(l.shadowMax)) + ': ' + l.shadowBy]));
  }

  function modelSection(m) {
    return el('div', { class: 'model', 'data-model': m.model },
      el('h3', null, m.model, ' ', m.exhausted.length ? el('span', { class: 'badge' }, 'refusing now: ' + m.exhausted.join(', ')) : null),
      el('p', { class: 'summary' },
        el('span', null, 'Tokens today: ' + fmt.format(m.tokensToday)),
        el('span', null, 'This month: ' + fmt.format(m.tokensThisMonth)),
        el('span', null, '429s today: ' + fmt.format(m.deniedToday))),
      el('table', { class: 'limits' },
        el('thead', null,
          el('tr', null, el('th', null, 'Limit'), el('th', null, 'Use'), el('th', { class: 'num' }, 'Used / limit'), el('th', { class: 'num' }, 'Remaining'), el('th', null, 'Full again'), el('th', null, 'Set by'))),
        el('tbody', null, m.limits.map(limitRow))));
  }

  function userSection(r) {
    return el('div', { 'data-user-report': r.user },
      el('p', { class: 'summary' },
        el('span', null, 'User ', el('strong', { class: 'user-name' }, r.user)),
        el('span', null, '429s today: ', el('strong', null, fmt.format(r.deniedToday))),
        r.groups.length ? el('span', null, 'As a member of: ' + r.groups.join(' | ') + (r.groupsFrom === 'lastDenial' ? ' (the groups of their latest 429 here)' : '')) : null,
        el('span', { class: 'muted' }, 'Days in ' + r.timeZone + '; limits from ' + r.configSource + '.')),
      r.models.map(modelSection),
      el('h3', null, 'Recent denials (this replica)'),
      r.recentDenials.length ? denialsTable(r.recentDenials, false) : el('p', { class: 'muted' }, 'None on this replica since it started.'));
  }

  async function refreshUser() {
    const name = shownUser;
    if (name === null) return;
    const query = new URLSearchParams({ user: name });
    for (const group of shownGroups) query.append('groups', group);
    const report = await api('user?' + query.toString());
    if (name === shownUser) $('user-report').replaceChildren(userSection(report));
  }

  async function showUser(name) {
    shownUser = name;
    shownGroups = $('user-groups').value.split('\n').filter((g) => g !== '');
    $('user-name').value = name;
    window.history.replaceState(null, '', '/ui?user=' + encodeURIComponent(name));
    try {
      await refreshUser();
    } catch (err) {
      showError($('user-report'), err);
    }
  }

  document.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[data-user]') : null;
    if (link === null) return;
    event.preventDefault();
    showUser(link.getAttribute('data-user'));
    $('user').scrollIntoView({ block: 'start' });
  });

  $('user-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('user-name').value;
    if (name !== '') showUser(name);
  });

  function figure(name, value, label) {
    return el('div', { 'data-figure': name }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label));
  }

  $('count-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = $('count-result');
    out.replaceChildren(el('p', { class: 'muted' }, 'Counting…'));
    try {
      const c = await api('count', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: $('count-model').value, text: $('count-text').value }),
      });
      out.replaceChildren(
        el('div', { class: 'count-figures' },
          figure('tokens', fmt.format(c.promptTokens), 'tokens, exact (' + c.model + ', chat template included)'),
          figure('characters', fmt.format(c.characters), 'characters'),
          figure('guess', fmt.format(c.charsOver4), 'characters / 4 guess'),
          figure('ratio', c.ratio === null ? '—' : c.ratio.toFixed(2) + '×', 'exact ÷ guess')),
      );
    } catch (err) {
      showError(out, err);
    }
  });

  every(POLL_MS, pollDecisions, $('rates'));
  every(10000, refreshTop, $('top-users'));
  every(5000, refreshDenials, $('denial-list'));
  every(5000, refreshUser, $('user-report'));
  const initial = new URLSearchParams(window.location.search).get('user');
  if (initial) showUser(initial);
})();
`;
