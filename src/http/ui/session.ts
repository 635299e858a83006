import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'tokenwarden_ui';
export const SESSION_SECONDS = 8 * 60 * 60;

/**
 * Signs sessions. Random per process, so nothing is stored and a restart ends every session; a
 * session is also bound to the admin token's configured digest, so changing the token ends them too.
 * (A cookie made on one replica is refused by another: the page is meant to be reached on one pod.)
 */
const KEY = randomBytes(32);
const MAC_BYTES = 32;

function mac(expiresAt: number, adminTokenSha256: string): Buffer {
  return createHmac('sha256', KEY).update(`${expiresAt}\n${adminTokenSha256}`).digest();
}

/** A session cookie value: its expiry (unix seconds) and a MAC over it and the admin token's digest. The token itself is never in it. */
export function newSession(adminTokenSha256: string, nowMs: number): string {
  const expiresAt = Math.floor(nowMs / 1000) + SESSION_SECONDS;
  return `${expiresAt}.${mac(expiresAt, adminTokenSha256).toString('base64url')}`;
}

export function isValidSession(value: string, adminTokenSha256: string, nowMs: number): boolean {
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!match) return false;
  const expiresAt = Number(match[1]);
  if (expiresAt * 1000 <= nowMs) return false;
  const given = Buffer.from(match[2]!, 'base64url');
  return given.length === MAC_BYTES && timingSafeEqual(given, mac(expiresAt, adminTokenSha256));
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
