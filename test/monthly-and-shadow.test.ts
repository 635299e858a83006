import { afterEach, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { mergeKubeState } from '../src/kube/merge.js';
import { calendarMonth } from '../src/quota/windows.js';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';

/*
 * tokensPerMonth (one row in src/limit-kinds.ts) and shadow mode, through ext_authz on both stores.
 * Prompts are counted exactly, so the tests read each request's reservation from its Check answer.
 */
const redisFile = redisForThisFile();
const SEOUL_NOV_30_2330 = Date.UTC(2026, 10, 30, 14, 30); // 23:30 on 30 Nov in Asia/Seoul
const SEOUL_DEC_1 = Date.UTC(2026, 10, 30, 15, 0); // local midnight, 1 Dec

describe('calendar month window', () => {
  it('is one bucket per local month that ends at the next local month start', () => {
    const seoul = calendarMonth('Asia/Seoul');
    const before = seoul.positionAt(SEOUL_NOV_30_2330);
    const after = seoul.positionAt(SEOUL_DEC_1);
    expect(after.bucket).toBe(before.bucket + 1);
    expect(after.oldestCounted).toBe(after.bucket);
    expect(before.expiresAt(before.bucket)).toBe(SEOUL_DEC_1);
    expect(after.expiresAt(after.bucket)).toBe(Date.UTC(2026, 11, 31, 15, 0));
    // Counters outlive the longest month.
    expect(before.ttlMs).toBeGreaterThan(31 * 24 * 3600_000);
  });

  it('keeps the month when the zone changes mid-month, and turns at each zone\'s own month start', () => {
    const mid = Date.UTC(2026, 10, 15, 12);
    expect(calendarMonth('UTC').positionAt(mid).bucket).toBe(calendarMonth('America/Los_Angeles').positionAt(mid).bucket);
    // At 15:00 UTC on 30 Nov it is already December in Seoul, still November in UTC.
    expect(calendarMonth('Asia/Seoul').positionAt(SEOUL_DEC_1).bucket).toBe(calendarMonth('UTC').positionAt(SEOUL_DEC_1).bucket + 1);
    // December to January crosses a year.
    const dec = calendarMonth('UTC').positionAt(Date.UTC(2026, 11, 31, 23, 59));
    expect(dec.expiresAt(dec.bucket)).toBe(Date.UTC(2027, 0, 1));
  });
});

describe('shadow limits in the configuration', () => {
  const config = parseLimitsYaml(
    `
defaults: { tokensPerDay: 1000, requestsPerMinute: 10 }
models: { m: {} }
users:
  alice: { limits: { tokensPerDay: 100, shadow: true } }
  bob: { limits: { tokensPerDay: 100, requestsPerMinute: 20, shadow: { requestsPerMinute: 2 } } }
groups:
  free: { limits: { tokensPerDay: 500 } }
  beta: { limits: { tokensPerDay: 50, shadow: true } }
`,
    'test',
  );

  it('a shadow entry reports its value and leaves enforcement to the next level that enforces', () => {
    expect(config.limitsFor('alice', 'm')).toEqual({ tokensPerDay: 1000, requestsPerMinute: 10 });
    expect(config.shadowLimitsFor('alice', 'm')).toEqual({ tokensPerDay: 100 });
    // Enforce one value, try another: both at the same level.
    expect(config.limitsFor('bob', 'm')).toEqual({ tokensPerDay: 100, requestsPerMinute: 20 });
    expect(config.shadowLimitsFor('bob', 'm')).toEqual({ requestsPerMinute: 2 });
  });

  it('a group in shadow mode never loosens another group\'s enforced limit', () => {
    expect(config.limitsFor('carol', 'm', ['free', 'beta'])).toEqual({ tokensPerDay: 500, requestsPerMinute: 10 });
    expect(config.shadowLimitsFor('carol', 'm', ['free', 'beta'])).toEqual({ tokensPerDay: 50 });
  });

  it('a shadow value below a more specific enforced one does not count', () => {
    const c = parseLimitsYaml('defaults: { tokensPerDay: 10, shadow: true }\nmodels: { m: {} }\nusers: { dave: { limits: { tokensPerDay: 99 } } }\n', 't');
    expect(c.limitsFor('dave', 'm')).toEqual({ tokensPerDay: 99 });
    expect(c.shadowLimitsFor('dave', 'm')).toEqual({});
    expect(c.shadowLimitsFor('erin', 'm')).toEqual({ tokensPerDay: 10 });
  });

  it('global shadow: true puts every limit in shadow mode', () => {
    const c = parseLimitsYaml('shadow: true\ndefaults: { tokensPerDay: 10, maxConcurrentRequests: 1 }\nmodels: { m: {} }\n', 't');
    expect(c.limitsFor('x', 'm')).toEqual({});
    expect(c.shadowLimitsFor('x', 'm')).toEqual({ tokensPerDay: 10, maxConcurrentRequests: 1 });
  });

  it('refuses shadow values naming unknown limits', () => {
    expect(() => parseLimitsYaml('models: { m: {} }\ndefaults: { tokensPerDay: 1, shadow: { tokensPerYear: 5 } }\n', 't')).toThrow(/shadow/);
  });

  it('a TokenQuota with shadow: true tries its limits next to the ConfigMap entry, never loosening the enforced ones', () => {
    const result = mergeKubeState(
      {
        configMapText: 'defaults: { tokensPerDay: 1000 }\nmodels: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 800, requestsPerMinute: 5 } } }\n',
        tokenQuotas: [
          {
            metadata: { namespace: 'ns', name: 'trial', creationTimestamp: '2026-11-01T00:00:00Z' },
            spec: { subjects: { users: ['alice'] }, models: ['*'], limits: { tokensPerDay: 100, tokensPerMonth: 2000 }, shadow: true },
          },
        ],
        secrets: [],
      },
      undefined,
    );
    const snapshot = result.snapshot!;
    expect(snapshot.limitsFor('alice', 'm')).toEqual({ tokensPerDay: 800, requestsPerMinute: 5 });
    expect(snapshot.shadowLimitsFor('alice', 'm')).toEqual({ tokensPerDay: 100, tokensPerMonth: 2000 });
  });
});

describe.each(['memory', 'redis'] as const)('through ext_authz (%s store)', (storeKind) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });
  async function start(configYaml: string, nowMs: number) {
    if (storeKind === 'redis') await redisFile.server.client().flushall();
    const clock = manualClock(nowMs);
    t = await startTestApp({
      configYaml,
      store: storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url },
      clock,
    });
    return { app: t, clock };
  }
  const body = { model: 'm', messages: [{ role: 'user', content: '이번 달 사용량은 얼마나 되나요?' }], max_tokens: 10 };
  const check = (user: string) => t!.envoy.check({ path: '/v1/chat/completions', headers: { 'x-user-id': user }, body });

  it('tokensPerMonth denies once the month is spent, says so, and lifts at the next local month', async () => {
    const { clock } = await start(
      'models: { m: {} }\nidentity: { trustUserHeader: true }\ndailyReset: { timeZone: Asia/Seoul }\nusers: { alice: { limits: { tokensPerMonth: 100 } } }\n',
      SEOUL_NOV_30_2330 - 20 * 24 * 3600_000,
    );
    const first = await check('alice');
    expect(first.status).toBe(200);
    const cost = first.metadata['reserved_tokens'] as number;
    expect(cost).toBeGreaterThan(10);
    const admitted = Math.floor(100 / cost);
    for (let i = 1; i < admitted; i++) expect((await check('alice')).status).toBe(200);
    clock.set(SEOUL_NOV_30_2330);
    const denied = await check('alice');
    expect(denied.status).toBe(429);
    expect(JSON.parse(denied.body).error.message).toContain('tokens per month');
    expect(Number(denied.headers['retry-after'])).toBe(30 * 60);
    const usage = (await (await fetch(`${t!.http}/v1/usage/alice?model=m`, { headers: ADMIN })).json()) as any;
    const month = usage.models[0].windows.find((w: { window: string }) => w.window === 'tokensPerMonth');
    expect(month).toMatchObject({ used: admitted * cost, limit: 100, remaining: 100 - admitted * cost, reset: SEOUL_DEC_1 / 1000 });
    clock.set(SEOUL_DEC_1);
    expect((await check('alice')).status).toBe(200);
  });

  it('a shadow limit never denies, counts, and reports "would deny" in metrics and /v1/usage', async () => {
    await start(
      'models: { m: {} }\nidentity: { trustUserHeader: true }\ndefaults: { tokensPerDay: 100000 }\nusers: { alice: { limits: { tokensPerDay: 50, maxConcurrentRequests: 1, shadow: true } } }\n',
      Date.UTC(2026, 10, 23, 3),
    );
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await check('alice'));
    expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200, 200]);
    const cost = outcomes[0]!.metadata['reserved_tokens'] as number;
    const metrics = await (await fetch(`${t!.http}/metrics`)).text();
    const shadowed = (limit: string) => Number(new RegExp(`^tokenwarden_shadow_denials_total\\{limit="${limit}",model="m"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    // Every admission past the first goes over 50 tokens, and over one concurrent request (none settled).
    expect(shadowed('tokensPerDay')).toBe(outcomes.filter((_, i) => (i + 1) * cost > 50).length);
    expect(shadowed('maxConcurrentRequests')).toBe(3);
    const usage = (await (await fetch(`${t!.http}/v1/usage/alice?model=m`, { headers: ADMIN })).json()) as any;
    const day = usage.models[0].windows.find((w: { window: string }) => w.window === 'tokensPerDay');
    expect(day).toMatchObject({ used: 4 * cost, limit: 100000, shadowLimit: 50 });
    expect(usage.models[0].concurrentRequests).toEqual({ used: 4, limit: null, shadowLimit: 1 });
  });

  it('a shadow limit leaves the enforced limit beneath it in force', async () => {
    await start(
      'models: { m: {} }\nidentity: { trustUserHeader: true }\ndefaults: { requestsPerMinute: 2 }\nusers: { alice: { limits: { requestsPerMinute: 1000, shadow: true } } }\n',
      Date.UTC(2026, 10, 23, 3),
    );
    expect([(await check('alice')).status, (await check('alice')).status, (await check('alice')).status]).toEqual([200, 200, 429]);
  });
});
