import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appWithAccessLogPerTest } from './helpers/app-with-access-log.js';
import { ADMIN, manualClock } from './helpers/app.js';
import { redisForThisFile, startRedisServer } from './helpers/redis-server.js';
import { MemoryAggregates } from '../src/reports/counter-sets.js';
import { RedisAggregates } from '../src/reports/redis-aggregates.js';
import { periodAt } from '../src/reports/periods.js';
import { UsageReports } from '../src/reports/usage-reports.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { Redis } from 'ioredis';
import { until } from './helpers/eventually.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const CONFIG = `
defaults: { tokensPerMinute: 100000, tokensPerMonth: 10000000 }
models: { llama-3.2-1b: {}, korean-llama: {} }
identity: { trustUserHeader: true }
dailyReset: { timeZone: Asia/Seoul }
users:
  alice: { limits: { tokensPerDay: 400 } }
  dave: { limits: { requestsPerMinute: 1 } }
groups:
  ml: { models: { korean-llama: { tokensPerDay: 5000 } } }
apiKeys:
  - { sha256: "${sha('bob-key')}", user: bob }
tokenization: { workers: 0 }
`;
// 23:30 in Seoul on 30 November: the day and the month end half an hour later.
const START = Date.UTC(2026, 10, 30, 14, 30, 0);
const redisFile = redisForThisFile();

describe.each(['memory', 'redis'] as const)('usage reports (%s store)', (storeKind) => {
  const clock = manualClock(START);
  const fixture = appWithAccessLogPerTest({ configYaml: CONFIG, store: storeKind, redis: redisFile, clock, startMs: START });

  /** One request that the model answered with `completion` tokens, settled through the access log; resolves to what it was charged. */
  async function served(user: string, model: string, completion: number): Promise<number> {
    const res = await fixture.t.envoy.check({ headers: { 'x-user-id': user }, body: { model, messages: [{ role: 'user', content: `안녕하세요, ${user}입니다.` }], max_tokens: 50 } });
    expect(res.status).toBe(200);
    const prompt = res.metadata['prompt_tokens'] as number;
    fixture.als.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: prompt, completionTokens: completion } }]);
    await until(async () => (await usageOf(user, model)).concurrent === 0);
    return prompt + completion;
  }
  async function usageOf(user: string, model: string) {
    const body = (await (await fetch(`${fixture.t.http}/v1/reports/user?user=${encodeURIComponent(user)}&model=${model}`, { headers: ADMIN })).json()) as { models: Array<{ concurrentRequests: { used: number } }> };
    return { concurrent: body.models[0]!.concurrentRequests.used };
  }
  const get = async (path: string) => {
    const res = await fetch(`${fixture.t.http}${path}`, { headers: ADMIN });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('answers "who used the most tokens this month on korean-llama" in one request, exactly', async () => {
    const a1 = await served('alice', 'korean-llama', 30);
    const a2 = await served('alice', 'korean-llama', 7);
    const c = await served('carol', 'korean-llama', 90);
    const b = await served('bob', 'llama-3.2-1b', 500);
    const { status, body } = await get('/v1/reports/top?period=month&model=korean-llama');
    expect(status).toBe(200);
    expect(body).toMatchObject({ period: 'month', label: '2026-11', model: 'korean-llama', userCount: 2 });
    // The month in Seoul: from 1 November 00:00 KST (15:00 UTC the day before).
    expect(body.start).toBe('2026-10-31T15:00:00.000Z');
    expect(body.end).toBe('2026-11-30T15:00:00.000Z');
    expect(body.users).toEqual([
      { user: 'carol', tokens: c },
      { user: 'alice', tokens: a1 + a2 },
    ].sort((x, y) => y.tokens - x.tokens));
    const all = await get('/v1/reports/top?period=day&limit=1');
    expect(all.body.users).toEqual([{ user: 'bob', tokens: b }]);
    expect(all.body.userCount).toBe(3);
  });

  it('totals per model and per user for the day and month, and a 31-day trend from daily aggregates', async () => {
    const a = await served('alice', 'korean-llama', 10);
    const b = await served('bob', 'llama-3.2-1b', 20);
    clock.advance(3600_000); // 00:30 on 1 December in Seoul: a new day and a new month.
    const b2 = await served('bob', 'llama-3.2-1b', 5);
    const day = await get('/v1/reports/totals?period=day');
    expect(day.body).toMatchObject({ label: '2026-12-01', tokens: b2, requests: 1, models: [{ model: 'llama-3.2-1b', tokens: b2, requests: 1 }], users: [{ user: 'bob', tokens: b2 }] });
    const lastMonth = await get('/v1/reports/totals?period=month&ago=1');
    expect(lastMonth.body).toMatchObject({ label: '2026-11', tokens: a + b, requests: 2, userCount: 2 });
    expect(lastMonth.body.models).toEqual([
      { model: 'llama-3.2-1b', tokens: b, requests: 1 },
      { model: 'korean-llama', tokens: a, requests: 1 },
    ].sort((x, y) => y.tokens - x.tokens));
    const trend = await get('/v1/reports/daily');
    expect(trend.body.timeZone).toBe('Asia/Seoul');
    expect(trend.body.days).toHaveLength(31);
    expect(trend.body.days.at(-1)).toMatchObject({ date: '2026-12-01', tokens: b2, requests: 1 });
    expect(trend.body.days.at(-2)).toMatchObject({ date: '2026-11-30', tokens: a + b, requests: 2 });
    expect(trend.body.days.at(0)).toMatchObject({ date: '2026-11-01', tokens: 0, requests: 0, models: [] });
    const korean = await get('/v1/reports/daily?days=2&model=korean-llama');
    expect(korean.body.days.map((d: { tokens: number }) => d.tokens)).toEqual([a, 0]);
  });

  it('answers "why is alice denied" in one request: the exhausted window, where its limit comes from, and her 429s today', async () => {
    await served('alice', 'korean-llama', 300);
    const denied = await fixture.t.envoy.check({ headers: { 'x-user-id': 'alice' }, body: { model: 'korean-llama', messages: [{ role: 'user', content: 'again' }], max_tokens: 200 } });
    expect(denied.status).toBe(429);
    const { status, body } = await get('/v1/reports/user?user=alice&model=korean-llama');
    expect(status).toBe(200);
    const model = body.models[0];
    expect(body.deniedToday).toBe(1);
    expect(model.deniedToday).toBe(1);
    const day = model.windows.find((w: { window: string }) => w.window === 'tokensPerDay');
    expect(day).toMatchObject({ limit: 400, enforcedBy: { status: 'limited', value: 400, level: { kind: 'user', user: 'alice' }, source: { kind: 'file' } } });
    expect(model.exhausted).toEqual(day.remaining === 0 ? ['tokensPerDay'] : []);
    expect(body.recentDenials[0]).toMatchObject({ user: 'alice', model: 'korean-llama', limit: 'tokensPerDay', limitValue: 400, reason: 'tokens per day' });
    expect(model.tokensToday).toBe(day.used);
    // A group's limit, when the caller's JWT would carry the group.
    const asMl = await get('/v1/reports/user?user=carol&model=korean-llama&groups=ml');
    expect(asMl.body.models[0].windows.find((w: { window: string }) => w.window === 'tokensPerDay')).toMatchObject({
      limit: 5000,
      enforcedBy: { level: { kind: 'group+model', group: 'ml', model: 'korean-llama' } },
    });
  });

  it('counts 429s answered from a remembered denial too', async () => {
    await served('dave', 'korean-llama', 3);
    for (let i = 0; i < 3; i++) {
      const res = await fixture.t.envoy.check({ headers: { 'x-user-id': 'dave' }, body: { model: 'korean-llama', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 } });
      expect(res.status).toBe(429);
    }
    const report = (await get('/v1/reports/user?user=dave')).body;
    expect(report.deniedToday).toBe(3);
    expect(report.recentDenials.map((d: { limit: string }) => d.limit)).toEqual(['requestsPerMinute', 'requestsPerMinute', 'requestsPerMinute']);
  });

  it('counts a stream across local midnight in the day and month the quota charged it to (its admission)', async () => {
    clock.set(Date.UTC(2026, 10, 30, 14, 59, 50)); // 23:59:50 on 30 November in Seoul
    const res = await fixture.t.envoy.check({ headers: { 'x-user-id': 'erin' }, body: { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'a long answer, please' }], max_tokens: 50 } });
    expect(res.status).toBe(200);
    clock.advance(20_000); // 00:00:10 on 1 December
    fixture.als.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: res.metadata['prompt_tokens'] as number, completionTokens: 40 } }]);
    await until(async () => (await usageOf('erin', 'llama-3.2-1b')).concurrent === 0);
    const charged = (res.metadata['prompt_tokens'] as number) + 40;
    const november = await get('/v1/reports/top?period=month&ago=1');
    expect(november.body).toMatchObject({ label: '2026-11', users: [{ user: 'erin', tokens: charged }] });
    expect((await get('/v1/reports/top?period=month')).body.users).toEqual([]);
    const report = (await get('/v1/reports/user?user=erin&model=llama-3.2-1b')).body.models[0];
    const window = (name: string) => report.windows.find((w: { window: string }) => w.window === name).used;
    // The report and the quota agree: nothing of it today or this month.
    expect([report.tokensToday, report.tokensThisMonth]).toEqual([window('tokensPerDay'), window('tokensPerMonth')]);
    expect(report.tokensToday).toBe(0);
  });

  it('keeps users apart whatever their names hold', async () => {
    const names = ['__proto__', 'a"b', '김민수', 'x,y', '..'];
    const charged: number[] = [];
    for (const [i, name] of names.entries()) charged.push(await served(name, 'llama-3.2-1b', i + 1));
    const { body } = await get('/v1/reports/top?period=hour&limit=10');
    expect(Object.fromEntries(body.users.map((u: { user: string; tokens: number }) => [u.user, u.tokens]))).toEqual(
      Object.fromEntries(names.map((n, i) => [n, charged[i]])),
    );
    const proto = await get(`/v1/reports/user?user=${encodeURIComponent('__proto__')}&model=llama-3.2-1b`);
    expect(proto.body.models[0].tokensToday).toBe(charged[0]);
  });

  it('is the admin\'s only, and says what is wrong with a query', async () => {
    expect((await fetch(`${fixture.t.http}/v1/reports/top`)).status).toBe(401);
    expect((await fetch(`${fixture.t.http}/v1/reports/top`, { headers: { authorization: 'Bearer bob-key' } })).status).toBe(403);
    expect((await fetch(`${fixture.t.http}/v1/reports/top`, { method: 'POST', headers: ADMIN })).status).toBe(405);
    for (const [query, message] of [
      ['top?period=week', /period must be one of hour, day, month/],
      ['top?limit=0', /limit must be a whole number from 1 to 1000/],
      ['top?limit=1e3', /limit/],
      ['top?period=day&ago=35', /ago must be a whole number from 0 to 34/],
      ['daily?days=32', /days/],
      ['totals?model=korean-llama', /totals cover every model/],
      ['user', /Name one user/],
      ['user?user=alice&user=mallory', /Name one user/],
    ] as const) {
      const { status, body } = await get(`/v1/reports/${query}`);
      expect([query, status]).toEqual([query, 400]);
      expect(body.error.message).toMatch(message);
    }
    expect((await get('/v1/reports/top?model=gpt-4')).status).toBe(404);
  });

  it('keeps nothing beyond its retention', async () => {
    await served('alice', 'korean-llama', 1);
    expect((await get('/v1/reports/totals?period=month')).body.tokens).toBeGreaterThan(0);
    if (storeKind === 'redis') {
      const keys = await redisFile.server.client().keys('twr:*');
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        expect(key.startsWith('twr:{twr}:')).toBe(true);
        expect(await redisFile.server.client().pttl(key)).toBeGreaterThan(0);
      }
    }
    clock.advance(36 * 24 * 3600_000);
    const trend = await get('/v1/reports/daily');
    expect(trend.body.days.every((d: { tokens: number }) => d.tokens === 0)).toBe(true);
    expect((await get('/v1/reports/totals?period=month&ago=1')).body.tokens).toBe(0); // December, not November
    expect((await get('/v1/reports/totals?period=month&ago=2')).body.tokens).toBeGreaterThan(0);
  });
});

describe('usage reports while Redis is away', () => {
  it('keeps the increments of a failed write and writes them once Redis answers again', async () => {
    const server = await startRedisServer();
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 50 });
    client.on('error', () => {});
    await client.connect();
    const config = parseLimitsYaml('models: { m: {} }', 't');
    const metrics = createMetrics();
    const reports = new UsageReports({ store: new RedisAggregates(client), config: () => config, clock: Date.now, metrics, logger: createLogger('silent') });
    try {
      reports.settled([{ user: 'u', model: 'm', tokens: 10 }]);
      await reports.flush();
      await server.stop();
      reports.settled([{ user: 'u', model: 'm', tokens: 5 }]);
      await reports.flush();
      const errors = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tokenwarden_store_errors_total')!.values;
      expect(errors).toContainEqual(expect.objectContaining({ labels: { operation: 'report' }, value: 1 }));
      const again = await startRedisServer({ port: server.port });
      try {
        await until(async () => client.status === 'ready');
        reports.settled([{ user: 'v', model: 'm', tokens: 1 }]);
        const top = await reports.topUsers('day', { limit: 10, ago: 0 });
        // Redis restarted empty (it keeps nothing on disk): what it holds now is exactly what was kept plus what came since.
        expect(top.users).toEqual([
          { user: 'u', tokens: 5 },
          { user: 'v', tokens: 1 },
        ]);
      } finally {
        await again.stop();
      }
    } finally {
      await reports.close().catch(() => undefined);
      client.disconnect();
    }
  }, 30_000);
});

describe('report batches on Redis', () => {
  it('a batch resent under its id (its first reply lost) is applied once', async () => {
    const client = redisFile.server.client();
    const aggregates = new RedisAggregates(client);
    const id = { period: 'day', bucket: 20_000, kind: 'modelTokens' } as const;
    const batch = [{ id, expiresAtMs: Date.now() + 60_000, increments: [['m', 7]] as Array<[string, number]> }];
    await aggregates.increment('same', batch);
    await aggregates.increment('same', batch);
    await aggregates.increment('other', batch);
    expect(await aggregates.scores(id, ['m'])).toEqual([14]);
    const marker = (await client.keys('twr:{twr}:batch:*'))[0]!;
    expect(await client.pttl(marker)).toBeGreaterThan(5.9 * 3600_000);
  });

  it('a report batch of thousands of users is one call that Redis accepts', async () => {
    const client = redisFile.server.client();
    const config = parseLimitsYaml('models: { m: {} }', 't');
    const reports = new UsageReports({ store: new RedisAggregates(client), config: () => config, clock: Date.now, metrics: createMetrics(), logger: createLogger('silent') });
    try {
      reports.settled(Array.from({ length: 20_000 }, (_, i) => ({ user: `user-${i}`, model: 'm', tokens: i + 1 })));
      const top = await reports.topUsers('month', { limit: 2, ago: 0 });
      expect(top.userCount).toBeGreaterThanOrEqual(20_000);
      expect(top.users[0]).toEqual({ user: 'user-19999', tokens: 20_000 });
    } finally {
      await reports.close();
    }
  });
});

describe('report periods', () => {
  it('names local days and months, and counts back across year ends', () => {
    const at = Date.UTC(2026, 0, 1, 0, 30); // 09:30 on 1 January 2026 in Seoul, still 31 December in New York
    expect(periodAt('day', at, 'Asia/Seoul').label).toBe('2026-01-01');
    expect(periodAt('day', at, 'America/New_York').label).toBe('2025-12-31');
    expect(periodAt('month', at, 'Asia/Seoul', 1)).toMatchObject({ label: '2025-12', startMs: Date.UTC(2025, 10, 30, 15), endMs: Date.UTC(2025, 11, 31, 15) });
    expect(periodAt('month', at, 'Asia/Seoul', 13).label).toBe('2024-12');
    expect(periodAt('hour', at, 'Asia/Seoul', 1).label).toBe('2025-12-31T23');
    expect(periodAt('day', at, 'Asia/Seoul', 365).label).toBe('2025-01-01');
  });

  it('the embedded aggregates order ties as Redis does and forget expired ones', async () => {
    let now = 1000;
    const memory = new MemoryAggregates(() => now);
    const id = { period: 'day', bucket: 1, kind: 'userTokens' } as const;
    await memory.increment('b1', [{ id, expiresAtMs: 2000, increments: [['a', 5], ['b', 5], ['c', 7]] }]);
    expect((await memory.top(id, 10)).members).toEqual([['c', 7], ['b', 5], ['a', 5]]);
    now = 2000;
    expect(await memory.top(id, 10)).toEqual({ members: [], size: 0 });
  });
});

