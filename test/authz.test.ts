import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toStruct } from '../src/envoy/struct.js';
import { manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

const CONFIG = `
defaults: { tokensPerMinute: 1000, requestsPerMinute: 100 }
models:
  m1: {}
  m2: { limits: { tokensPerMinute: 5000 } }
users:
  alice:
    models: { m1: { tokensPerMinute: 300 } }
  carol: { limits: { requestsPerMinute: 2 } }
  dave: { limits: { maxConcurrentRequests: 1 } }
groups:
  interns: { limits: { requestsPerMinute: 1 } }
apiKeys:
  - { sha256: "${sha('key-alice')}", user: alice }
  - { sha256: "${sha('key-bob')}", user: bob }
  - { sha256: "${sha('key-carol')}", user: carol }
  - { sha256: "${sha('key-dave')}", user: dave }
identity:
  trustUserHeader: true
  jwt: { userClaim: email }
reservation: { defaultCompletionTokens: 100, concurrencyLeaseSeconds: 30 }
maxBodyBytes: 4096
admin: { tokenSha256: "${sha('admin-secret')}" }
`;

const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const ADMIN_SECRET = { authorization: 'Bearer admin-secret' };
const chat = (model: string, text: string, maxTokens?: number) => ({
  model,
  messages: [{ role: 'user', content: text }],
  ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
});

const redisFile = redisForThisFile();

describe.each(['memory', 'redis'] as const)('ext_authz Check with the %s store', (storeKind) => {
  let t: TestApp;
  const clock = manualClock(Date.UTC(2026, 10, 23, 12, 0, 0));

  beforeEach(async () => {
    clock.set(Date.UTC(2026, 10, 23, 12, 0, 0));
    if (storeKind === 'redis') await redisFile.server.client().flushall();
    t = await startTestApp({
      configYaml: CONFIG,
      store: storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url },
      clock,
    });
  });
  afterEach(async () => {
    await t.close();
  });

  async function usage(user: string, model: string) {
    const res = await fetch(`${t.http}/v1/usage/${encodeURIComponent(user)}?model=${model}`, { headers: ADMIN_SECRET });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { models: Array<{ windows: Array<{ window: string; used: number; limit: number | null }>; concurrentRequests: { used: number } }> };
    const windows = Object.fromEntries(body.models[0]!.windows.map((w) => [w.window, w]));
    return { windows, concurrent: body.models[0]!.concurrentRequests.used };
  }

  it('allows a request within limits, with x-ratelimit headers and dynamic metadata', async () => {
    const res = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello there', 50) });
    expect(res.status).toBe(200);
    expect(res.metadata['user']).toBe('alice');
    expect(res.metadata['model']).toBe('m1');
    const prompt = res.metadata['prompt_tokens'] as number;
    expect(prompt).toBeGreaterThan(0);
    expect(res.metadata['reserved_tokens']).toBe(prompt + 50);
    expect(res.metadata['reservation_id']).toBe(res.requestId);
    expect(res.headers['x-ratelimit-limit-tokens']).toBe('300');
    expect(res.headers['x-ratelimit-remaining-tokens']).toBe(String(300 - prompt - 50));
    expect(res.headers['x-ratelimit-reset-tokens']).toMatch(/^\d+(\.\d+)?s$|^\d+m\d+s$/);
    expect(res.headers['x-ratelimit-limit-requests']).toBe('100');
    expect(res.headers['x-ratelimit-remaining-requests']).toBe('99');
    const u = await usage('alice', 'm1');
    expect(u.windows['tokensPerMinute']!.used).toBe(prompt + 50);
    expect(u.windows['requestsPerMinute']!.used).toBe(1);
    expect(u.concurrent).toBe(1);
  });

  it('reserves the configured default completion when max_tokens is absent', async () => {
    const res = await t.envoy.check({ headers: auth('key-bob'), body: chat('m1', 'hi') });
    expect(res.metadata['reserved_tokens']).toBe((res.metadata['prompt_tokens'] as number) + 100);
  });

  it('reserves max_tokens for each of n choices', async () => {
    const res = await t.envoy.check({ headers: auth('key-bob'), body: { ...chat('m1', 'hi', 40), n: 3 } });
    expect(res.metadata['reserved_tokens']).toBe((res.metadata['prompt_tokens'] as number) + 120);
    expect((await t.envoy.check({ headers: auth('key-bob'), body: { ...chat('m1', 'hi', 40), n: 0 } })).status).toBe(400);
  });

  it('answers 429 with an OpenAI error body, retry-after and the denying limit once tokens run out', async () => {
    const first = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello', 100) });
    const cost = first.metadata['reserved_tokens'] as number;
    const fits = Math.floor(300 / cost);
    for (let i = 1; i < fits; i++) {
      expect((await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello', 100) })).status).toBe(200);
    }
    const denied = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello', 100) });
    expect(denied.status).toBe(429);
    expect(denied.grpcCode).not.toBe(0);
    expect(denied.headers['content-type']).toBe('application/json');
    const body = JSON.parse(denied.body);
    expect(body.error.code).toBe('rate_limit_exceeded');
    expect(body.error.type).toBe('tokens');
    expect(body.error.param).toBeNull();
    expect(body.error.message).toContain('tokens per minute');
    expect(Number(denied.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(denied.headers['retry-after'])).toBeLessThanOrEqual(65);
    expect(denied.headers['x-ratelimit-limit-tokens']).toBe('300');
    expect(denied.headers['x-ratelimit-remaining-tokens']).toBe(String(300 - fits * cost));
    expect(denied.headers['x-tokenwarden-limit']).toBe('tokensPerMinute');
    // The denial charged nothing, and the most specific limit applied only to alice on m1.
    expect((await usage('alice', 'm1')).windows['tokensPerMinute']!.used).toBe(fits * cost);
    expect((await t.envoy.check({ headers: auth('key-alice'), body: chat('m2', 'hello', 100) })).status).toBe(200);
  });

  it('admits again once the window has slid past the earlier charges', async () => {
    const first = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'x', 250) });
    expect(first.status).toBe(200);
    const denied = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'x', 250) });
    expect(denied.status).toBe(429);
    clock.advance(Number(denied.headers['retry-after']) * 1000);
    expect((await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'x', 250) })).status).toBe(200);
  });

  it('refuses a request larger than the limit itself, saying retrying will not help', async () => {
    const res = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'x', 5000) });
    expect(res.status).toBe(429);
    expect(JSON.parse(res.body).error.message).toMatch(/Request too large.*will not help/);
    expect(res.headers['retry-after']).toBeDefined();
    expect((await usage('alice', 'm1')).windows['tokensPerMinute']!.used).toBe(0);
  });

  it('limits requests per minute, described by the request headers', async () => {
    for (let i = 0; i < 2; i++) expect((await t.envoy.check({ headers: auth('key-carol'), body: chat('m1', 'q', 1) })).status).toBe(200);
    const denied = await t.envoy.check({ headers: auth('key-carol'), body: chat('m1', 'q', 1) });
    expect(denied.status).toBe(429);
    expect(JSON.parse(denied.body).error.type).toBe('requests');
    expect(denied.headers['x-ratelimit-limit-requests']).toBe('2');
    expect(denied.headers['x-ratelimit-remaining-requests']).toBe('0');
    expect(denied.headers['x-tokenwarden-limit']).toBe('requestsPerMinute');
  });

  it('holds a concurrency slot as a lease that frees itself when the access log never comes', async () => {
    expect((await t.envoy.check({ headers: auth('key-dave'), body: chat('m1', 'q', 1) })).status).toBe(200);
    const denied = await t.envoy.check({ headers: auth('key-dave'), body: chat('m1', 'q', 1) });
    expect(denied.status).toBe(429);
    expect(denied.headers['x-tokenwarden-limit']).toBe('maxConcurrentRequests');
    expect(denied.headers['retry-after']).toBe('1');
    clock.advance(30_001);
    expect((await t.envoy.check({ headers: auth('key-dave'), body: chat('m1', 'q', 1) })).status).toBe(200);
  });

  it('answers 401 without credentials or with an unknown key, charging nothing', async () => {
    const none = await t.envoy.check({ body: chat('m1', 'hi') });
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error).toMatchObject({ code: 'invalid_api_key', message: 'No API key provided.' });
    const wrong = await t.envoy.check({ headers: auth('key-mallory'), body: chat('m1', 'hi') });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body).error.message).toBe('Invalid API key provided.');
    expect(wrong.body).not.toContain('key-mallory');
  });

  it('answers 400 for malformed JSON, a non-object body, a bad max_tokens and a missing model, charging nothing', async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['{"model": "m1", "messages": [', /not valid JSON/],
      ['[1,2,3]', /must be a JSON object/],
      [{ model: 'm1', messages: [], max_tokens: -5 }, /max_tokens/],
      [{ model: 'm1', messages: [], max_tokens: '10' }, /max_tokens/],
      [{ messages: [{ role: 'user', content: 'hi' }] }, /names no model/],
      [{ model: 42, messages: [] }, /'model' must be/],
    ];
    for (const [body, message] of cases) {
      const res = await t.envoy.check({ headers: auth('key-alice'), body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(JSON.parse(res.body).error.message).toMatch(message);
    }
    expect((await usage('alice', 'm1')).windows['requestsPerMinute']!.used).toBe(0);
  });

  it('answers 404 model_not_found for a model that is not configured', async () => {
    const res = await t.envoy.check({ headers: auth('key-alice'), body: chat('gpt-9', 'hi') });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('answers 413 for a body over the cap or one Envoy truncated, before counting anything', async () => {
    const big = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'x'.repeat(5000)) });
    expect(big.status).toBe(413);
    const partial = await t.envoy.check({
      headers: { ...auth('key-alice'), 'x-envoy-auth-partial-body': 'true' },
      body: chat('m1', 'short'),
    });
    expect(partial.status).toBe(413);
    expect((await usage('alice', 'm1')).windows['requestsPerMinute']!.used).toBe(0);
  });

  it('takes the model from /api/v1/models/{model}/ when the body has none', async () => {
    const res = await t.envoy.check({
      headers: auth('key-bob'),
      path: '/api/v1/models/m2/v1/completions',
      body: { prompt: 'Once upon a time', max_tokens: 10 },
    });
    expect(res.status).toBe(200);
    expect(res.metadata['model']).toBe('m2');
    expect(res.headers['x-ratelimit-limit-tokens']).toBe('5000');
  });

  it('reads raw headers (encode_raw_headers) and raw bodies (pack_as_bytes) alike', async () => {
    const res = await t.envoy.check({ headers: auth('key-bob'), body: chat('m1', '안녕하세요', 5), rawHeaders: true, packAsBytes: true });
    expect(res.status).toBe(200);
    expect(res.metadata['user']).toBe('bob');
  });

  it('lets a body-less GET through uncharged after identifying the caller', async () => {
    const ok = await t.envoy.check({ method: 'GET', path: '/v1/models', headers: auth('key-bob') });
    expect(ok.status).toBe(200);
    expect(ok.metadata['user']).toBe('bob');
    expect(ok.metadata['reserved_tokens']).toBeUndefined();
    expect((await t.envoy.check({ method: 'GET', path: '/v1/models' })).status).toBe(401);
  });

  it('identifies callers by a verified JWT claim in metadata, then by the trusted header', async () => {
    const jwt = await t.envoy.check({
      body: chat('m1', 'hi', 1),
      metadataContext: {
        'envoy.filters.http.jwt_authn': {
          fields: { jwt_payload: { structValue: toStruct({ email: 'erin@example.com', sub: '123' }) } },
        },
      },
    });
    expect(jwt.status).toBe(200);
    expect(jwt.metadata['user']).toBe('erin@example.com');
    const intern = () =>
      t.envoy.check({
        body: chat('m1', 'hi', 1),
        metadataContext: {
          'envoy.filters.http.jwt_authn': {
            fields: { jwt_payload: { structValue: { fields: { email: { stringValue: 'ivy@example.com' }, groups: { listValue: { values: [{ stringValue: 'interns' }] } } } } } },
          },
        },
      });
    expect((await intern()).status).toBe(200);
    expect((await intern()).headers['x-tokenwarden-limit']).toBe('requestsPerMinute');
    const header = await t.envoy.check({ headers: { 'x-user-id': 'frank' }, body: chat('m1', 'hi', 1) });
    expect(header.metadata['user']).toBe('frank');
    const hostile = await t.envoy.check({ headers: { 'x-user-id': 'evil\nuser' }, body: chat('m1', 'hi', 1) });
    expect(hostile.status).toBe(401);
  });

  it('keeps counters of users whose names look like key fragments apart', async () => {
    const spend = (user: string) => t.envoy.check({ headers: { 'x-user-id': user }, body: chat('m1', 'x', 900) });
    expect((await spend('mallory')).status).toBe(200);
    expect((await spend('mallory')).status).toBe(429);
    for (const name of ['mallory}', '{mallory', 'mallory.bTE', 'bWFsbG9yeQ.bTE', 'mallory:tpm', '__proto__', 'constructor']) {
      expect((await spend(name)).status, name).toBe(200);
    }
  });

  it('charges a repeated x-request-id again under a fresh reservation id', async () => {
    const a = await t.envoy.check({ headers: auth('key-bob'), body: chat('m1', 'hi', 10), requestId: 'req-1' });
    const b = await t.envoy.check({ headers: auth('key-bob'), body: chat('m1', 'hi', 10), requestId: 'req-1' });
    expect(a.metadata['reservation_id']).toBe('req-1');
    expect(b.metadata['reservation_id']).not.toBe('req-1');
    expect((await usage('bob', 'm1')).windows['requestsPerMinute']!.used).toBe(2);
  });

  it('reports usage per model and resets it only with the admin token', async () => {
    const res = await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello', 10) });
    const all = (await (await fetch(`${t.http}/v1/usage/alice`, { headers: ADMIN_SECRET })).json()) as any;
    expect(all.models.map((m: { model: string }) => m.model)).toEqual(['m1', 'm2']);
    const m1 = all.models[0].windows.find((w: { window: string }) => w.window === 'tokensPerMinute');
    expect(m1).toMatchObject({ used: res.metadata['reserved_tokens'], limit: 300 });
    expect(m1.reset).toBeGreaterThan(clock() / 1000);
    expect((await fetch(`${t.http}/v1/usage/alice?model=nope`, { headers: ADMIN_SECRET })).status).toBe(404);

    expect((await fetch(`${t.http}/v1/usage/alice`, { method: 'DELETE' })).status).toBe(401);
    const wrong = await fetch(`${t.http}/v1/usage/alice`, { method: 'DELETE', headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const ok = await fetch(`${t.http}/v1/usage/alice`, { method: 'DELETE', headers: { authorization: 'Bearer admin-secret' } });
    expect(ok.status).toBe(204);
    expect((await usage('alice', 'm1')).windows['tokensPerMinute']!.used).toBe(0);
  });

  it('exposes health, readiness and decision metrics', async () => {
    await t.envoy.check({ headers: auth('key-alice'), body: chat('m1', 'hello', 10) });
    await t.envoy.check({ body: chat('m1', 'hello', 10) });
    expect((await fetch(`${t.http}/healthz`)).status).toBe(200);
    expect((await fetch(`${t.http}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${t.http}/metrics`)).text();
    expect(metrics).toMatch(/tokenwarden_decisions_total\{result="allowed",reason="within_limits"\} 1/);
    expect(metrics).toMatch(/tokenwarden_decisions_total\{result="denied",reason="unauthenticated"\} 1/);
    expect(metrics).toMatch(/tokenwarden_check_duration_seconds_count 2/);
    expect(metrics).toMatch(/tokenwarden_reserved_tokens_total\{model="m1"\} \d+/);
  });
});
