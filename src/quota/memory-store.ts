import type { CounterName } from '../limit-kinds.js';
import { fallbackReservationId } from './reservation-ids.js';
import type { Buckets } from './windows.js';
import type { CounterRead, HitCharge, QuotaStore, ReservePlan, ReserveOutcome, Scope, SettleOutcome, SettlePlan } from './store.js';

type Clock = () => number;

interface Expiring<T> {
  value: T;
  expiresAtMs: number;
}

interface Reservation {
  readonly attempt: string;
  readonly promptTokens: number;
  readonly reservedTokens: number;
  readonly admittedAtMs: number;
  readonly expiresAtMs: number;
  readonly epoch: number;
  /** What was charged where: [counter, bucket, cost, corrected at settlement]. */
  readonly charges: ReadonlyArray<readonly [CounterName, number, number, boolean]>;
}

/** Everything of one user and model. */
interface ScopeState {
  readonly counters: Map<CounterName, Expiring<Map<number, number>>>;
  leases: Expiring<Map<string, number>> | undefined;
  readonly reservations: Map<string, Expiring<Reservation>>;
  readonly tombstones: Map<string, Expiring<true>>;
  /** Bumped by every reset; never expires (a reservation may outlive any TTL it could be given). */
  epoch: number;
}

/**
 * The embedded store: the same semantics as the Redis store, for one process. Every operation runs
 * to completion without awaiting, so a reservation is atomic. Expired entries are swept periodically.
 */
