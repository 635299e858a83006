import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AccessLogStandIn, type LoggedRequest } from './helpers/access-log-stand-in.js';
import { appWithAccessLogPerTest } from './helpers/app-with-access-log.js';
import { ADMIN, manualClock } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';
import { runUsageLua, splitAt } from './helpers/usage-lua.js';
import { jsonCompletion, sseCompletion } from './helpers/vllm-responses.js';
import { eventually } from './helpers/eventually.js';

const CONFIG = `
defaults: { tokensPerMinute: 100000, tokensPerDay: 1000000, maxConcurrentRequests: 2 }
models: { llama-3.2-1b: {}, korean-llama: {} }
users: { sequence: { limits: { maxConcurrentRequests: null } } }
identity: { trustUserHeader: true }
reservation: { defaultCompletionTokens: 256, concurrencyLeaseSeconds: 120 }
tokenization: { workers: 0 }
`;

const redisFile = redisForThisFile();

describe.each(['memory', 'redis'] as const)('access-log reconciliation (%s store)', (storeKind) => {
  const clock = manualClock(Date.UTC(2026, 10, 23, 10, 0, 0));
  const fixture = appWithAccessLogPerTest({ configYaml: CONFIG, store: storeKind, redis: redisFile, clock, startMs: Date.UTC(2026, 10, 23, 10, 0, 0) });

  async function usage(user: string, model = 'llama-3.2-1b') {
    const body = (await (await fetch(`${fixture.t.http}/v1/usage/${user}?model=${model}`, { headers: ADMIN })).json()) as any;
    const windows = Object.fromEntries(body.models[0].windows.map((w: { window: string; used: number }) => [w.window, w.used]));
    return { tokens: windows['tokensPerMinute'] as number, day: windows['tokensPerDay'] as number, requests: windows['requestsPerMinute'] as number, concurrent: body.models[0].concurrentRequests.used as number };
  }

  async function check(user: string, body: object) {
    const res = await fixture.t.envoy.check({ headers: { 'x-user-id': user }, body });
    expect(res.status).toBe(200);
    return res;
  }

  const logged = (res: Awaited<ReturnType<typeof check>>, extra: Partial<LoggedRequest>): LoggedRequest => ({
    requestId: res.requestId,
    responseCode: 200,
    authzMetadata: res.metadata,
    ...extra,
  });

  async function settledCount(outcome: string): Promise<number> {
    const text = await (await fetch(`${fixture.t.http}/metrics`)).text();
    const match = new RegExp(`tokenwarden_accesslog_entries_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text);
    return Number(match?.[1] ?? 0);
  }

  it('charges exactly prompt + completion from the usage, releases the rest and the concurrency slot', async () => {
    const res = await check('ana', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 500 });
    const reserved = res.metadata['reserved_tokens'] as number;
    expect(await usage('ana')).toMatchObject({ tokens: reserved, concurrent: 1 });
    fixture.als.send([logged(res, { usage: { promptTokens: res.metadata['prompt_tokens'] as number, completionTokens: 37 } })]);
    const after = await eventually(() => usage('ana'), (u) => u.concurrent === 0);
    expect(after).toEqual({ tokens: (res.metadata['prompt_tokens'] as number) + 37, day: (res.metadata['prompt_tokens'] as number) + 37, requests: 1, concurrent: 0 });
  });

  it('charges more than reserved when the model produced more (no max_tokens given)', async () => {
    const res = await check('ben', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Write an essay' }] });
    fixture.als.send([logged(res, { usage: { promptTokens: 40, completionTokens: 900 } })]);
    expect((await eventually(() => usage('ben'), (u) => u.concurrent === 0)).tokens).toBe(940);
  });

  it('never charges a resent entry twice', async () => {
    const res = await check('cho', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 });
    const entry = logged(res, { usage: { promptTokens: 30, completionTokens: 10 } });
    fixture.als.send([entry, entry]);
    fixture.als.send([entry]);
    await eventually(() => settledCount('duplicate'), (n) => n === 2);
    expect(await settledCount('settled')).toBe(1);
    expect(await settledCount('duplicate')).toBe(2);
    expect((await usage('cho')).tokens).toBe(40);
  });

  // The rule table of src/accounting/rules.ts, from what Envoy logs for each way a request can end.
  it.each([
    ['the model server failed (5xx from it)', { responseCode: 503 }, 'reserved'],
    ['the model server refused it (4xx from it)', { responseCode: 400 }, 'nothing'],
    ['a 2xx without usage (stream without include_usage)', { responseCode: 200 }, 'reserved'],
    ['the client went away before any response (code 0, DC)', { responseCode: undefined, flags: ['DC'] }, 'reserved'],
    ['the client went away mid-stream (200, DC)', { responseCode: 200, flags: ['DC'] }, 'reserved'],
    ['the client reset its HTTP/2 stream (DR)', { responseCode: 200, flags: ['DR'] }, 'reserved'],
    ['the route timed out after forwarding (504, UT)', { responseCode: 504, flags: ['UT'] }, 'reserved'],
    ['Envoy answered 408 itself after forwarding (SI)', { responseCode: 408, flags: ['SI'] }, 'reserved'],
    ['an upstream reset after forwarding (503, UR)', { responseCode: 503, flags: ['UR'] }, 'reserved'],
    ['no connection to the model server (503, UF, nothing sent)', { responseCode: 503, flags: ['UF'], forwarded: false }, 'nothing'],
    ['no healthy model server (503, UH)', { responseCode: 503, flags: ['UH'], forwarded: false }, 'nothing'],
    ['the client left before Envoy forwarded (code 0, DC, no host)', { responseCode: undefined, flags: ['DC'], forwarded: false }, 'nothing'],
    ['a 4xx that Envoy itself sent (not via upstream)', { responseCode: 400, statusFromUpstream: false }, 'reserved'],
  ] as const)('settles an entry without usage when %s', async (_case, entry, expected) => {
    const user = `rule-${Math.random().toString(36).slice(2, 8)}`;
    const res = await check(user, { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 });
    fixture.als.send([logged(res, entry as Partial<LoggedRequest>)]);
    const after = await eventually(() => usage(user), (u) => u.concurrent === 0);
    const reserved = res.metadata['reserved_tokens'] as number;
    expect(after.tokens).toBe(expected === 'reserved' ? reserved : 0);
    expect(after.requests).toBe(1);
  });

  it('counts open access-log streams', async () => {
    const streams = async () => Number(/^tokenwarden_accesslog_streams (\d+)$/m.exec(await (await fetch(`${fixture.t.http}/metrics`)).text())?.[1]);
    fixture.als.send([{ requestId: 'x', responseCode: 200 }]);
    expect(await eventually(streams, (n) => n === 1)).toBe(1);
    await fixture.als.end();
    expect(await eventually(streams, (n) => n === 0)).toBe(0);
  });

  it('ignores entries of requests that reserved nothing (denied or uncharged)', async () => {
    fixture.als.send([{ requestId: 'denied-1', responseCode: 429 }, { requestId: 'get-1', responseCode: 200, authzMetadata: { user: 'gil' } }]);
    expect(await eventually(() => settledCount('not_reserved'), (n) => n === 2)).toBe(2);
  });

  it('settles a reservation whose entry never came by expiry: the slot frees itself, the charge stands', async () => {
    const res = await check('hal', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 });
    await check('hal', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 });
    expect((await fixture.t.envoy.check({ headers: { 'x-user-id': 'hal' }, body: { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'x' }] } })).status).toBe(429);
    clock.advance(120_001);
    expect((await usage('hal')).concurrent).toBe(0);
    const reserved = res.metadata['reserved_tokens'] as number;
    clock.advance(60_000);
    fixture.als.send([logged(res, { usage: { promptTokens: 1, completionTokens: 1 } })]);
    await eventually(() => settledCount('expired'), (n) => n === 1);
    const day = (await usage('hal')).day;
    expect(day).toBe(2 * reserved); // the late entry changed nothing
  });

  it('makes /v1/usage equal the sum of the usage objects vLLM returned, for mixed streamed and non-streamed requests', async () => {
    let random = 7;
    const next = (n: number) => {
      random = (random * 1103515245 + 12345) % 2 ** 31;
      return random % n;
    };
    const expected: Record<string, number> = {};
    const pending: LoggedRequest[] = [];
    const responses: Array<{ res: Awaited<ReturnType<typeof check>>; chunks: Buffer[]; model: string }> = [];
    for (let i = 0; i < 24; i++) {
      const model = i % 3 === 0 ? 'korean-llama' : 'llama-3.2-1b';
      const streamed = i % 2 === 0;
      const content = i % 3 === 0 ? `질문 ${i}: 서울의 날씨는 어떤가요?` : `Question ${i}: what is ${i} squared?`;
      const maxTokens = 20 + next(200);
      const res = await check('sequence', {
        model,
        messages: [{ role: 'user', content }],
        max_tokens: maxTokens,
        ...(streamed ? { stream: true, stream_options: { include_usage: true } } : {}),
      });
      // vLLM reports the prompt it tokenized (the same count) and a completion up to max_tokens.
      const usageObject = { prompt_tokens: res.metadata['prompt_tokens'] as number, completion_tokens: 1 + next(maxTokens) };
      expected[model] = (expected[model] ?? 0) + usageObject.prompt_tokens + usageObject.completion_tokens;
      const body = streamed
        ? sseCompletion(`cmpl-${i}`, ['The', ' answer', ' is', ` ${i * i}`, '.'], usageObject)
        : jsonCompletion(`cmpl-${i}`, `The answer is ${i * i}.`, usageObject);
      const chunks = splitAt(body, Array.from({ length: 1 + next(6) }, () => 1 + next(body.length - 1)).sort((a, b) => a - b));
      responses.push({ res, chunks, model });
    }
    // Envoy's Lua filter reads each response as it streams past…
    const luaUsage = runUsageLua(responses.map((r) => r.chunks));
    responses.forEach(({ res }, i) => pending.push(logged(res, { usage: luaUsage[i]! })));
    // …and the access logger ships the entries in batches on two worker streams.
    const second = new AccessLogStandIn(fixture.t.app.grpcPort);
    for (let i = 0; i < pending.length; i += 5) (i % 10 === 0 ? fixture.als : second).send(pending.slice(i, i + 5));
    await eventually(() => settledCount('settled'), (n) => n === pending.length);
    await second.end();
    second.close();
    for (const model of ['llama-3.2-1b', 'korean-llama']) {
      const u = await usage('sequence', model);
      expect(u.tokens).toBe(expected[model]);
      expect(u.day).toBe(expected[model]);
      expect(u.concurrent).toBe(0);
    }
    const metrics = await (await fetch(`${fixture.t.http}/metrics`)).text();
    const charged = [...metrics.matchAll(/^tokenwarden_tokens_charged_total\{[^}]*\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    expect(charged).toBe(expected['llama-3.2-1b']! + expected['korean-llama']!);
    expect(metrics).toMatch(/tokenwarden_reservation_error_tokens_count\{model="korean-llama"\} 8/);
  });
});
