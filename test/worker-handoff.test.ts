import { afterAll, describe, expect, it } from 'vitest';
import { parseOpenAIRequest } from '../src/openai/request.js';
import { promptOf } from '../src/openai/prompt.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { TokenizerRegistry } from '../src/tokens/registry.js';
import { tokenizerFiles, DEFAULT_TOKENIZER_SOURCE, hubOptionsFromEnv } from '../src/tokens/sources.js';
import { loadTokenizerFiles, type TokenizerHandoff } from '../src/tokens/text-tokenizer.js';
import countPrompt from '../src/tokens/count-worker.js';
import { ChatTemplate } from '../src/tokens/chat-template.js';
import { ModelTokenizer } from '../src/tokens/model-tokenizer.js';
import { createLogger } from '../src/telemetry/logger.js';

/*
 * Workers are handed the main thread's tokenizer tables in shared memory instead of parsing
 * tokenizer.json again (about 130 MB per worker); a thread that has not been handed them (a
 * replacement for one that died) says so, and the registry hands them over and counts again.
 */
const files = await tokenizerFiles(DEFAULT_TOKENIZER_SOURCE, hubOptionsFromEnv());
const loaded = loadTokenizerFiles(files);
const prompt = promptOf(parseOpenAIRequest(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: '서울의 겨울은 춥다. The GPU is busy.' }] }), 'chat'));
const chatTemplate = loaded.config['chat_template'] as string;
const task = { tokenizerKey: 'handoff-test', chatTemplate, templateTimeZone: 'UTC', nowMs: Date.UTC(2026, 10, 23), prompt };

describe('tokenizer handoff to counting workers', () => {
  it('hands the fast tokenizer over as shared memory, not as files to parse', () => {
    const handoff: TokenizerHandoff = loaded.handoff;
    expect(handoff.kind).toBe('fast-bpe');
    if (handoff.kind !== 'fast-bpe') return;
    const arrays = [handoff.tables.byteIds, handoff.tables.merges.slots, handoff.tables.wholeTokens!.slots, handoff.tables.wholeTokens!.keys];
    for (const array of arrays) expect(array.buffer).toBeInstanceOf(SharedArrayBuffer);
    // A clone (what postMessage makes) is a view of the same memory, not a copy.
    const clone = structuredClone(handoff);
    const original = handoff.tables.byteIds[0]!;
    clone.tables.byteIds[0] = original + 1;
    expect(handoff.tables.byteIds[0]).toBe(original + 1);
    clone.tables.byteIds[0] = original;
  });

  it('a worker without the tokenizer asks for it, then counts exactly what the main thread counts', () => {
    expect(countPrompt(task)).toEqual({ kind: 'needs-tokenizer' });
    const handedOver = countPrompt({ ...task, tokenizer: structuredClone(loaded.handoff) });
    const onThisThread = new ModelTokenizer(loaded.text, new ChatTemplate(chatTemplate, 'UTC', () => task.nowMs), loaded.config);
    expect(handedOver).toEqual({ kind: 'counted', tokens: onThisThread.countPrompt(prompt) });
    // Later tasks need only the key.
    expect(countPrompt(task)).toEqual(handedOver);
  });

  const registries: TokenizerRegistry[] = [];
  afterAll(async () => {
    for (const registry of registries) await registry.close();
  });

  it('a replaced worker thread is handed the tokenizer again and the count is unchanged', async () => {
    const config = parseLimitsYaml('models: { llama-3.2-1b: {} }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n', 'test');
    const registry = new TokenizerRegistry(config, {
      logger: createLogger('silent'),
      workerScript: new URL('../dist/tokens/count-worker.js', import.meta.url),
    });
    registries.push(registry);
    await registry.settled();
    const long = { model: 'llama-3.2-1b', messages: [{ role: 'user', content: '긴 질문입니다. '.repeat(40) + 'How many tokens is this?' }] };
    const request = () => parseOpenAIRequest(JSON.stringify(long), 'chat');
    const onWorker = await registry.count('llama-3.2-1b', request());
    const pool = (registry as unknown as { pool: { threads: Array<{ terminate(): Promise<number> }> } }).pool;
    await pool.threads[0]!.terminate();
    const afterReplacement = await registry.count('llama-3.2-1b', request());
    expect(afterReplacement).toEqual(onWorker);
    expect(onWorker[0]).toBeGreaterThan(100);
  });
});