export class MemoryStore implements QuotaStore {
  private readonly scopes = new Map<string, ScopeState>();
  private readonly hitCounters = new Map<string, Expiring<number>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: Clock = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 30_000).unref();
  }

  async reserve(plan: ReservePlan): Promise<ReserveOutcome> {
    const now = this.clock();
    const { counters, lease, reservation } = plan;
    const state = this.state(plan.scope);

    const mine = (id: string) => live(state.reservations.get(id), now)?.attempt === reservation.attempt;
    const fallback = fallbackReservationId(reservation.id, reservation.attempt);
    const replayed = mine(reservation.id) ? reservation.id : mine(fallback) ? fallback : undefined;

    const used: Partial<Record<CounterName, number>> = {};
    for (const charge of counters) {
      const counted = countedBuckets(live(state.counters.get(charge.name), now), charge.oldestCounted);
      const sum = counted.reduce((s, [, amount]) => s + amount, 0);
      if (replayed !== undefined) {
        used[charge.name] = sum;
        continue;
      }
      if (charge.limit !== null && sum + charge.cost > charge.limit) return { admitted: false, deniedBy: { counter: charge.name, buckets: counted } };
      used[charge.name] = sum + charge.cost;
    }
    const leases = live(state.leases, now);
    if (replayed !== undefined) return { admitted: true, reservationId: replayed, used, leasesHeld: lease ? (leases?.size ?? 0) : 0 };

    if (lease) {
      for (const [member, expiresAt] of leases ?? []) if (expiresAt <= lease.nowMs) leases!.delete(member);
      const held = leases?.size ?? 0;
      if (lease.limit !== null && held >= lease.limit) {
        return { admitted: false, deniedBy: { lease: true, earliestExpiryMs: Math.min(...(leases?.values() ?? [lease.nowMs])) } };
      }
    }

    for (const charge of counters) {
      if (charge.cost === 0) continue;
      const entry = state.counters.get(charge.name);
      const buckets = live(entry, now) ?? new Map<number, number>();
      buckets.set(charge.bucket, (buckets.get(charge.bucket) ?? 0) + charge.cost);
      // Only ever extended: a counter must outlive every bucket that still counts.
      const expiresAtMs = Math.max(live(entry, now) ? entry!.expiresAtMs : 0, now + charge.ttlMs);
      state.counters.set(charge.name, { value: buckets, expiresAtMs });
    }
    const taken = live(state.reservations.get(reservation.id), now) !== undefined || live(state.tombstones.get(reservation.id), now) !== undefined;
    const reservationId = taken ? fallback : reservation.id;
    if (lease) {
      const leaseSet = leases ?? new Map<string, number>();
      leaseSet.set(reservationId, lease.expiresAtMs);
      state.leases = { value: leaseSet, expiresAtMs: now + lease.ttlMs };
    }
    state.reservations.set(reservationId, {
      value: {
        attempt: reservation.attempt,
        promptTokens: reservation.promptTokens,
        reservedTokens: reservation.reservedTokens,
        admittedAtMs: reservation.nowMs,
        expiresAtMs: reservation.expiresAtMs,
        epoch: state.epoch,
        charges: counters.filter((c) => c.cost > 0).map((c) => [c.name, c.bucket, c.cost, c.countsTokens] as const),
      },
      expiresAtMs: now + reservation.ttlMs,
    });
    return { admitted: true, reservationId, used, leasesHeld: lease ? state.leases!.value.size : 0 };
  }

  async settle(plans: readonly SettlePlan[]): Promise<SettleOutcome[]> {
    return plans.map((plan) => this.settleOne(plan));
  }

  private settleOne(plan: SettlePlan): SettleOutcome {
    const now = this.clock();
    const state = this.state(plan.scope);
    const { charge } = plan;
    const id =
      charge.kind === 'cancel'
        ? [plan.reservationId, fallbackReservationId(plan.reservationId, charge.attempt)].find(
            (candidate) => live(state.reservations.get(candidate), now)?.attempt === charge.attempt,
          )
        : plan.reservationId;
    if (id === undefined) return { status: 'unknown' };
    if (live(state.tombstones.get(id), now)) return { status: 'duplicate' };
    const record = live(state.reservations.get(id), now);
    if (record === undefined) return { status: 'unknown' };
    state.reservations.delete(id);
    if (record.expiresAtMs < plan.nowMs) return { status: 'unknown' };

    const charged =
      charge.kind === 'actual' ? charge.tokens : charge.kind === 'reserved' ? record.reservedTokens : 0;
    const afterReset = record.epoch !== state.epoch;
    if (!afterReset) {
      for (const [name, bucket, cost, countsTokens] of record.charges) {
        const delta = charge.kind === 'cancel' ? -cost : countsTokens ? charged - record.reservedTokens : 0;
        const buckets = live(state.counters.get(name), now);
        const current = buckets?.get(bucket);
        // A bucket that is gone (expired) has nothing left to correct.
        if (buckets && current !== undefined && delta !== 0) buckets.set(bucket, Math.max(0, current + delta));
      }
    }
    live(state.leases, now)?.delete(id);
    state.tombstones.set(id, { value: true, expiresAtMs: now + plan.tombstoneTtlMs });
    return { status: 'settled', reservedTokens: record.reservedTokens, promptTokens: record.promptTokens, chargedTokens: charged, afterReset, admittedAtMs: record.admittedAtMs };
  }

  async readCounters(reads: readonly CounterRead[]): Promise<Buckets[]> {
    const now = this.clock();
    return reads.map((read) => countedBuckets(live(this.state(read.scope).counters.get(read.name), now), read.oldestCounted));
  }

  async countLeases(scope: Scope, nowMs: number): Promise<number> {
    const leases = live(this.state(scope).leases, this.clock());
    return [...(leases?.values() ?? [])].filter((expiresAt) => expiresAt > nowMs).length;
  }

  async reset(scope: Scope): Promise<void> {
    const state = this.state(scope);
    state.counters.clear();
    state.leases = undefined;
    state.epoch++;
  }

  async addHits(charges: readonly HitCharge[]): Promise<number[]> {
    const now = this.clock();
    return charges.map(({ counter, hits, ttlMs }) => {
      const entry = this.hitCounters.get(counter);
      const current = live(entry, now);
      const value = (current ?? 0) + hits;
      if (hits > 0) this.hitCounters.set(counter, { value, expiresAtMs: Math.max(current === undefined ? 0 : entry!.expiresAtMs, now + ttlMs) });
      return value;
    });
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private state(scope: Scope): ScopeState {
    const key = JSON.stringify([scope.user, scope.model]);
    let state = this.scopes.get(key);
    if (state === undefined) {
      state = { counters: new Map(), leases: undefined, reservations: new Map(), tombstones: new Map(), epoch: 0 };
      this.scopes.set(key, state);
    }
    return state;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [counter, entry] of this.hitCounters) if (entry.expiresAtMs <= now) this.hitCounters.delete(counter);
    for (const [key, state] of this.scopes) {
      for (const map of [state.counters, state.reservations, state.tombstones] as Array<Map<unknown, Expiring<unknown>>>) {
        for (const [k, entry] of map) if (entry.expiresAtMs <= now) map.delete(k);
      }
      if (state.leases && state.leases.expiresAtMs <= now) state.leases = undefined;
      if (state.counters.size + state.reservations.size + state.tombstones.size === 0 && !state.leases && state.epoch === 0) this.scopes.delete(key);
    }
  }
}

function live<T>(entry: Expiring<T> | undefined, now: number): T | undefined {
  return entry !== undefined && entry.expiresAtMs > now ? entry.value : undefined;
}

function countedBuckets(buckets: Map<number, number> | undefined, oldestCounted: number): Array<readonly [number, number]> {
  if (buckets === undefined) return [];
  for (const bucket of buckets.keys()) if (bucket < oldestCounted) buckets.delete(bucket);
  return [...buckets].sort((a, b) => a[0] - b[0]);
}
