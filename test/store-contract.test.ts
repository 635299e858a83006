import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { QuotaEngine, type AdmissionRequest } from '../src/quota/engine.js';
import { MemoryStore } from '../src/quota/memory-store.js';
import { RedisStore } from '../src/quota/redis-store.js';
import type { QuotaStore, ReservePlan } from '../src/quota/store.js';
import { manualClock } from './helpers/app.js';
import { startRedisCluster, startRedisServer, type RedisServer } from './helpers/redis-server.js';

/*
 * One contract for every store: the same reserve/settle/cancel/reset/expiry/replay sequences, with
 * the same expected outcomes, against the embedded store, a real Redis, and a real (one-node) Redis
 * Cluster, which refuses any script whose keys span hash slots.
 */
const CONFIG = `
defaults: { tokensPerMinute: 1000000000000000, tokensPerDay: 1000000000000000, requestsPerMinute: 1000, maxConcurrentRequests: 3 }
models: { m: {} }
reservation: { concurrencyLeaseSeconds: 60 }
`;
const START = Date.UTC(2026, 10, 23, 10, 0, 0);

type Kind = 'memory' | 'redis' | 'redis cluster';

describe.each(['memory', 'redis', 'redis cluster'] as const)('store contract: %s', (kind: Kind) => {
  let redis: RedisServer | undefined;
  let store: QuotaStore;
  let engine: QuotaEngine;
  const clock = manualClock(START);
  let config = parseLimitsYaml(CONFIG, 'contract');

  beforeAll(async () => {
    if (kind === 'redis') redis = await startRedisServer();
    if (kind === 'redis cluster') redis = await startRedisCluster();
  });
  afterAll(async () => {
    await store?.close();
    await redis?.stop();
  });
  beforeEach(async () => {
    clock.set(START);
    config = parseLimitsYaml(CONFIG, 'contract');
    await store?.close();
    if (kind === 'memory') {
      store = new MemoryStore(clock);
    } else {
      await redis!.client().flushall();
      const url = kind === 'redis' ? redis!.url : (redis as RedisServer & { clusterUrl: string }).clusterUrl;
      const redisStore = new RedisStore(url);
      await redisStore.connect();
      store = redisStore;
    }
    engine = new QuotaEngine(store, () => config, clock);
  });

  const ask = (user: string, tokens: number, requestId?: string): AdmissionRequest => ({ user, groups: [], model: 'm', tokens, promptTokens: 10, requestId });
  async function used(user: string) {
    const [usage] = await engine.usage(user, 'm');
    const byWindow = Object.fromEntries(usage!.windows.map((w) => [w.window, w.used]));
    return { tokens: byWindow['tokensPerMinute'], day: byWindow['tokensPerDay'], requests: byWindow['requestsPerMinute'], leases: usage!.concurrentRequests.used };
  }
  async function admitted(request: AdmissionRequest) {
    const admission = await engine.admit(request);
    if (!admission.admitted) throw new Error(`denied by ${admission.limit}`);
    return admission;
  }

  it('reserves, then settles to what was used, releasing the slot', async () => {
    const a = await admitted(ask('u', 500, 'r1'));
    expect(a.reservationId).toBe('r1');
    expect(await used('u')).toEqual({ tokens: 500, day: 500, requests: 1, leases: 1 });
    clock.advance(5000);
    const [outcome] = await engine.settle([{ user: 'u', model: 'm', reservationId: 'r1', charge: { kind: 'actual', tokens: 42 } }]);
    // admittedAtMs: when the reservation was made, not when it settled.
    expect(outcome).toEqual({ status: 'settled', reservedTokens: 500, promptTokens: 10, chargedTokens: 42, afterReset: false, admittedAtMs: START });
    expect(await used('u')).toEqual({ tokens: 42, day: 42, requests: 1, leases: 0 });
  });

  it('settles each reservation at most once', async () => {
    await admitted(ask('u', 500, 'r1'));
    const settle = () => engine.settle([{ user: 'u', model: 'm', reservationId: 'r1', charge: { kind: 'actual', tokens: 100 } }]);
    expect((await settle())[0]!.status).toBe('settled');
    expect((await settle())[0]!.status).toBe('duplicate');
    expect(await used('u')).toMatchObject({ tokens: 100, leases: 0 });
  });

  it('gives a replayed x-request-id of a settled reservation a fresh id, which settles and frees its own slot', async () => {
    await admitted(ask('u', 500, 'same'));
    await engine.settle([{ user: 'u', model: 'm', reservationId: 'same', charge: { kind: 'actual', tokens: 50 } }]);
    const replay = await admitted(ask('u', 300, 'same'));
    expect(replay.reservationId).not.toBe('same');
    expect(await used('u')).toMatchObject({ tokens: 350, leases: 1 });
    const [outcome] = await engine.settle([{ user: 'u', model: 'm', reservationId: replay.reservationId, charge: { kind: 'actual', tokens: 30 } }]);
    expect(outcome!.status).toBe('settled');
    expect(await used('u')).toMatchObject({ tokens: 80, leases: 0 });
  });

  it('gives a replayed x-request-id of a reservation in flight a fresh id; both settle independently', async () => {
    const first = await admitted(ask('u', 500, 'dup'));
    const second = await admitted(ask('u', 300, 'dup'));
    expect(second.reservationId).not.toBe(first.reservationId);
    await engine.settle([
      { user: 'u', model: 'm', reservationId: second.reservationId, charge: { kind: 'nothing' } },
      { user: 'u', model: 'm', reservationId: first.reservationId, charge: { kind: 'actual', tokens: 7 } },
    ]);
    expect(await used('u')).toMatchObject({ tokens: 7, requests: 2, leases: 0 });
  });

  it('after a reset, a late settlement of an older reservation subtracts nothing from newer charges', async () => {
    await admitted(ask('u', 1000, 'before'));
    await engine.reset('u');
    expect(await used('u')).toEqual({ tokens: 0, day: 0, requests: 0, leases: 0 });
    await admitted(ask('u', 500, 'after'));
    const [late] = await engine.settle([{ user: 'u', model: 'm', reservationId: 'before', charge: { kind: 'actual', tokens: 10 } }]);
    expect(late).toMatchObject({ status: 'settled', afterReset: true });
    expect(await used('u')).toMatchObject({ tokens: 500, day: 500, requests: 1, leases: 1 });
    await engine.settle([{ user: 'u', model: 'm', reservationId: 'after', charge: { kind: 'actual', tokens: 20 } }]);
    expect(await used('u')).toMatchObject({ tokens: 20, leases: 0 });
  });

  it('runs a resent reserve (same attempt) once: one charge, one slot, the same id', async () => {
    const plan: ReservePlan = {
      scope: { user: 'u', model: 'm' },
      counters: [{ name: 'tokensPerMinute', limit: 1000, cost: 600, countsTokens: true, bucket: 1, oldestCounted: 0, ttlMs: 60_000 }],
      lease: { limit: 1, nowMs: START, expiresAtMs: START + 60_000, ttlMs: 120_000 },
      reservation: { id: 'once', attempt: 'attempt-1', promptTokens: 10, reservedTokens: 600, nowMs: START, expiresAtMs: START + 120_000, ttlMs: 120_000 },
    };
    const first = await store.reserve(plan);
    const resent = await store.reserve(plan);
    expect(first).toMatchObject({ admitted: true, reservationId: 'once' });
    // Admitted again without a second charge (a second charge would exceed both the limit and the one slot).
    expect(resent).toMatchObject({ admitted: true, reservationId: 'once', used: { tokensPerMinute: 600 } });
    expect(await store.countLeases({ user: 'u', model: 'm' }, START)).toBe(1);
    const other = await store.reserve({ ...plan, reservation: { ...plan.reservation, attempt: 'attempt-2' } });
    expect(other.admitted).toBe(false);
  });

  it('cancels an abandoned admission completely, requests included, and only its own attempt', async () => {
    const a = await admitted(ask('u', 500, 'gone'));
    expect((await engine.cancel({ user: 'u', model: 'm' }, 'gone', 'someone-else')).status).toBe('unknown');
    expect(await used('u')).toMatchObject({ tokens: 500, requests: 1, leases: 1 });
    expect((await engine.cancel({ user: 'u', model: 'm' }, 'gone', a.attempt)).status).toBe('settled');
    expect(await used('u')).toEqual({ tokens: 0, day: 0, requests: 0, leases: 0 });
    // Its access-log entry, should one come, changes nothing.
    expect((await engine.settle([{ user: 'u', model: 'm', reservationId: 'gone', charge: { kind: 'reserved' } }]))[0]!.status).toBe('duplicate');
  });

  it('cancels an attempt that was given a fallback id', async () => {
    await admitted(ask('u', 100, 'taken'));
    const second = await admitted(ask('u', 200, 'taken'));
    expect((await engine.cancel({ user: 'u', model: 'm' }, 'taken', second.attempt)).status).toBe('settled');
    expect(await used('u')).toMatchObject({ tokens: 100, requests: 1, leases: 1 });
  });

  it('frees a slot whose settlement never came, and keeps the charge once the reservation expired', async () => {
    await admitted(ask('u', 300, 'lost'));
    clock.advance(60_001);
    expect(await used('u')).toMatchObject({ leases: 0, day: 300 });
    clock.advance(60_000);
    expect((await engine.settle([{ user: 'u', model: 'm', reservationId: 'lost', charge: { kind: 'actual', tokens: 1 } }]))[0]!.status).toBe('unknown');
    expect((await used('u')).day).toBe(300);
  });

  it('denies without charging anything, and counts huge but valid costs exactly', async () => {
    await admitted(ask('u', 3, 'a'));
    await admitted(ask('u', 3, 'b'));
    await admitted(ask('u', 3, 'c'));
    expect(await engine.admit(ask('u', 3, 'd'))).toMatchObject({ admitted: false, limit: 'maxConcurrentRequests' });
    expect(await used('u')).toMatchObject({ tokens: 9, requests: 3, leases: 3 });

    // The largest cost a request can carry (2^31-1 tokens for each of 128 choices, plus a prompt), twice.
    const huge = 2_147_483_647 * 128 + 12_345;
    await admitted(ask('v', huge, 'h1'));
    await admitted(ask('v', huge, 'h2'));
    expect((await used('v')).tokens).toBe(2 * huge);
    await engine.settle([{ user: 'v', model: 'm', reservationId: 'h1', charge: { kind: 'actual', tokens: 9_000_000_000_000_000 } }]);
    expect((await used('v')).tokens).toBe(9_000_000_000_000_000 + huge);
    expect(await engine.admit(ask('v', huge, 'h3'))).toMatchObject({ admitted: false, limit: 'tokensPerMinute' });
  });

  it('keeps the day\'s usage when the configured time zone changes mid-day', async () => {
    // 10:00 UTC is 19:00 in Seoul: the same date in both zones.
    await admitted(ask('u', 700, 'utc'));
    config = parseLimitsYaml(`${CONFIG}dailyReset: { timeZone: Asia/Seoul }\n`, 'contract in Seoul');
    expect((await used('u')).day).toBe(700);
    await admitted(ask('u', 300, 'seoul'));
    expect((await used('u')).day).toBe(1000);
    // At Seoul's midnight (15:00 UTC) the day starts afresh there.
    clock.set(Date.UTC(2026, 10, 23, 15, 0, 0));
    expect((await used('u')).day).toBe(0);
  });

  it('keeps the usage already made in the new zone\'s day when a zone change moves the date forward', async () => {
    config = parseLimitsYaml(`${CONFIG}dailyReset: { timeZone: UTC }\n`, 'contract in UTC');
    await admitted(ask('u', 400, 'morning')); // 10:00 UTC: before Seoul's midnight
    clock.set(Date.UTC(2026, 10, 23, 19, 0, 0)); // 04:00 on the 24th in Seoul
    await admitted(ask('u', 635, 'evening'));
    clock.set(Date.UTC(2026, 10, 23, 20, 0, 0));
    config = parseLimitsYaml(`${CONFIG}dailyReset: { timeZone: Asia/Seoul }\n`, 'contract in Seoul');
    expect((await used('u')).day).toBe(635);
  });
});
