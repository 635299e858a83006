import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
