import { randomUUID } from 'node:crypto';

/**
 * Redis keys for one user and model. User and model are base64url-encoded, so neither can contain
 * the separator or a brace: the tag is injective (no user name can address another's counters) and
 * it is the Redis Cluster hash tag, so every key of one user+model lands in one slot.
 */
export interface UserModelKeys {
  readonly tokensPerMinute: string;
  readonly tokensPerHour: string;
  readonly tokensPerDay: string;
  readonly requestsPerMinute: string;
  readonly leases: string;
  reservation(id: string): string;
  /** The tombstone of a settled reservation. */
  settled(id: string): string;
}

export function userModelKeys(user: string, model: string): UserModelKeys {
  const prefix = `tw:{${encode(user)}.${encode(model)}}:`;
  return {
    tokensPerMinute: `${prefix}tpm`,
    tokensPerHour: `${prefix}tph`,
    tokensPerDay: `${prefix}tpd`,
    requestsPerMinute: `${prefix}rpm`,
    leases: `${prefix}leases`,
    reservation: (id) => `${prefix}res:${id}`,
    settled: (id) => `${prefix}done:${id}`,
  };
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

const USABLE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The reservation id: Envoy's x-request-id when it is a plausible id, else a fresh one. */
export function reservationIdFor(requestId: string | undefined): string {
  return requestId !== undefined && USABLE_REQUEST_ID.test(requestId) ? requestId : randomUUID();
}
