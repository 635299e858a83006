import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ADMIN, startTestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';

const LIMIT = 10_000;
const CONFIG = `
defaults: { tokensPerMinute: ${LIMIT} }
models: { m1: {} }
apiKeys: [ { sha256: "${createHash('sha256').update('k').digest('hex')}", user: zoe } ]
`;

const redisFile = redisForThisFile();

describe.each(['memory', 'redis'] as const)('200 simultaneous Checks for one user (%s store)', (storeKind) => {
  it('never admit more than the limit, and the denied ones charge nothing', async () => {
    const t = await startTestApp({
      configYaml: CONFIG,
      store: storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url },
    });
    try {
      // Varied sizes so that the admitted set is not just "the first N".
      const bodies = Array.from({ length: 200 }, (_, i) => ({
        model: 'm1',
        messages: [{ role: 'user', content: 'word '.repeat(i % 17) }],
        max_tokens: 50 + ((i * 37) % 200),
      }));
      const results = await Promise.all(bodies.map((body) => t.envoy.check({ headers: { authorization: 'Bearer k' }, body })));
      const admitted = results.filter((r) => r.status === 200);
      const denied = results.filter((r) => r.status === 429);
      expect(admitted.length + denied.length).toBe(200);
      expect(denied.length).toBeGreaterThan(0);
      const admittedTokens = admitted.reduce((sum, r) => sum + (r.metadata['reserved_tokens'] as number), 0);
      expect(admittedTokens).toBeLessThanOrEqual(LIMIT);

      const usage = (await (await fetch(`${t.http}/v1/usage/zoe?model=m1`, { headers: ADMIN })).json()) as any;
      const windows = Object.fromEntries(usage.models[0].windows.map((w: { window: string; used: number }) => [w.window, w.used]));
      // Exactly the admitted reservations were charged: denials cost nothing.
      expect(windows['tokensPerMinute']).toBe(admittedTokens);
      expect(windows['tokensPerDay']).toBe(admittedTokens);
      expect(windows['requestsPerMinute']).toBe(admitted.length);
    } finally {
      await t.close();
    }
  });
});
