import type { Buckets } from './windows.js';
import type { CounterRead, QuotaStore, ReservationRecord, ReservePlan, ReserveOutcome, SettleOutcome, SettlePlan } from './store.js';

type Clock = () => number;

interface Expiring<T> {
  value: T;
  expiresAtMs: number;
}

/**
 * The embedded store: the same semantics as the Redis store, for one process. Every operation runs
 * to completion without awaiting, so a reservation is atomic. Expired keys are swept periodically.
 */
export class MemoryStore implements QuotaStore {
  private readonly counters = new Map<string, Expiring<Map<number, number>>>();
  private readonly leases = new Map<string, Expiring<Map<string, number>>>();
  private readonly reservations = new Map<string, Expiring<string>>();
  private readonly tombstones = new Map<string, Expiring<true>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: Clock = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 30_000).unref();
  }

  async reserve(plan: ReservePlan): Promise<ReserveOutcome> {
    const now = this.clock();
    const { counters, lease, reservation } = plan;
    const used: number[] = [];
    for (const [i, charge] of counters.entries()) {
      const buckets = this.live(this.counters, charge.key, now);
      const counted = countedBuckets(buckets, charge.oldestCounted);
      const sum = counted.reduce((s, [, amount]) => s + amount, 0);
      if (charge.limit !== null && sum + charge.cost > charge.limit) {
        return { admitted: false, deniedBy: { counter: i, buckets: counted } };
      }
      used.push(sum + charge.cost);
    }

    const leaseSet = this.live(this.leases, lease.key, now);
    for (const [member, expiresAt] of leaseSet ?? []) if (expiresAt <= lease.nowMs) leaseSet!.delete(member);
    const held = leaseSet?.size ?? 0;
    if (lease.limit !== null && held >= lease.limit) {
      return { admitted: false, deniedBy: { lease: true, earliestExpiryMs: Math.min(...(leaseSet?.values() ?? [lease.nowMs])) } };
    }

    for (const charge of counters) {
      if (charge.cost === 0) continue;
      const entry = this.entry(this.counters, charge.key, () => new Map<number, number>());
      entry.value.set(charge.bucket, (entry.value.get(charge.bucket) ?? 0) + charge.cost);
      entry.expiresAtMs = now + charge.ttlMs;
    }
    const useFallback = this.live(this.reservations, reservation.keyFor(reservation.id), now) !== undefined;
    const reservationId = useFallback ? reservation.fallbackId : reservation.id;
    const leaseEntry = this.entry(this.leases, lease.key, () => new Map<string, number>());
    leaseEntry.value.set(reservationId, lease.expiresAtMs);
    leaseEntry.expiresAtMs = now + lease.ttlMs;
    this.reservations.set(reservation.keyFor(reservationId), {
      value: JSON.stringify(reservation.record),
      expiresAtMs: now + reservation.ttlMs,
    });
    return { admitted: true, reservationId, used, leasesHeld: held + 1 };
  }

  async settle(plans: readonly SettlePlan[]): Promise<SettleOutcome[]> {
    const now = this.clock();
    return plans.map((plan) => {
      if (this.live(this.tombstones, plan.tombstoneKey, now)) return { status: 'duplicate' };
      const raw = this.live(this.reservations, plan.reservationKey, now);
      if (raw === undefined) return { status: 'unknown' };
      const record = JSON.parse(raw) as ReservationRecord;
      if (record.expiresAtMs < plan.nowMs) {
        this.reservations.delete(plan.reservationKey);
        return { status: 'unknown' };
      }
      const { charge } = plan;
      const charged =
        charge.kind === 'actual' ? charge.tokens : charge.kind === 'prompt' ? record.promptTokens : charge.kind === 'nothing' ? 0 : record.reservedTokens;
      const delta = charged - record.reservedTokens;
      record.tokenBuckets.forEach((bucket, i) => {
        const buckets = this.live(this.counters, plan.tokenCounterKeys[i]!, now);
        const current = buckets?.get(bucket);
        if (buckets && current !== undefined) buckets.set(bucket, Math.max(0, current + delta));
      });
      this.live(this.leases, plan.leaseKey, now)?.delete(plan.reservationId);
      this.reservations.delete(plan.reservationKey);
      this.tombstones.set(plan.tombstoneKey, { value: true, expiresAtMs: now + plan.tombstoneTtlMs });
      return { status: 'settled', reservedTokens: record.reservedTokens, promptTokens: record.promptTokens, chargedTokens: charged };
    });
  }

  async readCounters(reads: readonly CounterRead[]): Promise<Buckets[]> {
    const now = this.clock();
    return reads.map((read) => countedBuckets(this.live(this.counters, read.key, now), read.oldestCounted));
  }

  async countLeases(key: string, nowMs: number): Promise<number> {
    const set = this.live(this.leases, key, this.clock());
    return [...(set?.values() ?? [])].filter((expiresAt) => expiresAt > nowMs).length;
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      this.counters.delete(key);
      this.leases.delete(key);
      this.reservations.delete(key);
      this.tombstones.delete(key);
    }
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private live<T>(map: Map<string, Expiring<T>>, key: string, now: number): T | undefined {
    const entry = map.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAtMs <= now) {
      map.delete(key);
      return undefined;
    }
    return entry.value;
  }

  private entry<T>(map: Map<string, Expiring<T>>, key: string, create: () => T): Expiring<T> {
    let entry = map.get(key);
    if (entry === undefined) {
      entry = { value: create(), expiresAtMs: 0 };
      map.set(key, entry);
    }
    return entry;
  }

  private sweep(): void {
    const now = this.clock();
    for (const map of [this.counters, this.leases, this.reservations, this.tombstones] as Array<Map<string, Expiring<unknown>>>) {
      for (const [key, entry] of map) if (entry.expiresAtMs <= now) map.delete(key);
    }
  }
}

function countedBuckets(buckets: Map<number, number> | undefined, oldestCounted: number): Array<readonly [number, number]> {
  if (buckets === undefined) return [];
  for (const bucket of buckets.keys()) if (bucket < oldestCounted) buckets.delete(bucket);
  return [...buckets].sort((a, b) => a[0] - b[0]);
}
