import type { CounterName } from '../limit-kinds.js';
import type { Buckets } from './windows.js';

/** Whose counters: every counter, lease and reservation belongs to one user and one model. */
export interface Scope {
  readonly user: string;
  readonly model: string;
}

/** One window counter to check and charge. */
export interface CounterCharge {
  readonly name: CounterName;
  /** null: unlimited — charged for reporting, never denies. */
  readonly limit: number | null;
  readonly cost: number;
  /** Whether a settlement corrects this counter to the tokens really used (token counters do; request counters don't). */
  readonly countsTokens: boolean;
  readonly bucket: number;
  readonly oldestCounted: number;
  readonly ttlMs: number;
}

export interface LeaseRequest {
  readonly limit: number | null;
  readonly nowMs: number;
  readonly expiresAtMs: number;
  readonly ttlMs: number;
}

export interface ReservePlan {
  readonly scope: Scope;
  readonly counters: readonly CounterCharge[];
  /** null: the admission takes no concurrency slot. */
  readonly lease: LeaseRequest | null;
  readonly reservation: {
    /** The id asked for (Envoy's x-request-id); taken already, the store picks another. */
    readonly id: string;
    /**
     * Unique to this admission attempt. A reserve resent with the same attempt (a reply lost to a
     * reconnect) finds its own reservation and changes nothing: reserve is idempotent per attempt.
     */
    readonly attempt: string;
    readonly promptTokens: number;
    readonly reservedTokens: number;
    readonly nowMs: number;
    /** After this the reservation counts as settled by expiry, whatever the store's own TTL says. */
    readonly expiresAtMs: number;
    readonly ttlMs: number;
  };
}

export type ReserveOutcome =
  | {
      readonly admitted: true;
      readonly reservationId: string;
      /** Each counter's counted total after the charge, by counter name. */
      readonly used: Readonly<Partial<Record<CounterName, number>>>;
      /** Concurrency leases of the scope held now, this admission's included (0 when it took none). */
      readonly leasesHeld: number;
    }
  | {
      readonly admitted: false;
      readonly deniedBy: { readonly counter: CounterName; readonly buckets: Buckets } | { readonly lease: true; readonly earliestExpiryMs: number };
    };

/** How a settlement charges the tokens: what the model used, or a rule's stand-in for it. */
export type Charge =
  | { readonly kind: 'actual'; readonly tokens: number }
  | { readonly kind: 'reserved' }
  | { readonly kind: 'nothing' }
  /** The admission never took effect (its Check was abandoned): every counter, requests included, is refunded. */
  | { readonly kind: 'cancel'; readonly attempt: string };

export interface SettlePlan {
  readonly scope: Scope;
  readonly reservationId: string;
  readonly charge: Charge;
  readonly nowMs: number;
  /** How long a settled reservation's id stays recognised, so that a resent entry changes nothing. */
  readonly tombstoneTtlMs: number;
}

export type SettleOutcome =
  | {
      readonly status: 'settled';
      readonly reservedTokens: number;
      readonly promptTokens: number;
      readonly chargedTokens: number;
      /** The counters were reset after the reservation was made: nothing of it was left to correct. */
      readonly afterReset: boolean;
      /** When the reservation was made (the windows it charged); absent for a reservation made before this was kept. */
      readonly admittedAtMs?: number;
    }
  | { readonly status: 'duplicate' }
  | { readonly status: 'unknown' };

export interface CounterRead {
  readonly scope: Scope;
  readonly name: CounterName;
  readonly oldestCounted: number;
}

/** Hits on one fixed-window counter of the rate-limit service. */
export interface HitCharge {
  /** Names the counter (domain, descriptor, window); opaque to the store. */
  readonly counter: string;
  /** Hits to add, a whole number up to 2^53 - 1; 0 reads the counter without changing it. */
  readonly hits: number;
  /** How long the counter must outlive this charge (the rest of its window). */
  readonly ttlMs: number;
}

/**
 * Counter storage. Every store passes the same contract suite (test/store-contract.test.ts).
 * `reserve` is one atomic step: every counter and the concurrency lease are checked, and only if all
 * have room are all charged — a denial charges nothing.
 */
export interface QuotaStore {
  reserve(plan: ReservePlan): Promise<ReserveOutcome>;
  /**
   * Settles reservations, each atomically and at most once: the token counters are corrected from
   * the reserved amount to the charged one (in the buckets the reservation charged; never below
   * zero; not at all if the scope was reset since), the concurrency lease is released, and the
   * reservation is replaced by a tombstone. A reservation id once settled is never reused.
   */
  settle(plans: readonly SettlePlan[]): Promise<SettleOutcome[]>;
  /** The counted buckets of each counter, oldest first. */
  readCounters(reads: readonly CounterRead[]): Promise<Buckets[]>;
  /** Leases not yet expired at `nowMs`. */
  countLeases(scope: Scope, nowMs: number): Promise<number>;
  /**
   * Forgets the scope's counters and leases. Reservations made before stay settleable (their leases
   * are gone) but never correct a counter again: a late settlement cannot subtract from new charges.
   */
  reset(scope: Scope): Promise<void>;
  /**
   * Adds hits to fixed-window counters and returns each counter's total after the addition; all of
   * one call at once where the store can (one Redis script; in Redis Cluster, one per counter).
   */
  addHits(charges: readonly HitCharge[]): Promise<number[]>;
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}
