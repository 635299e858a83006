import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeSource } from '../../config/provenance.js';
import type { TopUsersReport } from '../../reports/usage-reports.js';
import { StoreUnavailableError } from '../../quota/store.js';
import { sendError } from '../respond.js';
import { MAX_USER_LENGTH } from '../../identity/identify.js';
import { apiMethod, RECENT_DENIALS, serveApi, TOP_USERS } from './api.js';
import { APP_CSS } from './assets/app-css.js';
import { APP_JS } from './assets/app-js.js';
import type { UiDeps } from './deps.js';
import { sendHtml } from './html.js';
import { hasSession, login, logout } from './login.js';
import { disabledPage, loginPage, usagePage } from './pages.js';
import { hasUiHeader, UI_HEADER } from './request-checks.js';
import { applySecurityHeaders } from './security-headers.js';
import { Sessions } from './session.js';

/** Each HTTP server's sessions (its deps object stands for it). */
const sessionsOf = new WeakMap<UiDeps, Sessions>();

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  '/ui/app.js': { type: 'text/javascript; charset=utf-8', body: APP_JS },
  '/ui/app.css': { type: 'text/css; charset=utf-8', body: APP_CSS },
};

/**
 * The built-in usage page: /ui (the page, or the login form), POST /ui/login and /ui/logout, its
 * script and stylesheet, and its data under /ui/api/. Answers false when the path is not under /ui.
 */
export async function routeUi(req: IncomingMessage, res: ServerResponse, deps: UiDeps, url: URL): Promise<boolean> {
  const path = url.pathname;
  if (path !== '/ui' && !path.startsWith('/ui/')) return false;
  applySecurityHeaders(res);
  const method = req.method ?? 'GET';
  const asset = Object.hasOwn(ASSETS, path) ? ASSETS[path] : undefined;
  const api = path.startsWith('/ui/api/') ? path.slice('/ui/api/'.length) : undefined;
  const allowed = asset !== undefined || path === '/ui' ? 'GET' : path === '/ui/login' || path === '/ui/logout' ? 'POST' : api === undefined ? undefined : apiMethod(api);
  // Only a login or a count reads its body; every other body is drained unread (refusals included).
  if (!(method === 'POST' && (path === '/ui/login' || api === 'count'))) req.resume();
  if (allowed === undefined) {
    sendError(res, 404, `No route for ${method} ${path}.`);
    return true;
  }
  if (method !== allowed) {
    res.setHeader('allow', allowed);
    sendError(res, 405, `Use ${allowed}.`);
    return true;
  }
  if (asset !== undefined) {
    res.writeHead(200, { 'content-type': asset.type });
    res.end(asset.body);
    return true;
  }

  let sessions = sessionsOf.get(deps);
  if (sessions === undefined) sessionsOf.set(deps, (sessions = new Sessions()));
  const config = deps.config();
  const adminDigest = config.settings.admin.tokenSha256;
  if (adminDigest === undefined) {
    // Disabling the page ends its sessions: configuring a token again later must not revive them.
    sessions.clear();
    req.resume();
    if (api !== undefined) sendError(res, 403, 'The usage page is disabled: no admin token is configured (admin.tokenSha256).');
    else sendHtml(res, 403, disabledPage());
    return true;
  }
  if (path === '/ui/login') await login(req, res, deps, sessions, adminDigest);
  else if (path === '/ui/logout') logout(req, res, sessions);
  else if (api !== undefined) {
    if (!hasUiHeader(req)) {
      req.resume();
      sendError(res, 403, `Requests for the page's data must carry the header ${UI_HEADER}: 1.`);
    } else if (!hasSession(req, config, sessions)) {
      req.resume();
      sendError(res, 401, 'Log in at /ui first (the session has ended or was never started).');
    } else await serveApi(api, req, res, deps, url);
  } else if (!hasSession(req, config, sessions)) sendHtml(res, 200, loginPage(false));
  else await showPage(res, deps, url);
  return true;
}

async function showPage(res: ServerResponse, deps: UiDeps, url: URL): Promise<void> {
  const config = deps.config();
  let top: TopUsersReport | undefined;
  try {
    top = await deps.reports.topUsers('day', { limit: TOP_USERS, ago: 0 });
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    deps.metrics.storeErrors.inc({ operation: 'report' });
  }
  sendHtml(
    res,
    200,
    usagePage({
      configSource: describeSource(config.source),
      models: config.modelNames,
      defaultModel: config.settings.defaultModel,
      top,
      denials: deps.reports.recentDenials(RECENT_DENIALS),
      selectedUser: (url.searchParams.get('user') ?? '').slice(0, MAX_USER_LENGTH),
    }),
  );
}
