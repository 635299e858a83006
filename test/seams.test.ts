import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN, startTestApp, type TestApp } from './helpers/app.js';
import { DroppingProxy } from './helpers/dropping-proxy.js';
import { redisForThisFile, startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { eventually } from './helpers/eventually.js';

/* The places where a client could get tokens without paying, or pay for what it did not use. */

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const CONFIG = `
defaults: { tokensPerMinute: 100000, requestsPerMinute: 100, maxConcurrentRequests: 5 }
models:
  small: { maxModelLen: 2048 }
  open: {}
users:
  tight: { limits: { requestsPerMinute: 2 } }
apiKeys:
  - { sha256: "${sha('key-alice')}", user: alice }
  - { sha256: "${sha('key-bob')}", user: bob }
  - { sha256: "${sha('key-tight')}", user: tight }
identity: { trustUserHeader: true }
reservation: { defaultCompletionTokens: 256 }
`;

const redisFile = redisForThisFile();

/** `depth` levels of nested arrays around a string, as JSON text (too deep for JSON.stringify to write). */
const nested = (depth: number) => '['.repeat(depth) + '"x"' + ']'.repeat(depth);

describe.each(['memory', 'redis'] as const)('seams (%s store)', (storeKind) => {
  let t: TestApp;
  beforeEach(async () => {
    if (storeKind === 'redis') await redisFile.server.client().flushall();
    t = await startTestApp({ configYaml: CONFIG, store: storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url } });
  });
  afterEach(async () => {
    await t.close();
  });

  const check = (user: string, body: object, path = '/v1/chat/completions') => t.envoy.check({ path, headers: { 'x-user-id': user }, body });
  const chat = (model: string, extra: object = {}) => ({ model, messages: [{ role: 'user', content: 'Hello!' }], ...extra });
  async function usage(user: string, model: string) {
    const body = (await (await fetch(`${t.http}/v1/usage/${user}?model=${model}`, { headers: ADMIN })).json()) as any;
    const windows = Object.fromEntries(body.models[0].windows.map((w: { window: string; used: number }) => [w.window, w.used]));
    return { tokens: windows['tokensPerMinute'] as number, requests: windows['requestsPerMinute'] as number, leases: body.models[0].concurrentRequests.used as number };
  }

  describe('reservation = what vLLM can really generate', () => {
    it('reserves the remaining context when no completion budget is given, and treats 0 as not given', async () => {
      for (const extra of [{}, { max_tokens: 0 }, { max_completion_tokens: 0 }, { max_tokens: null }]) {
        const res = await check('u1', chat('small', extra));
        expect(res.status).toBe(200);
        expect(res.metadata['reserved_tokens'], JSON.stringify(extra)).toBe(2048);
      }
    });

    it('takes max_completion_tokens, else max_tokens, per choice', async () => {
      const prompt = (await check('u2', chat('small', { max_tokens: 1 }))).metadata['prompt_tokens'] as number;
      expect((await check('u2', chat('small', { max_completion_tokens: 0, max_tokens: 100 }))).metadata['reserved_tokens']).toBe(prompt + 100);
      expect((await check('u2', chat('small', { max_completion_tokens: 50, max_tokens: 100 }))).metadata['reserved_tokens']).toBe(prompt + 50);
      expect((await check('u2', chat('small', { max_tokens: 100, n: 3 }))).metadata['reserved_tokens']).toBe(prompt + 300);
    });

    it('uses vLLM\'s completions default of 16 tokens when max_tokens is absent, and defaultCompletionTokens without maxModelLen', async () => {
      const completion = await check('u3', { model: 'open', prompt: 'Hello' }, '/v1/completions');
      expect(completion.metadata['reserved_tokens']).toBe((completion.metadata['prompt_tokens'] as number) + 16);
      // An explicit null is 16 in some vLLM versions and the whole remaining context in others: the larger is reserved.
      const nulled = await check('u3', { model: 'open', prompt: 'Hello', max_tokens: null }, '/v1/completions');
      expect(nulled.metadata['reserved_tokens']).toBe((nulled.metadata['prompt_tokens'] as number) + 256);
      const nulledSmall = await check('u3', { model: 'small', prompt: 'Hello', max_tokens: null }, '/v1/completions');
      expect(nulledSmall.metadata['reserved_tokens']).toBe(2048);
      const open = await check('u3', chat('open'));
      expect(open.metadata['reserved_tokens']).toBe((open.metadata['prompt_tokens'] as number) + 256);
    });

    it('refuses a request over the context with vLLM\'s own 400, before any GPU time and without charging', async () => {
      const res = await check('u4', chat('small', { max_tokens: 2040 }));
      expect(res.status).toBe(400);
      const error = JSON.parse(res.body).error;
      expect(error).toMatchObject({ type: 'BadRequestError', code: 400, param: 'input_tokens' });
      // vLLM tokenizes at most max_input + 1 tokens of the prompt: "at least" 9 here.
      expect(error.message).toMatch(/^This model's maximum context length is 2048 tokens\. However, you requested 2040 output tokens and your prompt contains at least 9 input tokens, for a total of at least 2049 tokens\./);
      const tooMany = await check('u4', chat('small', { max_tokens: 4000 }));
      expect(JSON.parse(tooMany.body).error).toMatchObject({ param: 'max_tokens' });
      expect(JSON.parse(tooMany.body).error.message).toMatch(/^max_tokens=4000 cannot be greater than max_model_len=max_total_tokens=2048\. Please request fewer output tokens\./);
      const long = await check('u4', { model: 'small', messages: [{ role: 'user', content: 'word '.repeat(2100) }] });
      expect(long.status).toBe(400);
      expect(JSON.parse(long.body).error.message).toMatch(/you requested 0 output tokens/);
      expect(await usage('u4', 'small')).toEqual({ tokens: 0, requests: 0, leases: 0 });
    });
  });

  describe('absurd numbers', () => {
    it('refuses max_tokens beyond 2^31-1 with a 400 before the store, the same on every store', async () => {
      for (const value of [1e17, 2 ** 31, 1.5, -1]) {
        const res = await check('u5', chat('open', { max_tokens: value }));
        expect(res.status, String(value)).toBe(400);
        expect(JSON.parse(res.body).error.param).toBe('max_tokens');
      }
      expect(await usage('u5', 'open')).toEqual({ tokens: 0, requests: 0, leases: 0 });
    });

    it('admits the largest valid request and counts it exactly', async () => {
      t.app.setConfig((await import('../src/config/load.js')).parseLimitsYaml(CONFIG.replace('tokensPerMinute: 100000', 'tokensPerMinute: null') + 'admin: { tokenSha256: "' + sha('test-admin-token') + '" }\n', 'big'));
      const res = await check('u6', chat('open', { max_tokens: 2 ** 31 - 1, n: 128 }));
      expect(res.status).toBe(200);
      expect(res.metadata['reserved_tokens']).toBe((res.metadata['prompt_tokens'] as number) + (2 ** 31 - 1) * 128);
      expect((await usage('u6', 'open')).tokens).toBe(res.metadata['reserved_tokens']);
    });
  });

  describe('deeply nested JSON', () => {
    const bodies: Array<[string, string]> = [
      ['message content', `{"model":"open","messages":[{"role":"user","content":${nested(3000)}}]}`],
      ['a tool\'s parameters', `{"model":"open","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"x":${nested(3000)}}}}]}`],
      ['chat_template_kwargs', `{"model":"open","messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"deep":${nested(3000)}}}`],
      ['an unknown field', `{"model":"open","messages":[{"role":"user","content":"hi"}],"extra":${nested(5000)}}`],
    ];
    it.each(bodies)('in %s gets a 400 from Check and from /v1/tokenize, never an error Envoy could let through', async (_where, body) => {
      const res = await t.envoy.check({ headers: { 'x-user-id': 'u7' }, body });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body).error.message).toMatch(/nests JSON more than 64 levels/);
      const tokenize = await fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: ADMIN, body });
      expect(tokenize.status).toBe(400);
    });
  });

  describe('abandoned Checks cost nothing', () => {
    it('reserves nothing for a Check whose deadline passed while its prompt was being counted', async () => {
      const big = { model: 'open', messages: [{ role: 'user', content: Array.from({ length: 20_000 }, (_, i) => `sentence ${i} of a long prompt.`).join(' ') }] };
      const body = JSON.stringify(big);
      t.app.setConfig((await import('../src/config/load.js')).parseLimitsYaml(CONFIG + `maxBodyBytes: ${body.length + 1000}\nadmin: { tokenSha256: "${sha('test-admin-token')}" }\n`, 'bigger bodies'));
      await expect(t.envoy.check({ headers: { 'x-user-id': 'u8' }, body, timeoutMs: 5 })).rejects.toMatchObject({ code: 4 });
      await new Promise((r) => setTimeout(r, 1500));
      expect(await usage('u8', 'open')).toEqual({ tokens: 0, requests: 0, leases: 0 });
    });
  });

  it('reserves nothing for a Check the client cancelled (Envoy resets the stream when its client goes away)', async () => {
    const big = { model: 'open', messages: [{ role: 'user', content: Array.from({ length: 20_000 }, (_, i) => `line ${i} of another long prompt.`).join(' ') }] };
    const body = JSON.stringify(big);
    t.app.setConfig((await import('../src/config/load.js')).parseLimitsYaml(CONFIG + `maxBodyBytes: ${body.length + 1000}\nadmin: { tokenSha256: "${sha('test-admin-token')}" }\n`, 'bigger bodies'));
    const controller = new AbortController();
    const checking = t.envoy.check({ headers: { 'x-user-id': 'u9' }, body, signal: controller.signal });
    setTimeout(() => controller.abort(), 5);
    await expect(checking).rejects.toMatchObject({ code: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await usage('u9', 'open')).toEqual({ tokens: 0, requests: 0, leases: 0 });
  });

  describe('usage is private', () => {
    it('answers the admin and the user\'s own key, nobody else', async () => {
      const get = (path: string, key?: string) => fetch(`${t.http}${path}`, key ? { headers: { authorization: `Bearer ${key}` } } : {});
      expect((await get('/v1/usage/alice')).status).toBe(401);
      expect((await get('/v1/usage/alice', 'not-a-key')).status).toBe(401);
      expect((await get('/v1/usage/alice', 'key-bob')).status).toBe(403);
      expect((await get('/v1/usage/alice', 'key-alice')).status).toBe(200);
      expect((await get('/v1/usage/alice', 'test-admin-token')).status).toBe(200);
      const mine = await get('/v1/usage?model=open', 'key-alice');
      expect(mine.status).toBe(200);
      expect(((await mine.json()) as { user: string }).user).toBe('alice');
      expect((await get('/v1/usage')).status).toBe(401);
    });

    it('counts /v1/tokenize as the caller\'s request, and refuses it without a key', async () => {
      const tokenize = (key?: string) =>
        fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: key ? { authorization: `Bearer ${key}` } : {}, body: JSON.stringify({ model: 'open', prompt: 'Hello' }) });
      expect((await tokenize()).status).toBe(401);
      expect((await tokenize('key-tight')).status).toBe(200);
      expect((await tokenize('key-tight')).status).toBe(200);
      const third = await tokenize('key-tight');
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await usage('tight', 'open')).toEqual({ tokens: 0, requests: 2, leases: 0 });
      expect((await tokenize('test-admin-token')).status).toBe(200);
    });
  });
});

