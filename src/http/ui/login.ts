import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigSnapshot } from '../../config/snapshot.js';
import { isAdminToken } from '../../identity/admin.js';
import { readBody } from '../respond.js';
import type { UiDeps } from './deps.js';
import { sendHtml } from './html.js';
import { loginPage, messagePage } from './pages.js';
import { arrivedOverHttps, isSameOriginPost } from './request-checks.js';
import { clearedSessionCookie, sessionCookie, sessionCookies, type Sessions } from './session.js';

/** A login form holds one token: anything longer is not one. */
const MAX_LOGIN_BODY_BYTES = 4096;

/** Whether the request carries a live session made for the admin token configured now. */
export function hasSession(req: IncomingMessage, config: ConfigSnapshot, sessions: Sessions): boolean {
  const digest = config.settings.admin.tokenSha256;
  if (digest === undefined) return false;
  const now = Date.now();
  return sessionCookies(req.headers.cookie).some((id) => sessions.isValid(id, digest, now));
}

/** POST /ui/login (form field `token`): a session cookie and a redirect to /ui, or 401 and the form again. */
export async function login(req: IncomingMessage, res: ServerResponse, deps: UiDeps, sessions: Sessions, adminTokenSha256: string): Promise<void> {
  if (!isSameOriginPost(req)) {
    req.resume();
    return sendHtml(res, 403, messagePage('Refused', 'Log in from the usage page itself: this request came from another site.'));
  }
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  const body = await readBody(req, MAX_LOGIN_BODY_BYTES);
  const token = type === 'application/x-www-form-urlencoded' && body !== undefined ? new URLSearchParams(body).get('token') : null;
  if (token === null || token === '' || !isAdminToken(token, adminTokenSha256)) {
    deps.logger.warn({ remote: req.socket.remoteAddress }, 'usage page login refused');
    return sendHtml(res, 401, loginPage(true));
  }
  deps.logger.info({ remote: req.socket.remoteAddress }, 'usage page login');
  // 303: the browser follows with a GET, so a reload never resends the token.
  res.writeHead(303, { location: '/ui', 'set-cookie': sessionCookie(sessions.create(adminTokenSha256, Date.now()), arrivedOverHttps(req)) });
  res.end();
}

/** POST /ui/logout: ends the session (a copy of the cookie is worthless from now on) and clears the cookie. */
export function logout(req: IncomingMessage, res: ServerResponse, sessions: Sessions): void {
  if (!isSameOriginPost(req)) return sendHtml(res, 403, messagePage('Refused', 'Log out from the usage page itself: this request came from another site.'));
  for (const id of sessionCookies(req.headers.cookie)) sessions.end(id);
  res.writeHead(303, { location: '/ui', 'set-cookie': clearedSessionCookie(arrivedOverHttps(req)) });
  res.end();
}
