import { describe, expect, it } from 'vitest';
import { startTestApp } from './helpers/app.js';
import { startRedisSentinel, startRedisServer } from './helpers/redis-server.js';

describe('Redis through Sentinel', () => {
  it('finds the master by name and keeps its counters there', async () => {
    const master = await startRedisServer();
    const sentinel = await startRedisSentinel(master);
    const t = await startTestApp({
      configYaml: 'defaults: { tokensPerMinute: 100 }\nmodels: { m1: {} }\nidentity: { trustUserHeader: true }',
      store: { kind: 'redis', url: sentinel.url },
    });
    try {
      const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'sam' }, body: { model: 'm1', prompt: 'hi', max_tokens: 60 } });
      expect(res.status).toBe(200);
      const keys = await master.client().keys('tw:*');
      expect(keys.length).toBeGreaterThan(0);
      expect((await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'sam' }, body: { model: 'm1', prompt: 'hi', max_tokens: 60 } })).status).toBe(429);
    } finally {
      await t.close();
      await sentinel.stop();
      await master.stop();
    }
  });
});
