import { randomUUID } from 'node:crypto';

const USABLE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The reservation id asked for: Envoy's x-request-id when it is a plausible id, else a fresh one. */
export function reservationIdFor(requestId: string | undefined): string {
  return requestId !== undefined && USABLE_REQUEST_ID.test(requestId) ? requestId : randomUUID();
}

/** A unique token for one admission attempt. */
export function newAttempt(): string {
  return randomUUID();
}

/**
 * The id a store gives a reservation whose asked-for id is taken (in flight, or settled before: a
 * replayed x-request-id). Unique per attempt, so it can never be taken itself.
 */
export function fallbackReservationId(id: string, attempt: string): string {
  return `${id}~${attempt}`;
}
