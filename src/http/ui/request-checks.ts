import type { IncomingMessage } from 'node:http';

/** The header every /ui/api request carries: a cross-site form cannot set it, and a cross-origin fetch needs a preflight we never grant. */
export const UI_HEADER = 'x-tokenwarden-ui';

export function hasUiHeader(req: IncomingMessage): boolean {
  return req.headers[UI_HEADER] === '1';
}

/** Whether the browser reached us over HTTPS, as a TLS-terminating proxy reports it. */
export function arrivedOverHttps(req: IncomingMessage): boolean {
  const proto = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',', 1)[0]?.trim().toLowerCase();
  return first === 'https';
}

/**
 * Whether a POST comes from one of our own pages. Sec-Fetch-Site is the browser's own verdict and
 * is checked first: under Referrer-Policy no-referrer a same-origin form POST sends `Origin: null`.
 * Without it (older browsers), Origin must name the host the request was sent to. Neither: refused.
 */
export function isSameOriginPost(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin';
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin === undefined || origin === 'null' || host === undefined) return false;
  try {
    const from = new URL(origin);
    if (from.protocol !== 'http:' && from.protocol !== 'https:') return false;
    return from.origin === origin && new URL(`${from.protocol}//${host}`).host === from.host;
  } catch {
    return false;
  }
}
