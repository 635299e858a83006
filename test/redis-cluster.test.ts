import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessLogStandIn } from './helpers/access-log-stand-in.js';
import { ADMIN, startTestApp, type TestApp } from './helpers/app.js';
import { startRedisCluster, type RedisServer } from './helpers/redis-server.js';

const CONFIG = `
defaults: { tokensPerMinute: 500, tokensPerDay: 5000, requestsPerMinute: 10, maxConcurrentRequests: 3 }
models: { m1: {}, m2: {} }
identity: { trustUserHeader: true }
`;

describe.each(['plain client', 'cluster client'] as const)('Redis Cluster mode, %s', (client) => {
  let cluster: RedisServer & { clusterUrl: string };
  let t: TestApp;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    t = await startTestApp({ configYaml: CONFIG, store: { kind: 'redis', url: client === 'plain client' ? cluster.url : cluster.clusterUrl } });
  });
  afterAll(async () => {
    await t?.close();
    await cluster?.stop();
  });

  it('keeps every key a Check touches in one hash slot (the server refuses CROSSSLOT scripts)', async () => {
    for (const user of ['alice', 'bö b', '{x}', 'a}b{c']) {
      const ask = () => t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': user }, body: { model: 'm1', prompt: 'hi', max_tokens: 200 } });
      expect((await ask()).status, user).toBe(200);
      expect((await ask()).status, user).toBe(200);
      expect((await ask()).status, user).toBe(429);
    }
  });

  it('reads usage across models (different slots)', async () => {
    const res = await fetch(`${t.http}/v1/usage/alice`, { headers: ADMIN });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { models: Array<{ model: string; windows: Array<{ used: number }> }> };
    expect(body.models.map((m) => m.model)).toEqual(['m1', 'm2']);
    expect(body.models[0]!.windows[0]!.used).toBeGreaterThan(0);
  });

  it('writes the report aggregates of one batch in one script (every report key in one slot)', async () => {
    // A settlement adds to a dozen aggregates (users and models, per hour, day and month) in one batch.
    const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'reporter' }, body: { model: 'm2', prompt: 'hi', max_tokens: 5 } });
    const als = new AccessLogStandIn(t.app.grpcPort);
    als.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: res.metadata['prompt_tokens'] as number, completionTokens: 5 } }]);
    await als.end();
    als.close();
    let top: { users: Array<{ user: string; tokens: number }> } = { users: [] };
    for (let i = 0; i < 100 && top.users.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      top = (await (await fetch(`${t.http}/v1/reports/top?period=month&model=m2`, { headers: ADMIN })).json()) as typeof top;
    }
    expect(top.users).toEqual([{ user: 'reporter', tokens: (res.metadata['prompt_tokens'] as number) + 5 }]);
    for (const user of ['alice', 'a}b{c']) {
      const res = await fetch(`${t.http}/v1/reports/user?user=${encodeURIComponent(user)}&model=m1`, { headers: ADMIN });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { deniedToday: number }).deniedToday, user).toBe(1);
    }
  });
});
