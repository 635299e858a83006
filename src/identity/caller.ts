import type { ConfigSnapshot } from '../config/snapshot.js';
import { isAdminToken } from './admin.js';
import { bearerToken, userForApiKey } from './identify.js';

/** Who is calling tokenwarden's own HTTP API: only bearer tokens count here (no trusted headers, no JWT). */
export type Caller =
  | { readonly kind: 'admin' }
  | { readonly kind: 'user'; readonly user: string }
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'unknown-token' };

export function callerOf(authorization: string | undefined, config: ConfigSnapshot): Caller {
  const token = bearerToken(authorization);
  if (token === undefined) return { kind: 'anonymous' };
  const adminDigest = config.settings.admin.tokenSha256;
  if (adminDigest !== undefined && isAdminToken(token, adminDigest)) return { kind: 'admin' };
  const user = userForApiKey(token, config.apiKeys);
  return user === undefined ? { kind: 'unknown-token' } : { kind: 'user', user };
}
