import { randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'tokenwarden_ui';
export const SESSION_SECONDS = 8 * 60 * 60;
/** Sessions kept at most; past that the oldest ends (a page for a few operators, not a crowd). */
const MAX_SESSIONS = 1000;

/**
 * The page's sessions, kept in this process: a random id in the cookie (never the token), ended by
 * logging out, by expiry, by a restart, and by any change of the admin token — a session is bound to
 * the token's configured digest, and disabling the page forgets them all. (A session made on one
 * replica is unknown to another: the page is meant to be reached on one pod.)
 */
export class Sessions {
  private readonly sessions = new Map<string, { readonly expiresAtMs: number; readonly adminDigest: Buffer }>();

  create(adminTokenSha256: string, nowMs: number): string {
    for (const [id, session] of this.sessions) if (session.expiresAtMs <= nowMs) this.sessions.delete(id);
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, { expiresAtMs: nowMs + SESSION_SECONDS * 1000, adminDigest: Buffer.from(adminTokenSha256) });
    return id;
  }

  isValid(id: string, adminTokenSha256: string, nowMs: number): boolean {
    const session = this.sessions.get(id);
    if (session === undefined) return false;
    const digest = Buffer.from(adminTokenSha256);
    if (session.expiresAtMs <= nowMs || digest.length !== session.adminDigest.length || !timingSafeEqual(digest, session.adminDigest)) {
      this.sessions.delete(id);
      return false;
    }
    return true;
  }

  end(id: string): void {
    this.sessions.delete(id);
  }

  clear(): void {
    this.sessions.clear();
  }
}

/** Every value the Cookie header gives our cookie (a browser may send several of one name, from other paths). */
export function sessionCookies(header: string | undefined): string[] {
  if (header === undefined) return [];
  const values: string[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) values.push(part.slice(eq + 1).trim());
  }
  return values;
}

/**
 * The Set-Cookie value. Secure only when the browser reached us over HTTPS (a TLS proxy says so):
 * tokenwarden itself serves plain HTTP on the cluster network (port-forward, an internal address),
 * where a browser would not store a Secure cookie and logging in would silently fail.
 */
export function sessionCookie(value: string, secure: boolean, maxAgeSeconds = SESSION_SECONDS): string {
  return `${SESSION_COOKIE}=${value}; Max-Age=${maxAgeSeconds}; Path=/ui; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return sessionCookie('', secure, 0);
}
