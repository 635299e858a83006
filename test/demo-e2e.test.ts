import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoStack, type DemoStack } from '../demo/stack.js';

/*
 * The user's view, end to end, with the client library people use: the official openai SDK against
 * the demo stack — Envoy stand-in reading envoy/envoy.yaml and running envoy/usage.lua, tokenwarden
 * as built (dist/main.js) with demo/limits.yaml, and the vLLM stand-in counting prompts on its own.
 */
let stack: DemoStack;
beforeAll(async () => {
  stack = await startDemoStack({
    ports: { envoy: 0, tokenwardenGrpc: 0, tokenwardenHttp: 0, modelServer: 0 },
    tokensPerSecond: 5000,
    // Every answer ends before its budget, so a settlement to the usage differs from the reservation.
    naturalStopRate: 1,
    log: () => {},
  });
}, 90_000);
afterAll(async () => {
  await stack?.close();
});

const client = (key: string) => new OpenAI({ baseURL: stack.baseUrl, apiKey: key, maxRetries: 0 });

interface Usage {
  models: Array<{ model: string; windows: Array<{ window: string; used: number }>; concurrentRequests: { used: number } }>;
}
/** GET /v1/usage through Envoy with the user's own key. */
async function usageOf(key: string, model: string): Promise<Usage['models'][number]> {
  const response = await fetch(`${stack.baseUrl}/usage`, { headers: { authorization: `Bearer ${key}` } });
  return ((await response.json()) as Usage).models.find((m) => m.model === model)!;
}
/** A tokenwarden counter's value, summed over the series matching `labels`. */
async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${stack.tokenwardenUrl}/metrics`)).text();
  return [...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))].filter((m) => m[1]!.includes(labels)).reduce((sum, m) => sum + Number(m[2]), 0);
}

/** The user's tokensPerMinute used on a model. */
async function usedThisMinute(key: string, model: string): Promise<number> {
  return (await usageOf(key, model)).windows.find((w) => w.window === 'tokensPerMinute')!.used;
}

describe('the demo stack through the openai SDK', () => {
  it('answers a chat completion, with x-ratelimit headers, and settles the tokens the model really used', async () => {
    const { data: reply, response } = await client('tw-demo-alice')
      .chat.completions.create({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hello! 안녕하세요?' }], max_tokens: 40 })
      .withResponse();
    expect(reply.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(reply.usage!.completion_tokens).toBeLessThan(40);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('20000');
    expect(Number(response.headers.get('x-ratelimit-remaining-requests'))).toBe(59);
    // The reservation (prompt + 40) is corrected to what vLLM reported once the access log arrives;
    // both counted the prompt independently, so they agree.
    await expect.poll(() => usedThisMinute('tw-demo-alice', 'llama-3.2-1b'), { timeout: 10_000 }).toBe(reply.usage!.total_tokens);
    expect(await metric('tokenwarden_settlements_total', 'rule="usage"')).toBeGreaterThanOrEqual(1);
  });

  it('settles chat and completions, streamed or not, to exactly the sum of the usage the model reported', async () => {
    const sdk = client('tw-demo-dave');
    const reported: number[] = [];
    const chat = await sdk.chat.completions.create({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Name three rivers.' }], max_tokens: 25 });
    reported.push(chat.usage!.total_tokens);
    const completion = await sdk.completions.create({ model: 'llama-3.2-1b', prompt: 'Once upon a time', max_tokens: 30 });
    reported.push(completion.usage!.total_tokens);
    const streamed = await sdk.completions.create({ model: 'llama-3.2-1b', prompt: ['첫 번째', 'second'], max_tokens: 12, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of streamed) if (chunk.usage) reported.push(chunk.usage.total_tokens);
    expect(reported).toHaveLength(3);
    expect(chat.usage!.completion_tokens).toBeLessThan(25);
    expect(completion.usage!.completion_tokens).toBeLessThan(30);
    const expected = reported.reduce((a, b) => a + b, 0);
    await expect.poll(() => usedThisMinute('tw-demo-dave', 'llama-3.2-1b'), { timeout: 10_000 }).toBe(expected);
  });

  it('streams, with the usage chunk last, and settles it from what usage.lua read while streaming', async () => {
    const stream = await client('tw-demo-dave').chat.completions.create({
      model: 'korean-llama',
      messages: [{ role: 'user', content: '서울 날씨 어때?' }],
      max_tokens: 60,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage!.completion_tokens).toBeLessThanOrEqual(60);
    await expect.poll(() => usedThisMinute('tw-demo-dave', 'korean-llama'), { timeout: 10_000 }).toBe(usage!.total_tokens);
  });

  it('turns a spent quota into the SDK\'s RateLimitError, with OpenAI\'s body and headers', async () => {
    const bob = client('tw-demo-bob');
    const big = { model: 'llama-3.2-1b', messages: [{ role: 'user' as const, content: 'Write at length.' }], max_tokens: 1900 };
    await bob.chat.completions.create(big);
    await bob.chat.completions.create(big);
    const error = await bob.chat.completions.create(big).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const limited = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(limited.status).toBe(429);
    expect(limited.code).toBe('rate_limit_exceeded');
    expect(limited.message).toContain('tokens per minute');
    expect(Number(limited.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers?.get('x-ratelimit-limit-tokens')).toBe('4000');
  });

  it('refuses a request over the model\'s context with a 400 in vLLM\'s wording before it reaches the model, and an unknown key with 401', async () => {
    const tooLong = await client('tw-demo-alice')
      .chat.completions.create({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2040 })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as Error).message).toMatch(/maximum context length is 2048 tokens\. However, you requested 2040 output tokens and your prompt contains/);
    const unknown = await client('not-a-key')
      .chat.completions.create({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }] })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(unknown).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it("with the SDK's default retries, waits as a 429's retry-after tells it and then succeeds", async () => {
    // carol may run one request at a time; a 429 for concurrency says retry-after: 1.
    const attempts: Array<{ startMs: number; endMs: number; status: number; retryAfter: string | null }> = [];
    const recording: typeof fetch = async (input, init) => {
      const startMs = Date.now();
      const response = await fetch(input, init);
      attempts.push({ startMs, endMs: Date.now(), status: response.status, retryAfter: response.headers.get('retry-after') });
      return response;
    };
    const sdk = new OpenAI({ baseURL: stack.baseUrl, apiKey: 'tw-demo-carol', fetch: recording });
    const ask = () => sdk.chat.completions.create({ model: 'korean-llama', messages: [{ role: 'user', content: '안녕?' }], max_tokens: 300 });
    const [first, second] = await Promise.all([ask(), ask()]);
    expect(first.choices.length + second.choices.length).toBe(2);
    const denied = attempts.find((a) => a.status === 429)!;
    expect(denied.retryAfter).toBe('1');
    // The SDK's next attempt starts no sooner than retry-after (its own first backoff would be about 0.5 s).
    const next = attempts.filter((a) => a.startMs >= denied.endMs).sort((a, b) => a.startMs - b.startMs)[0]!;
    expect(next.startMs - denied.endMs).toBeGreaterThanOrEqual(950);
    expect(attempts.at(-1)!.status).toBe(200);
  });

  it('never runs more of one user\'s requests at the model than maxConcurrentRequests', async () => {
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, stack.modelServerActive())), 2);
    const sdk = client('tw-demo-alice');
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, () => sdk.chat.completions.create({ model: 'korean-llama', messages: [{ role: 'user', content: '동시에?' }], max_tokens: 400 })),
    );
    clearInterval(sampler);
    const denied = outcomes.filter((o) => o.status === 'rejected');
    expect(denied.every((o) => (o as PromiseRejectedResult).reason instanceof OpenAI.RateLimitError)).toBe(true);
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBeGreaterThanOrEqual(4);
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(4);
  });

  it('keeps the reservation of a stream the client abandons (the model kept working until Envoy saw it go)', async () => {
    const controller = new AbortController();
    const stream = await client('tw-demo-carol').chat.completions.create(
      { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Count slowly.' }], max_tokens: 500, stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks < 3) continue;
      controller.abort();
      break;
    }
    // client_gone keeps the full reservation (prompt + 500), and the concurrency slot is free again.
    await expect.poll(() => metric('tokenwarden_settlements_total', 'rule="client_gone"'), { timeout: 10_000 }).toBe(1);
    await expect.poll(() => usedThisMinute('tw-demo-carol', 'llama-3.2-1b'), { timeout: 10_000 }).toBeGreaterThan(500);
    await expect.poll(async () => (await usageOf('tw-demo-carol', 'llama-3.2-1b')).concurrentRequests.used, { timeout: 10_000 }).toBe(0);
  });
});
