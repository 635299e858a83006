import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvoyOutcome } from '../src/envoy/check-client.js';
import { promptOf } from '../src/openai/prompt.js';
import { parseOpenAIRequest } from '../src/openai/request.js';
import { ChatTemplate } from '../src/tokens/chat-template.js';
import { ModelTokenizer, templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { textTokenizerFrom } from '../src/tokens/text-tokenizer.js';
import { manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { llamaTokenizerConfig, llamaTokenizerJson } from './helpers/llama.js';

/*
 * One user's 1 MiB Check must not stall everyone else's: its chat template is rendered and its
 * tokens counted on the worker thread while small Checks keep being answered on the main thread.
 * The machine may be loaded (2 cores, other test files), so the assertions are about order and
 * generous bounds, not tight timings. The app runs in this process: while its main thread is busy,
 * this file cannot even send, so a small Check's latency counts from when it was due, as a client
 * outside would see it.
 */
const MiB = 1 << 20;
const SMALL_CHECK_BOUND_MS = 200;
const clock = manualClock(Date.UTC(2026, 10, 23, 3, 0));
const CONFIG = `
models:
  llama-3.2-1b: {}
identity: { trustUserHeader: true }
tokenization: { workers: 1 }
maxBodyBytes: 1200000
`;

/** The same prompt counted directly on this thread: what the worker must agree with. */
const directCounter = new ModelTokenizer(
  textTokenizerFrom(llamaTokenizerJson, llamaTokenizerConfig),
  new ChatTemplate(templateSourceOf(llamaTokenizerConfig)!, 'UTC', clock),
  llamaTokenizerConfig,
);
const countDirectly = (body: object) => directCounter.countPrompt(promptOf(parseOpenAIRequest(JSON.stringify(body), 'chat')))[0];

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ configYaml: CONFIG, store: { kind: 'memory' }, clock });
  await t.app.tokenizers.settled(); // loading a tokenizer is start-up work, not what is measured here
});
afterAll(async () => {
  await t.close();
});

/** A conversation of distinct sentences (English and Korean, with numbers), about `bytes` of JSON. */
function longConversation(bytes: number): object {
  const topics = ['the GPU scheduler', '서울의 겨울 날씨', 'a rate limiter', 'tokenizer caches', '부산 가는 KTX 요금', 'Envoy filters'];
  const messages: Array<{ role: string; content: string }> = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const content = `Note ${i} is about ${topics[i % topics.length]}: ${(i * 7919) % 100_000} units. 질문 ${i}번?`;
    messages.push({ role: i % 2 === 0 ? 'user' : 'assistant', content });
    size += Buffer.byteLength(JSON.stringify(messages.at(-1)));
  }
  messages.push({ role: 'user', content: 'Summarize all of the above.' });
  return { model: 'llama-3.2-1b', messages, max_tokens: 100 };
}

interface Timed {
  readonly outcome: EnvoyOutcome;
  readonly ms: number;
  readonly doneAt: number;
}

async function timedCheck(user: string, body: unknown, dueAt = performance.now()): Promise<Timed> {
  const outcome = await t.envoy.check({ headers: { 'x-user-id': user }, body });
  const doneAt = performance.now();
  return { outcome, ms: doneAt - dueAt, doneAt };
}

/** Starts alice's big Check and, until it is answered, sends bob's small ones one after another. */
async function smallChecksDuring(bigBody: unknown): Promise<{ big: Timed; small: Timed[] }> {
  let bigAnswered = false;
  const bigCheck = timedCheck('alice', bigBody).finally(() => (bigAnswered = true));
  const small: Timed[] = [];
  while (!bigAnswered) {
    const dueAt = performance.now() + 10;
    await sleep(10);
    small.push(await timedCheck('bob', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: `Hello ${small.length}` }], max_tokens: 16 }, dueAt));
  }
  return { big: await bigCheck, small };
}

/** Every small Check was quick, and several were answered while the big one was still being counted. */
function expectSmallChecksUnhindered({ big, small }: { big: Timed; small: Timed[] }): void {
  for (const check of small) {
    expect(check.outcome.status).toBe(200);
    expect(check.ms).toBeLessThan(SMALL_CHECK_BOUND_MS);
  }
  expect(small.filter((check) => check.doneAt < big.doneAt).length).toBeGreaterThanOrEqual(3);
}

describe('a 1 MiB Check does not stall other users', () => {
  it('renders and counts a long conversation of distinct sentences on the worker', async () => {
    const body = longConversation(MiB);
    expect(Buffer.byteLength(JSON.stringify(body))).toBeGreaterThan(MiB);
    const run = await smallChecksDuring(body);
    expect(run.big.outcome.status).toBe(200);
    expect(run.big.outcome.metadata['prompt_tokens']).toBe(countDirectly(body));
    expectSmallChecksUnhindered(run);
  });

  it('counts 1 MiB of one repeated letter on the worker', async () => {
    const body = { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'a'.repeat(MiB) }], max_tokens: 100 };
    const run = await smallChecksDuring(body);
    expect(run.big.outcome.status).toBe(200);
    expect(run.big.outcome.metadata['prompt_tokens']).toBe(countDirectly(body));
    expectSmallChecksUnhindered(run);
  });

  it('refuses a deeply nested body (the request depth limit) without holding up small Checks', async () => {
    const depth = 100_000;
    const body = `{"model":"llama-3.2-1b","messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"deep":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    const sentAt = performance.now();
    const nested = t.envoy.check({ headers: { 'x-user-id': 'alice' }, body });
    const small = await timedCheck('bob', { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hello' }] }, sentAt);
    expect((await nested).status).toBe(400);
    expect(small.outcome.status).toBe(200);
    expect(small.ms).toBeLessThan(SMALL_CHECK_BOUND_MS);
  });
});
