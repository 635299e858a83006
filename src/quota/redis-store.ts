import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Buckets } from './windows.js';
import {
  StoreUnavailableError,
  type CounterRead,
  type QuotaStore,
  type ReservePlan,
  type ReserveOutcome,
} from './store.js';

const RESERVE_SCRIPT = readFileSync(new URL('./reserve.lua', import.meta.url), 'utf8');

type RedisWithScripts = Redis & {
  twReserve(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number[]>;
};

/** Milliseconds a command may take before the Check gives up on it (Envoy's ext_authz default timeout is 200 ms). */
const COMMAND_TIMEOUT_MS = 150;

/**
 * Accepts redis://, rediss:// and the Sentinel form
 * redis+sentinel://[user:password@]host:port[,host:port...]/masterName[?db=N].
 */
export function redisOptionsFromUrl(url: string): { url?: string; options: RedisOptions } {
  const base: RedisOptions = {
    commandTimeout: COMMAND_TIMEOUT_MS,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
  };
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return { url, options: base };
  const sentinel = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)\/([^/?]+)(?:\?db=(\d+))?$/.exec(url);
  if (!sentinel) {
    throw new Error(`unsupported Redis URL (expected redis://, rediss:// or redis+sentinel://h:p,h:p/master): ${redactUrl(url)}`);
  }
  const [, username, password, hosts, name, db] = sentinel;
  const sentinels = hosts!.split(',').map((hostPort) => {
    const [host, port] = hostPort.split(':');
    return { host: host!, port: Number(port ?? 26379) };
  });
  return {
    options: {
      ...base,
      sentinels,
      name: decodeURIComponent(name!),
      db: db === undefined ? 0 : Number(db),
      ...(username ? { username: decodeURIComponent(username) } : {}),
      ...(password ? { password: decodeURIComponent(password) } : {}),
    },
  };
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export class RedisStore implements QuotaStore {
  private readonly redis: RedisWithScripts;

  constructor(url: string) {
    const { url: plainUrl, options } = redisOptionsFromUrl(url);
    this.redis = (plainUrl ? new Redis(plainUrl, options) : new Redis(options)) as RedisWithScripts;
    this.redis.defineCommand('twReserve', { lua: RESERVE_SCRIPT });
    // Errors surface through the commands that hit them; without a listener ioredis would print them.
    this.redis.on('error', () => {});
  }

  /** Connects, or rejects if the server cannot be reached; reconnection afterwards is automatic. */
  async connect(): Promise<void> {
    await this.redis.connect();
  }

  async reserve(plan: ReservePlan): Promise<ReserveOutcome> {
    const { counters, lease, reservation } = plan;
    const keys = [
      ...counters.map((c) => c.key),
      lease.key,
      reservation.keyFor(reservation.id),
      reservation.keyFor(reservation.fallbackId),
    ];
    const args: Array<string | number> = [counters.length];
    for (const c of counters) args.push(c.limit ?? -1, c.cost, c.bucket, c.oldestCounted, c.ttlMs);
    args.push(
      lease.limit ?? -1,
      lease.nowMs,
      lease.expiresAtMs,
      lease.ttlMs,
      reservation.id,
      reservation.fallbackId,
      JSON.stringify(reservation.record),
      reservation.ttlMs,
    );
    const reply = await this.run(() => this.redis.twReserve(keys.length, ...keys, ...args));
    if (reply[0] === 1) {
      return {
        admitted: true,
        reservationId: reply[1] === 1 ? reservation.fallbackId : reservation.id,
        leasesHeld: reply[2]!,
        used: reply.slice(3),
      };
    }
    if (reply[1] === 0) return { admitted: false, deniedBy: { lease: true, earliestExpiryMs: reply[2]! } };
    return { admitted: false, deniedBy: { counter: reply[1]! - 1, buckets: pairs(reply.slice(2)) } };
  }

  async readCounters(reads: readonly CounterRead[]): Promise<Buckets[]> {
    const pipeline = this.redis.pipeline();
    for (const read of reads) pipeline.hgetall(read.key);
    const results = await this.run(() => pipeline.exec());
    return reads.map((read, i) => {
      const [err, hash] = results?.[i] ?? [new Error('no reply')];
      if (err) throw new StoreUnavailableError(`Redis: ${err.message}`);
      return Object.entries(hash as Record<string, string>)
        .map(([bucket, amount]) => [Number(bucket), Number(amount)] as const)
        .filter(([bucket]) => bucket >= read.oldestCounted)
        .sort((a, b) => a[0] - b[0]);
    });
  }

  async countLeases(key: string, nowMs: number): Promise<number> {
    return this.run(() => this.redis.zcount(key, `(${nowMs}`, '+inf'));
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    // One DEL per key: keys of different users live in different Cluster slots.
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.del(key);
    await this.run(() => pipeline.exec());
  }

  async ping(): Promise<void> {
    await this.run(() => this.redis.ping());
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      throw new StoreUnavailableError(`Redis: ${(err as Error).message}`);
    }
  }
}

function pairs(flat: readonly number[]): Buckets {
  const out: Array<readonly [number, number]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}
