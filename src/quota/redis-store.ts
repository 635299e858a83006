import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { COUNTER_NAMES, type CounterName } from '../limit-kinds.js';
import { hitCounterKey, ScopeKeys } from './redis-keys.js';
import { fallbackReservationId } from './reservation-ids.js';
import type { Buckets } from './windows.js';
import {
  StoreUnavailableError,
  type CounterRead,
  type HitCharge,
  type QuotaStore,
  type ReservePlan,
  type ReserveOutcome,
  type Scope,
  type SettleOutcome,
  type SettlePlan,
} from './store.js';

const RESERVE_SCRIPT = readFileSync(new URL('./reserve.lua', import.meta.url), 'utf8');
const SETTLE_SCRIPT = readFileSync(new URL('./settle.lua', import.meta.url), 'utf8');
const RESET_SCRIPT = readFileSync(new URL('./reset.lua', import.meta.url), 'utf8');
const ADD_HITS_SCRIPT = readFileSync(new URL('./add-hits.lua', import.meta.url), 'utf8');

type RedisWithScripts = (Redis | Cluster) & {
  twReserve(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number[]>;
  twSettle(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number[]>;
  twReset(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number>;
  twAddHits(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number[]>;
};

/**
 * How long a command may take, event-loop queueing included, before the Check gives up on it. Below
 * the ext_authz timeout of envoy/envoy.yaml (1 s); a burst of a few hundred Checks legitimately
 * queues ~100 ms of template rendering and tokenizing ahead of the replies.
 */
const COMMAND_TIMEOUT_MS = 500;

const CLIENT_OPTIONS: RedisOptions = {
  commandTimeout: COMMAND_TIMEOUT_MS,
  // A command whose reply was lost to a reconnect is never resent behind the caller's back (the
  // caller has already answered): reserve is idempotent per attempt, and a failed one is taken back.
  autoResendUnfulfilledCommands: false,
  enableAutoPipelining: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  lazyConnect: true,
};

/**
 * A client for redis://, rediss://, the Sentinel form
 * redis+sentinel://[user:password@]host:port[,host:port...]/masterName[?db=N], or the Cluster form
 * redis+cluster://[user:password@]host:port[,host:port...] (seed nodes).
 */
export function redisClientForUrl(url: string): Redis | Cluster {
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return new Redis(url, CLIENT_OPTIONS);
  const match = /^redis\+(sentinel|cluster):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)(?:\/([^/?]+))?(?:\?db=(\d+))?$/.exec(url);
  if (!match || (match[1] === 'sentinel') !== (match[5] !== undefined)) {
    throw new Error(
      `unsupported Redis URL (expected redis://, rediss://, redis+sentinel://h:p,h:p/master or redis+cluster://h:p,h:p): ${redactUrl(url)}`,
    );
  }
  const [, kind, username, password, hosts, name, db] = match;
  const credentials = {
    ...(username ? { username: decodeURIComponent(username) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
  };
  const nodes = hosts!.split(',').map((hostPort) => {
    const [host, port] = hostPort.split(':');
    return { host: host!, port: Number(port ?? (kind === 'sentinel' ? 26379 : 6379)) };
  });
  if (kind === 'cluster') {
    // The cluster itself connects lazily; its node clients must not, or the slot map is never fetched.
    const { lazyConnect: _lazy, ...nodeOptions } = CLIENT_OPTIONS;
    return new Cluster(nodes, {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      // No resend of a command whose connection closed (it may have run): see autoResendUnfulfilledCommands.
      retryDelayOnFailover: 0,
      redisOptions: { ...nodeOptions, ...credentials },
    });
  }
  return new Redis({ ...CLIENT_OPTIONS, ...credentials, sentinels: nodes, name: decodeURIComponent(name!), db: Number(db ?? 0) });
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export class RedisStore implements QuotaStore {
  private readonly redis: RedisWithScripts;

  /** The connection, for the usage reports' aggregates (they share it). */
  get client(): Redis | Cluster {
    return this.redis;
  }

  constructor(url: string) {
    this.redis = redisClientForUrl(url) as RedisWithScripts;
    this.redis.defineCommand('twReserve', { lua: RESERVE_SCRIPT });
    this.redis.defineCommand('twSettle', { lua: SETTLE_SCRIPT });
    this.redis.defineCommand('twReset', { lua: RESET_SCRIPT });
    this.redis.defineCommand('twAddHits', { lua: ADD_HITS_SCRIPT });
    // Errors surface through the commands that hit them; without a listener ioredis would print them.
    this.redis.on('error', () => {});
  }

  /** Connects, or rejects if the server cannot be reached; reconnection afterwards is automatic. */
  async connect(): Promise<void> {
    await this.redis.connect();
  }

  async reserve(plan: ReservePlan): Promise<ReserveOutcome> {
    const { scope, counters, lease, reservation } = plan;
    const keys = new ScopeKeys(scope);
    const fallbackId = fallbackReservationId(reservation.id, reservation.attempt);
    const record = JSON.stringify({
      promptTokens: reservation.promptTokens,
      reservedTokens: reservation.reservedTokens,
      admittedAtMs: reservation.nowMs,
      expiresAtMs: reservation.expiresAtMs,
      charges: counters.filter((c) => c.cost > 0).map((c) => [c.name, c.bucket, c.cost, c.countsTokens]),
    });
    const scriptKeys = [
      ...counters.map((c) => keys.counter(c.name)),
      keys.leases,
      keys.reservation(reservation.id),
      keys.reservation(fallbackId),
      keys.settled(reservation.id),
      keys.epoch,
    ];
    const args: Array<string | number> = [counters.length];
    for (const c of counters) args.push(c.limit ?? -1, c.cost, c.bucket, c.oldestCounted, c.ttlMs);
    // Lease limit -1: unlimited; -2: no lease taken at all.
    args.push(lease ? (lease.limit ?? -1) : -2, lease?.nowMs ?? 0, lease?.expiresAtMs ?? 0, lease?.ttlMs ?? 0, reservation.id, fallbackId, reservation.attempt, record, reservation.ttlMs);
    const reply = await this.run(() => this.redis.twReserve(scriptKeys.length, ...scriptKeys, ...args));
    if (reply[0] === 1) {
      const used: Partial<Record<CounterName, number>> = {};
      counters.forEach((c, i) => (used[c.name] = reply[2 + i]!));
      return { admitted: true, reservationId: reply[1] === 1 ? fallbackId : reservation.id, used, leasesHeld: reply[2 + counters.length]! };
    }
    if (reply[1] === 0) return { admitted: false, deniedBy: { lease: true, earliestExpiryMs: reply[2]! } };
    return { admitted: false, deniedBy: { counter: counters[reply[1]! - 1]!.name, buckets: pairs(reply.slice(2)) } };
  }

  async settle(plans: readonly SettlePlan[]): Promise<SettleOutcome[]> {
    // Issued together: auto-pipelining sends them in one round trip per Redis node.
    return this.run(() =>
      Promise.all(
        plans.map(async (plan) => {
          const { charge } = plan;
          if (charge.kind !== 'cancel') return this.settleId(plan, plan.reservationId);
          // The store may have given the attempt its fallback id; only the attempt's own reservation is cancelled.
          const first = await this.settleId(plan, plan.reservationId);
          return first.status === 'settled' ? first : this.settleId(plan, fallbackReservationId(plan.reservationId, charge.attempt));
        }),
      ),
    );
  }

  private async settleId(plan: SettlePlan, id: string): Promise<SettleOutcome> {
    const keys = new ScopeKeys(plan.scope);
    const { charge } = plan;
    const scriptKeys = [keys.reservation(id), keys.settled(id), keys.leases, keys.epoch, ...keys.allCounters()];
    const reply = await this.redis.twSettle(
      scriptKeys.length,
      ...scriptKeys,
      charge.kind,
      charge.kind === 'actual' ? charge.tokens : 0,
      id,
      plan.tombstoneTtlMs,
      plan.nowMs,
      charge.kind === 'cancel' ? charge.attempt : '',
      ...COUNTER_NAMES,
    );
    if (reply[0] === 2) return { status: 'duplicate' };
    if (reply[0] === 3) return { status: 'unknown' };
    return {
      status: 'settled',
      reservedTokens: reply[1]!,
      promptTokens: reply[2]!,
      chargedTokens: reply[3]!,
      afterReset: reply[4] === 1,
      // 0: a reservation made before its admission time was kept.
      ...(reply[5] ? { admittedAtMs: reply[5] } : {}),
    };
  }

  async readCounters(reads: readonly CounterRead[]): Promise<Buckets[]> {
    // Separate commands, not one pipeline: different models' keys live in different Cluster slots.
    const hashes = await this.run(() => Promise.all(reads.map((read) => this.redis.hgetall(new ScopeKeys(read.scope).counter(read.name)))));
    return reads.map((read, i) =>
      Object.entries(hashes[i]!)
        .map(([bucket, amount]) => [Number(bucket), Number(amount)] as const)
        .filter(([bucket]) => bucket >= read.oldestCounted)
        .sort((a, b) => a[0] - b[0]),
    );
  }

  async countLeases(scope: Scope, nowMs: number): Promise<number> {
    return this.run(() => this.redis.zcount(new ScopeKeys(scope).leases, `(${nowMs}`, '+inf'));
  }

  async reset(scope: Scope): Promise<void> {
    const keys = new ScopeKeys(scope);
    const scriptKeys = [keys.epoch, keys.leases, ...keys.allCounters()];
    await this.run(() => this.redis.twReset(scriptKeys.length, ...scriptKeys));
  }

  async addHits(charges: readonly HitCharge[]): Promise<number[]> {
    if (charges.length === 0) return [];
    const script = (group: readonly HitCharge[]) => {
      const args = group.flatMap((c) => [String(c.hits), c.ttlMs]);
      return this.redis.twAddHits(group.length, ...group.map((c) => hitCounterKey(c.counter)), ...args);
    };
    // A Cluster spreads the counters over slots, and one script may only touch one: each goes alone.
    if (this.redis instanceof Cluster) return this.run(async () => (await Promise.all(charges.map((c) => script([c])))).flat());
    return this.run(() => script(charges));
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
      const message = (err as Error).message;
      // A script that failed is a fault, never an outage: with failOpen an outage lets the request through.
      if ((err as Error).name === 'ReplyError' && /user_script|script:/i.test(message)) throw new Error(`Redis script failed: ${message}`);
      throw new StoreUnavailableError(`Redis: ${message}`);
    }
  }
}

function pairs(flat: readonly number[]): Buckets {
  const out: Array<readonly [number, number]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}
