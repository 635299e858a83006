import type { ReportPeriod } from './periods.js';

/**
 * What one aggregate counts, per period instance: tokens by user (all models, or one model's),
 * tokens and requests by model, and quota denials (429s) by user and model.
 */
export type AggregateKind = 'userTokens' | 'modelTokens' | 'modelRequests' | 'denials';

/** One aggregate: a set of members (users, models, user+model pairs) with a counted score each. */
export interface AggregateId {
  readonly period: ReportPeriod;
  readonly bucket: number;
  readonly kind: AggregateKind;
  /** userTokens of one model only; absent for the all-models aggregate. */
  readonly model?: string;
}

export interface AggregateIncrement {
  readonly id: AggregateId;
  /** The aggregate is forgotten at this instant (its period's end plus the retention). */
  readonly expiresAtMs: number;
  readonly increments: ReadonlyArray<readonly [member: string, by: number]>;
}

export interface TopMembers {
  /** Highest score first. */
  readonly members: ReadonlyArray<readonly [member: string, score: number]>;
  /** How many members the aggregate has in all. */
  readonly size: number;
}

/**
 * Storage of the report aggregates (the Redis store's or the embedded one). Increments of one call
 * are applied together; aggregates expire on their own, so storage stays bounded by the retention.
 */
export interface AggregateStore {
  /** Applies the batch unless a batch with this id was applied before (within an hour): a resent batch counts once. */
  increment(batchId: string, batch: readonly AggregateIncrement[]): Promise<void>;
  /** The `limit` highest members (all with Infinity). */
  top(id: AggregateId, limit: number): Promise<TopMembers>;
  /** Each member's score (0 when absent). */
  scores(id: AggregateId, members: readonly string[]): Promise<number[]>;
}

/** A denial aggregate's member: the pair, unambiguous whatever characters the names hold. */
export function denialMember(user: string, model: string): string {
  return JSON.stringify([user, model]);
}

/** The aggregates of one process, for the embedded store. */
export class MemoryAggregates implements AggregateStore {
  private readonly aggregates = new Map<string, { expiresAtMs: number; scores: Map<string, number> }>();

  constructor(private readonly clock: () => number) {}

  async increment(_batchId: string, batch: readonly AggregateIncrement[]): Promise<void> {
    // Applied here and now or not at all (nothing to lose a reply to): no id needs remembering.
    const now = this.clock();
    for (const [key, aggregate] of this.aggregates) if (aggregate.expiresAtMs <= now) this.aggregates.delete(key);
    for (const { id, expiresAtMs, increments } of batch) {
      const key = keyOf(id);
      let aggregate = this.aggregates.get(key);
      if (aggregate === undefined) this.aggregates.set(key, (aggregate = { expiresAtMs, scores: new Map() }));
      aggregate.expiresAtMs = expiresAtMs;
      for (const [member, by] of increments) aggregate.scores.set(member, (aggregate.scores.get(member) ?? 0) + by);
    }
  }

  async top(id: AggregateId, limit: number): Promise<TopMembers> {
    const scores = this.live(id);
    // Ties in member order, as Redis orders equal scores (descending: the greater member first).
    const sorted = [...scores].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0));
    return { members: sorted.slice(0, limit), size: scores.size };
  }

  async scores(id: AggregateId, members: readonly string[]): Promise<number[]> {
    const scores = this.live(id);
    return members.map((m) => scores.get(m) ?? 0);
  }

  private live(id: AggregateId): Map<string, number> {
    const aggregate = this.aggregates.get(keyOf(id));
    return aggregate === undefined || aggregate.expiresAtMs <= this.clock() ? new Map() : aggregate.scores;
  }
}

function keyOf(id: AggregateId): string {
  return JSON.stringify([id.period, id.bucket, id.kind, id.model ?? null]);
}