describe('seams that need a real Redis', () => {
  let t: TestApp;
  let redis: RedisServer;
  const chat = { model: 'open', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 100 };
  async function usage(user: string) {
    const body = (await (await fetch(`${t.http}/v1/usage/${user}?model=open`, { headers: ADMIN })).json()) as any;
    const windows = Object.fromEntries(body.models[0].windows.map((w: { window: string; used: number }) => [w.window, w.used]));
    return { tokens: windows['tokensPerMinute'] as number, requests: windows['requestsPerMinute'] as number, leases: body.models[0].concurrentRequests.used as number };
  }

  it('takes back a reservation that raced the Check\'s cancellation', async () => {
    const debuggable = await startRedisServer({ extraArgs: ['--enable-debug-command', 'local'] });
    try {
      t = await startTestApp({ configYaml: CONFIG, store: { kind: 'redis', url: debuggable.url } });
      expect((await t.envoy.check({ headers: { 'x-user-id': 'warm' }, body: chat })).status).toBe(200);
      const admin = debuggable.client();
      await admin.ping();
      // Redis stalls 300 ms: the reservation is made after the caller's 100 ms deadline has passed.
      const stall = admin.call('DEBUG', 'SLEEP', '0.3');
      await new Promise((r) => setTimeout(r, 20));
      await expect(t.envoy.check({ headers: { 'x-user-id': 'late' }, body: chat, timeoutMs: 100 })).rejects.toMatchObject({ code: 4 });
      await stall;
      expect(await eventually(() => usage('late'), (u) => u.leases === 0 && u.tokens === 0)).toEqual({ tokens: 0, requests: 0, leases: 0 });
      const metrics = await (await fetch(`${t.http}/metrics`)).text();
      expect(metrics).toMatch(/tokenwarden_decisions_total\{result="abandoned",reason="caller_gone"\} 1/);
    } finally {
      await t?.close();
      t = undefined as unknown as TestApp;
      await debuggable.stop();
    }
  });

  it('never charges twice when a reserve\'s reply is lost to a dropped connection', async () => {
    redis = redisFile.server;
    await redis.client().flushall();
    const proxy = await DroppingProxy.start(redis.port);
    try {
      t = await startTestApp({ configYaml: CONFIG, store: { kind: 'redis', url: `redis://127.0.0.1:${proxy.port}` } });
      expect((await t.envoy.check({ headers: { 'x-user-id': 'warm' }, body: chat })).status).toBe(200);
      proxy.dropNextReplyTo('resv:');
      const lost = await t.envoy.check({ headers: { 'x-user-id': 'dropped' }, body: chat });
      expect(proxy.dropped).toBe(1);
      expect(lost.status).toBe(503); // fail closed: the client was not admitted...
      // ...so the reservation Redis did make is taken back once the connection is up again, and never made twice.
      expect(await eventually(() => usage('dropped').catch(() => ({ tokens: -1, requests: -1, leases: -1 })), (u) => u.tokens === 0 && u.leases === 0)).toEqual({
        tokens: 0,
        requests: 0,
        leases: 0,
      });
      await new Promise((r) => setTimeout(r, 500));
      expect(await usage('dropped')).toEqual({ tokens: 0, requests: 0, leases: 0 });
      const again = await t.envoy.check({ headers: { 'x-user-id': 'dropped' }, body: chat });
      expect(again.status).toBe(200);
      expect((await usage('dropped')).tokens).toBe(again.metadata['reserved_tokens']);
    } finally {
      await t?.close();
      t = undefined as unknown as TestApp;
      await proxy.close();
    }
  });
});
