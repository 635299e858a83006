import { createHash, timingSafeEqual } from 'node:crypto';
import type { ConfigSnapshot } from '../config/snapshot.js';

export type Identity = {
  readonly user: string;
  readonly via: 'api-key' | 'jwt' | 'header';
  /** Groups from the JWT's groups claim (only JWT callers have groups). */
  readonly groups: readonly string[];
};
export type IdentityResult = Identity | { readonly error: string };

/** What the caller presented, as Envoy forwarded it. */
export interface Credentials {
  /** Request headers with lower-case names. */
  readonly headers: ReadonlyMap<string, string>;
  /** Envoy's metadata_context.filter_metadata, already turned into plain JSON values. */
  readonly filterMetadata: Readonly<Record<string, unknown>>;
}

/** The longest user id identity accepts (the usage page lets one type no more). */
export const MAX_USER_LENGTH = 256;
/** Groups of a claim beyond this many are ignored. */
const MAX_GROUPS = 64;
// Control characters in a user id are never legitimate and would poison logs and keys.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/**
 * Identity, in order: a configured API key in `Authorization: Bearer`; the user claim of a JWT that
 * Envoy's jwt_authn verified and put in metadata; the user header where the config trusts it.
 */
export function identify(credentials: Credentials, config: ConfigSnapshot): IdentityResult {
  const bearer = bearerToken(credentials.headers.get('authorization'));
  if (bearer !== undefined) {
    const user = userForApiKey(bearer, config.apiKeys);
    if (user !== undefined) return { user, via: 'api-key', groups: [] };
  }

  const jwt = config.settings.identity.jwt;
  if (jwt) {
    const payload = asRecord(asRecord(credentials.filterMetadata[jwt.metadataNamespace])?.[jwt.payloadKey]);
    const claim = payload?.[jwt.userClaim];
    if (claim !== undefined) return checked(claim, 'jwt', `JWT claim '${jwt.userClaim}'`, groupsFromClaim(payload?.[jwt.groupsClaim]));
  }

  const { trustUserHeader, userHeader } = config.settings.identity;
  if (trustUserHeader) {
    const value = credentials.headers.get(userHeader);
    if (value !== undefined) return checked(value, 'header', `header '${userHeader}'`);
  }

  return { error: bearer !== undefined ? 'Invalid API key provided.' : 'No API key provided.' };
}

/** Compares the key's digest with every stored digest in constant time, with no early exit. */
export function userForApiKey(key: string, apiKeys: ConfigSnapshot['apiKeys']): string | undefined {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  let found: string | undefined;
  for (const entry of apiKeys) {
    if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry.user;
  }
  return found;
}

export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

function checked(value: unknown, via: Identity['via'], what: string, groups: readonly string[] = []): IdentityResult {
  if (typeof value !== 'string' || value.length === 0) return { error: `The ${what} does not name a user.` };
  if (!acceptableUserId(value)) {
    return { error: `The ${what} is not an acceptable user id.` };
  }
  return { user: value, via, groups };
}

/**
 * A groups claim as a list of plausible group names, as given (no trimming, no splitting, duplicates
 * kept); anything else in it is ignored, and so is every group after the first MAX_GROUPS. GET
 * /v1/limits reads its groups= values through this too, so that they mean what a JWT's would.
 */
export function groupsFromClaim(claim: unknown): string[] {
  const values = Array.isArray(claim) ? claim : claim === undefined ? [] : [claim];
  return values
    .filter((g): g is string => typeof g === 'string' && acceptableUserId(g))
    .slice(0, MAX_GROUPS);
}

/** Whether a user id may name counters: not too long, no control characters, well-formed text (a lone surrogate would merge with U+FFFD in Redis keys). */
export function acceptableUserId(value: string): boolean {
  return value.length > 0 && value.length <= MAX_USER_LENGTH && !CONTROL_CHARACTERS.test(value) && value.isWellFormed();
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
