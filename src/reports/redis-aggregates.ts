import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { reportAggregateKey } from '../quota/redis-keys.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { AggregateId, AggregateIncrement, AggregateStore, TopMembers } from './counter-sets.js';

const INCREMENT_SCRIPT = readFileSync(new URL('../quota/increment-aggregates.lua', import.meta.url), 'utf8');

type WithScript = (Redis | Cluster) & { twIncrementAggregates(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number> };

/** Report aggregates as Redis sorted sets (on the quota store's connection), expiring with their retention. */
export class RedisAggregates implements AggregateStore {
  private readonly redis: WithScript;

  constructor(redis: Redis | Cluster) {
    this.redis = redis as WithScript;
    this.redis.defineCommand('twIncrementAggregates', { lua: INCREMENT_SCRIPT });
  }

  async increment(batch: readonly AggregateIncrement[]): Promise<void> {
    if (batch.length === 0) return;
    const keys = batch.map((b) => reportAggregateKey(b.id));
    const args: Array<string | number> = [];
    for (const { expiresAtMs, increments } of batch) {
      args.push(expiresAtMs, increments.length);
      for (const [member, by] of increments) args.push(member, by);
    }
    await this.run(() => this.redis.twIncrementAggregates(keys.length, ...keys, ...args));
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
