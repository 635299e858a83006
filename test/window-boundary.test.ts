import { describe, expect, it } from 'vitest';
import { manualClock, startTestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';

const LIMIT = 1000;
const CONFIG = `
defaults: { tokensPerMinute: ${LIMIT} }
models: { m1: {} }
identity: { trustUserHeader: true }
`;

const redisFile = redisForThisFile();

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
function lcg(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe.each(['memory', 'redis'] as const)('minute window across boundaries (%s store)', (storeKind) => {
  it('admits at most the limit in every 60 s span, however requests straddle window edges', async () => {
    const clock = manualClock(Date.UTC(2026, 10, 23, 9, 59, 30));
    const t = await startTestApp({
      configYaml: CONFIG,
      store: storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url },
      clock,
    });
    try {
      const random = lcg(storeKind === 'memory' ? 7 : 11);
      const admitted: Array<{ at: number; tokens: number }> = [];
      const denied: Array<{ at: number; maxTokens: number }> = [];
      let promptTokens: number | undefined;
      // Bursts that fill the budget, then jumps of 54-60 s (just short of the window, where fixed or
      // too-short windows let charges slip out of view), mixed with short random gaps.
      for (let i = 0; i < 600; i++) {
        const roll = random();
        clock.advance(roll < 0.12 ? 54_000 + Math.floor(random() * 6_000) : roll < 0.6 ? Math.floor(random() * 300) : Math.floor(random() * 3_000));
        const maxTokens = 20 + Math.floor(random() * 120);
        const res = await t.envoy.check({
          headers: { 'x-user-id': `walker-${storeKind}` },
          path: '/v1/completions',
          body: { model: 'm1', prompt: 'Tell me a story.', max_tokens: maxTokens },
        });
        if (res.status === 200) {
          const tokens = res.metadata['reserved_tokens'] as number;
          promptTokens ??= tokens - maxTokens;
          expect(tokens).toBe(promptTokens + maxTokens);
          admitted.push({ at: clock(), tokens });
        } else {
          expect(res.status).toBe(429);
          denied.push({ at: clock(), maxTokens });
        }
      }
      let worst = 0;
      for (const end of admitted) {
        const inSpan = admitted.filter((a) => a.at > end.at - 60_000 && a.at <= end.at);
        worst = Math.max(worst, inSpan.reduce((s, a) => s + a.tokens, 0));
      }
      expect(worst).toBeLessThanOrEqual(LIMIT);
      // And never needlessly strict: a denial only when charges of the last 65 s (window + one bucket) leave no room.
      expect(denied.length).toBeGreaterThan(20);
      for (const d of denied) {
        const recent = admitted.filter((a) => a.at > d.at - 65_000 && a.at <= d.at).reduce((s, a) => s + a.tokens, 0);
        expect(recent + promptTokens! + d.maxTokens).toBeGreaterThan(LIMIT);
      }
    } finally {
      await t.close();
    }
  });
});

describe('calendar-day window', () => {
  it('resets at local midnight in the configured zone and reports the wait until then', async () => {
    // 23:50 in Seoul (UTC+9) is 14:50 UTC.
    const clock = manualClock(Date.UTC(2026, 10, 23, 14, 50, 0));
    const t = await startTestApp({
      configYaml: `
defaults: { tokensPerDay: 500 }
models: { m1: {} }
identity: { trustUserHeader: true }
dailyReset: { timeZone: Asia/Seoul }
`,
      store: { kind: 'redis', url: redisFile.server.url },
      clock,
    });
    try {
      const ask = () => t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'night-owl' }, body: { model: 'm1', prompt: 'hi', max_tokens: 400 } });
      expect((await ask()).status).toBe(200);
      const denied = await ask();
      expect(denied.status).toBe(429);
      expect(denied.headers['x-tokenwarden-limit']).toBe('tokensPerDay');
      expect(denied.headers['retry-after']).toBe(String(10 * 60));
      expect(denied.headers['x-ratelimit-reset-tokens']).toBe('10m0s');
      clock.advance(10 * 60_000 - 1);
      expect((await ask()).status).toBe(429);
      clock.advance(1);
      expect((await ask()).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
