import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { reportAggregateKey, reportBatchKey } from '../quota/redis-keys.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { AggregateId, AggregateIncrement, AggregateStore, TopMembers } from './counter-sets.js';

/** How long an applied batch's id is remembered: longer than UsageReports resends a batch (5.5 h); one small key per flush. */
const BATCH_ID_TTL_MS = 6 * 3600_000;
const INCREMENT_SCRIPT = readFileSync(new URL('../quota/increment-aggregates.lua', import.meta.url), 'utf8');

type WithScript = (Redis | Cluster) & { twIncrementAggregates(numKeys: number, keysAndArgs: Array<string | number>): Promise<number> };

/** At most this many member increments per script. */
const SLICE_INCREMENTS = 5000;

/** The batch cut into slices of at most SLICE_INCREMENTS increments (an aggregate may be split over several). */
function slices(batch: readonly AggregateIncrement[]): AggregateIncrement[][] {
  const out: AggregateIncrement[][] = [];
  let current: AggregateIncrement[] = [];
  let size = 0;
  for (const aggregate of batch) {
    for (let from = 0; from < aggregate.increments.length || from === 0; from += SLICE_INCREMENTS) {
      const part = aggregate.increments.slice(from, from + SLICE_INCREMENTS);
      if (size > 0 && size + part.length > SLICE_INCREMENTS) {
        out.push(current);
        current = [];
        size = 0;
      }
      current.push({ ...aggregate, increments: part });
      size += part.length;
      if (aggregate.increments.length === 0) break;
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Report aggregates as Redis sorted sets (on the quota store's connection), expiring with their retention. */
export class RedisAggregates implements AggregateStore {
  private readonly redis: WithScript;

  constructor(redis: Redis | Cluster) {
    this.redis = redis as WithScript;
    this.redis.defineCommand('twIncrementAggregates', { lua: INCREMENT_SCRIPT });
  }

  async increment(batchId: string, batch: readonly AggregateIncrement[]): Promise<void> {
    // In slices: one script holds Redis for its whole run, and a huge argument list is slow to build and send.
    for (const [n, slice] of slices(batch).entries()) {
      const keys = [reportBatchKey(`${batchId}:${n}`), ...slice.map((b) => reportAggregateKey(b.id))];
      const args: Array<string | number> = [BATCH_ID_TTL_MS];
      for (const { expiresAtMs, increments } of slice) {
        args.push(expiresAtMs, increments.length);
        for (const [member, by] of increments) args.push(member, by);
      }
      // One array argument (ioredis flattens it): spreading hundreds of thousands of arguments overflows the stack.
      await this.run(() => this.redis.twIncrementAggregates(keys.length, [...keys, ...args]));
    }
  }

  async top(id: AggregateId, limit: number): Promise<TopMembers> {
    const key = reportAggregateKey(id);
    const stop = Number.isFinite(limit) ? limit - 1 : -1;
    const [flat, size] = await this.run(() => Promise.all([this.redis.zrevrange(key, 0, stop, 'WITHSCORES'), this.redis.zcard(key)]));
    const members: Array<readonly [string, number]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) members.push([flat[i]!, Number(flat[i + 1])]);
    return { members, size };
  }

  async scores(id: AggregateId, members: readonly string[]): Promise<number[]> {
    if (members.length === 0) return [];
    const scores = await this.run(() => this.redis.zmscore(reportAggregateKey(id), ...members));
    return scores.map((s) => (s === null ? 0 : Number(s)));
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      throw new StoreUnavailableError(`Redis: ${(err as Error).message}`);
    }
  }
}
