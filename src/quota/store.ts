import type { Buckets } from './windows.js';

/** One window counter to check and charge. */
export interface CounterCharge {
  readonly key: string;
  /** null: unlimited — charged for reporting, never denies. */
  readonly limit: number | null;
  readonly cost: number;
  readonly bucket: number;
  readonly oldestCounted: number;
  readonly ttlMs: number;
}

export interface LeaseRequest {
  readonly key: string;
  readonly limit: number | null;
  readonly nowMs: number;
  readonly expiresAtMs: number;
  readonly ttlMs: number;
}

/** What a reservation charged, kept until the access log settles it or it expires. */
export interface ReservationRecord {
  readonly user: string;
  readonly model: string;
  readonly promptTokens: number;
  readonly reservedTokens: number;
  readonly createdAtMs: number;
  /** After this the reservation counts as settled by expiry, whatever the store's own TTL says. */
  readonly expiresAtMs: number;
  /** The bucket charged in each token window, in SettlePlan.tokenCounterKeys order (minute, hour, day). */
  readonly tokenBuckets: readonly number[];
}

/** How a settlement charges the tokens: what the model used, or a rule's stand-in for it. */
export type Charge =
  | { readonly kind: 'actual'; readonly tokens: number }
  | { readonly kind: 'reserved' }
  | { readonly kind: 'prompt' }
  | { readonly kind: 'nothing' };

export interface SettlePlan {
  readonly reservationKey: string;
  /** Marks a settled reservation for a while, so a resent entry is recognised (and never charged). */
  readonly tombstoneKey: string;
  readonly tombstoneTtlMs: number;
  readonly leaseKey: string;
  readonly reservationId: string;
  /** The minute, hour and day token counters. */
  readonly tokenCounterKeys: readonly string[];
  readonly charge: Charge;
  readonly nowMs: number;
}

export type SettleOutcome =
  | { readonly status: 'settled'; readonly reservedTokens: number; readonly promptTokens: number; readonly chargedTokens: number }
  | { readonly status: 'duplicate' }
  | { readonly status: 'unknown' };

export interface ReservePlan {
  readonly counters: readonly CounterCharge[];
  readonly lease: LeaseRequest;
  readonly reservation: {
    readonly id: string;
    /** Used instead of `id` when a reservation with `id` already exists (a repeated x-request-id). */
    readonly fallbackId: string;
    readonly keyFor: (id: string) => string;
    readonly record: ReservationRecord;
    readonly ttlMs: number;
  };
}

export type ReserveOutcome =
  | {
      readonly admitted: true;
      readonly reservationId: string;
      /** Each counter's counted total after the charge, in plan order. */
      readonly used: readonly number[];
      readonly leasesHeld: number;
    }
  | {
      readonly admitted: false;
      readonly deniedBy: { readonly counter: number; readonly buckets: Buckets } | { readonly lease: true; readonly earliestExpiryMs: number };
    };

export interface CounterRead {
  readonly key: string;
  readonly oldestCounted: number;
}

/**
 * Counter storage. `reserve` is one atomic step: every counter and the concurrency lease are checked,
 * and only if all have room are all charged — a denial charges nothing.
 */
export interface QuotaStore {
  reserve(plan: ReservePlan): Promise<ReserveOutcome>;
  /**
   * Settles reservations, each atomically and at most once: the token windows are corrected from the
   * reserved amount to the charged one (in the buckets the reservation charged; never below zero),
   * the concurrency lease is released, and the reservation is replaced by a tombstone.
   */
  settle(plans: readonly SettlePlan[]): Promise<SettleOutcome[]>;
  /** The counted buckets of each counter, oldest first. */
  readCounters(reads: readonly CounterRead[]): Promise<Buckets[]>;
  /** Leases not yet expired at `nowMs`. */
  countLeases(key: string, nowMs: number): Promise<number>;
  deleteKeys(keys: readonly string[]): Promise<void>;
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}
